"""Logging set-up for a command: one handler on stderr, the verbosity of ``-v`` / ``-q``, Python warnings as log lines.

The project's modules log through ``logging.getLogger(__name__)`` and never configure logging themselves (used
from Python, warnings reach stderr through logging's last-resort handler and the rest is up to the caller). A
command calls ``configure(verbosity)`` once: ``-qq`` errors only, ``-q`` warnings, default info, ``-v`` debug
for the project, ``-vv`` debug for the libraries too. A line reads ``MESSAGE`` (info), ``warning: ...``,
``error: ...``, or ``note: ...`` for a warning logged with ``note()``; ``-v`` adds the time, level and
logger name. Python warnings (a library's) are logged as ``warning: MESSAGE (Category)`` without their source
line. The verbosity is handed to child processes (sweep cells, torchrun ranks) in ``ALIGNVAR_VERBOSITY``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

PACKAGES = ("harness", "methods", "reports")  # the project's top-level packages (their loggers' levels are set)
VERBOSITY_ENV = "ALIGNVAR_VERBOSITY"
PREFIXES = {logging.DEBUG: "debug", logging.INFO: "", logging.WARNING: "warning", logging.ERROR: "error"}


def verbosity() -> int:
    """The verbosity of this process: ``-v`` counts up, ``-q`` down (``ALIGNVAR_VERBOSITY``, 0 when unset)."""
    try:
        return int(os.environ.get(VERBOSITY_ENV, "0"))
    except ValueError:
        return 0


def level_of(verbosity: int) -> int:
    """The level of the project's loggers at a verbosity: -2 error, -1 warning, 0 info, >= 1 debug."""
    if verbosity <= -2:
        return logging.ERROR
    return {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)


def note(logger: logging.Logger, message: str, *args: object) -> None:
    """A warning that reads ``note: ...``: something the user should know about a result (shown unless -qq)."""
    logger.warning(message, *args, extra={"prefix": "note"}, stacklevel=2)


class LineFormatter(logging.Formatter):
    """``PREFIX: message`` (the prefix by level, or a record's ``prefix``), or with ``detailed`` the time, level
    and logger name; ``[rank N]`` first under torchrun."""

    def __init__(self, detailed: bool = False, rank: str | None = None) -> None:
        fmt = "%(asctime)s %(levelname)-7s %(name)s: %(message)s" if detailed else "%(message)s"
        super().__init__(fmt, datefmt="%H:%M:%S")
        self.detailed, self.rank = detailed, rank

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.detailed:
            prefix = getattr(record, "prefix", None)
            if prefix is None:
                prefix = PREFIXES.get(min(record.levelno // 10 * 10, logging.ERROR), "")
            if prefix:
                text = f"{prefix}: {text}"
        return f"[rank {self.rank}] {text}" if self.rank is not None else text


class StderrHandler(logging.Handler):
    """Writes to the ``sys.stderr`` of the moment (redirections apply), through ``tqdm.write`` while a progress
    bar is on screen so the bar is redrawn below the line instead of being torn."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            stream = sys.stderr
            tqdm = sys.modules.get("tqdm")
            if tqdm is not None and getattr(tqdm.tqdm, "_instances", None):
                tqdm.tqdm.write(text, file=stream)
            else:
                stream.write(text + "\n")
                stream.flush()
        except Exception:  # noqa: BLE001 - logging's contract: a failing handler reports itself, never raises
            self.handleError(record)


def set_levels(verbosity: int) -> None:
    """The project's loggers at ``level_of(verbosity)``; the root (libraries) at debug from -vv, else warning."""
    for package in PACKAGES:
        logging.getLogger(package).setLevel(level_of(verbosity))
    logging.getLogger().setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """``warnings.showwarning`` replacement: one log line, the category named, no source line."""
    where = f", {Path(filename).name}:{lineno}" if verbosity() >= 1 else ""
    logging.getLogger("py.warnings").warning("%s (%s%s)", message, category.__name__, where)


def configure(verbosity: int = 0) -> None:
    """Set up logging for a command at ``verbosity`` (idempotent: a second call replaces the first's handler)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(handler)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    handler = StderrHandler()
    handler.setFormatter(LineFormatter(detailed=verbosity >= 1, rank=os.environ.get("RANK") if world > 1 else None))
    root.addHandler(handler)
    set_levels(verbosity)
    os.environ[VERBOSITY_ENV] = str(verbosity)
    warnings.showwarning = _show_warning
