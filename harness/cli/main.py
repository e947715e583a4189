"""``python run.py COMMAND`` and the ``alignvar-bench`` script: dispatch to one module per command, and turn
errors into exit codes.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``; heavy
imports (torch, pyiqa) happen inside ``run`` so that ``--help`` stays fast. A user error (bad config or input,
a run folder that is taken, a failed run) is printed as one ``error: ...`` message with its exit code
(``EXIT_CODES``), never as a traceback; ``--debug`` (or ``ALIGNVAR_DEBUG=1``) shows the traceback too.

Output: stdout carries a command's results only (``list``, the tables, the regress verdict, the paths it wrote),
so scripts can parse it; diagnostics (progress, warnings, notes, errors) go to stderr through ``logging``
(``harness.core.logconfig``), louder with ``-v``/``-vv`` and quieter with ``-q``/``-qq``, before or after COMMAND.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback

from harness.cli.options import add_verbosity

log = logging.getLogger("harness.cli")

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


EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFLICT, EXIT_IO, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 70, 130
EXIT_CODES = """\
exit codes:
  0    success
  1    the run finished but failed (a method or, with --strict, an image failed; a regression; a cell failed;
       training diverged); everything it wrote is in its run folder
  2    bad command line, config or input (file not found, unreadable checkpoint, ...); nothing was run
  3    the run folder is taken: it holds a finished run (use --force), a run made from another config, data
       or code, files alignvar-bench did not write, or another process is writing it
  4    reading or writing failed (permission denied, disk full, ...)
  70   internal error (a bug: the traceback is printed; please report it)
  130  interrupted (Ctrl-C)
--debug (before or after COMMAND) or ALIGNVAR_DEBUG=1 also prints the traceback of an error.
results go to stdout, diagnostics (progress, warnings, errors) to stderr: -v/-vv more, -q/-qq less."""

# Error classes by exit code, as (module, class name): looked up only in modules already imported, so that
# handling an error never imports anything heavy.
_USER_ERRORS = {
    EXIT_USAGE: [
        ("harness.core.mapping", "ConfigError"),
        ("harness.core.registry", "RegistryError"),
        ("harness.core.imageio", "ImageError"),
        ("harness.data.pairing", "DatasetError"),
        ("harness.data.bundled", "BundledError"),
        ("harness.bench.layout", "RunNotFoundError"),
        ("harness.bench.regression", "RegressionError"),
        ("methods.alignvar.weights", "CheckpointError"),
        ("methods.adapters.alignvar", "MissingCheckpointError"),
        ("methods.adapters.output_files", "OutputFolderError"),
        ("methods.adapters.spandrel", "CheckpointError"),
        ("harness.metrics.weights", "MissingWeightsError"),
    ],
    EXIT_CONFLICT: [
        ("harness.bench.runner", "RunExistsError"),
        ("harness.core.runlock", "RunLockedError"),
        ("harness.core.identity", "IdentityMismatchError"),
        ("harness.core.runfolder", "RunFolderError"),
        ("harness.cli.infer", "OutputExistsError"),
    ],
    EXIT_FAILED: [
        ("harness.bench.runner", "BenchFailedError"),
        ("harness.training.loop", "TrainingDiverged"),
        ("harness.training.checkpointing", "NoUsableCheckpointError"),
    ],
}


def exit_code_of(exc: BaseException) -> int | None:
    """The exit code of a user error (``_USER_ERRORS``, or an OSError), None for anything else (a bug)."""
    for code, names in _USER_ERRORS.items():
        for module_name, cls_name in names:
            cls = getattr(sys.modules.get(module_name), cls_name, None)
            if isinstance(cls, type) and isinstance(exc, cls):
                return code
    if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        return EXIT_USAGE
    if isinstance(exc, OSError):
        return EXIT_IO
    return None


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" + (f" -> {exc.filename2}" if exc.filename2 else "")
    return text or type(exc).__name__


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
        epilog=f"Run '{command} COMMAND --help' for a command's options. Start with '{command} demo'.\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_argument("--debug", action="store_true", help="also print the traceback of an error")
    add_verbosity(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)  # a missing command module is an error, never skipped
        cmd = sub.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd)
        cmd.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        add_verbosity(cmd.add_argument_group("output"), default=argparse.SUPPRESS)
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
        return EXIT_USAGE
    debug = bool(getattr(args, "debug", False)) or os.environ.get("ALIGNVAR_DEBUG", "") not in ("", "0")
    from harness.core.logconfig import configure  # stdlib only: cheap

    configure(getattr(args, "verbose", 0) - getattr(args, "quiet", 0))
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        log.error("interrupted", extra={"prefix": ""})
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - every error leaves through here, as a message and an exit code
        code = exit_code_of(exc)
        if code is None or debug:
            traceback.print_exc()
        if code is None:
            log.error(
                "%s: %s\n(this is a bug in alignvar-bench; please report it with the traceback above)",
                type(exc).__name__,
                _message(exc),
                extra={"prefix": "internal error"},
            )
            return EXIT_INTERNAL
        from harness.core.mapping import ConfigError  # stdlib only: cheap

        prefix = "config error" if isinstance(exc, ConfigError) else "error"
        log.error("%s", _message(exc), extra={"prefix": prefix})
        return code


if __name__ == "__main__":
    sys.exit(main())
