"""``python run.py COMMAND``: dispatches to one module per command.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``; heavy
imports (torch, pyiqa) happen inside ``run`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "list": "harness.cli.list_cmd",
    "demo": "harness.cli.demo",
    "bench": "harness.cli.bench",
    "report": "harness.cli.report",
    "infer": "harness.cli.infer",
    "train": "harness.cli.train",
    "sweep": "harness.cli.sweep",
    "analyze": "harness.cli.analyze",
    "regress": "harness.cli.regress",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="alignvar-bench: train, ablate and benchmark AlignVAR and other x4 SR methods.",
        epilog="Run 'python run.py COMMAND --help' for a command's options. Start with 'python run.py demo'.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # command not available in this build
        cmd = sub.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `key=value` overrides may come after the flags: `run.py sweep exp.yaml --dry-run seed=1`
    unknown = [a for a in extra if "=" not in a or a.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        if not hasattr(args, "overrides"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from harness.core.mapping import ConfigError

    try:
        return int(args._run(args) or 0)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
