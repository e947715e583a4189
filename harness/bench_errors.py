"""How a bench run fails: its error types, and the record (first line + traceback file) of one failure."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from harness import results as R
from harness.atomic import write_text
from harness.config import ConfigError


class BenchValidationError(ConfigError):
    """Problems found before any work started; the message lists every one of them."""


class RunExistsError(FileExistsError):
    """The run directory already holds a finished run and ``force`` was not given."""


class CorruptInputError(RuntimeError):
    """An input image could not be read and ``bench.on_corrupt`` is ``fail``."""


class BenchFailedError(RuntimeError):
    """Raised after all outputs are written when at least one method (or set-level metric) failed."""

    def __init__(self, run_dir: Path, failures: list[dict[str, Any]]):
        self.run_dir = Path(run_dir)
        self.failures = failures
        lines = [f"{f['method']} on {f['dataset']}: {f['error']}" for f in failures]
        super().__init__(
            f"{len(failures)} failure(s) in {run_dir} (tracebacks in {run_dir / 'errors'}):\n  " + "\n  ".join(lines)
        )


def first_line(exc: BaseException) -> str:
    """``"TypeName: first line of the message"`` (just the type name when the message is empty)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def record_failure(run_dir: Path, dataset: str, method: str, exc: BaseException) -> dict[str, Any]:
    """Write the traceback of ``exc`` to ``errors/`` of ``run_dir``; return its entry for ``summary.json``."""
    path = R.error_path(run_dir, dataset, method)
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    write_text(path, f"dataset: {dataset}\nmethod: {method}\n\n{tb}")
    return {
        "dataset": dataset,
        "method": method,
        "error": first_line(exc),
        "traceback": str(path.relative_to(run_dir)),
    }
