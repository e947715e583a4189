"""``python run.py COMMAND`` and the ``alignvar-bench`` script: dispatch to one module per command.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``; heavy
imports (torch, pyiqa) happen inside ``run`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
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


def version_text() -> str:
    """``alignvar-bench 0.1.0 (torch 2.14.1, pyiqa 0.1.16, Python 3.11.7)``: read from package metadata, so
    ``--version`` imports neither torch nor pyiqa."""
    import platform

    from harness import __version__
    from harness.core.envinfo import package_versions

    found = package_versions(("torch", "pyiqa"))
    deps = ", ".join(f"{name} {found[name] or 'not installed'}" for name in ("torch", "pyiqa"))
    return f"alignvar-bench {__version__} ({deps}, Python {platform.python_version()})"


def build_parser() -> argparse.ArgumentParser:
    # the installed script says its own name; `python run.py` (a checkout) says run.py
    prog = "alignvar-bench" if os.path.basename(sys.argv[0]) == "alignvar-bench" else "run.py"
    command = prog if prog == "alignvar-bench" else "python run.py"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="alignvar-bench: train, ablate and benchmark AlignVAR and other x4 SR methods.",
        epilog=f"Run '{command} COMMAND --help' for a command's options. Start with '{command} demo'.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)  # a missing command module is an error, never skipped
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
