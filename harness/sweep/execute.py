"""Running ONE cell in whatever process holds it: lock, state 'running', cell_fn (output to log.txt), state.

The same function runs in the sweep process (``--inline``), in a per-cell worker subprocess (local backend)
and in a submitit job, so the resume and fault rules are identical everywhere:

- the lock is taken without waiting; if another live process holds it the outcome is ``busy`` (nothing
  written);
- the state is read *under the lock*: ``done`` is skipped unless ``force``; ``failed`` is skipped unless
  ``force`` or ``force_failed``; ``running`` (its process died) and ``pending`` are run (resuming what the
  cell left, e.g. its training checkpoints); with ``force`` the cell function gets ``cell.fresh`` set and
  starts over;
- an exception in the cell is recorded (error, traceback) in ``state.json`` and ``log.txt``; it never escapes;
- ``state.json`` says ``done`` only after ``cell_fn`` returned, i.e. after the cell wrote its outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.core.logconfig import StderrHandler
from harness.core.runlock import RunLock
from harness.sweep.cache import LOG_FILE, now, read_state, write_state
from harness.sweep.expand import Cell

log = logging.getLogger(__name__)

CellFn = Callable[[Cell, Path], dict]
DEFAULT_CELL_FN = "harness.sweep.cells:train_and_bench"


@dataclass
class Outcome:
    """What happened to one cell in this run (the durable record is the cell's state.json)."""

    cell: str  # the cell's folder name
    status: str  # done | failed | busy (held by another runner)
    skipped: bool = False  # already done/failed before this run; nothing was executed
    duration_s: float | None = None
    error: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


# -------------------------------------------------------------------------------------------- cell functions
def resolve_cell_fn(spec: str | CellFn | None) -> CellFn:
    """A cell function from a callable or a ``module:function`` path (default: train then bench)."""
    if spec is None:
        spec = DEFAULT_CELL_FN
    if callable(spec):
        return spec
    module_name, sep, attr = str(spec).partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"cell function {spec!r}: expected 'module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(f"cell function {spec!r}: cannot import {module_name!r} ({exc})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"cell function {spec!r}: {module_name} has no attribute {attr!r}") from None
    if not callable(obj):
        raise ValueError(f"cell function {spec!r} is not callable")
    return obj


def cell_fn_path(fn: str | CellFn | None) -> str:
    """The import path of a cell function, for processes that must import it (worker subprocess, submitit)."""
    if fn is None:
        return DEFAULT_CELL_FN
    if isinstance(fn, str):
        resolve_cell_fn(fn)  # fail now, in the sweep process, rather than once per cell
        return fn
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        raise ValueError(
            f"cell function {fn!r} cannot be imported by a worker process (defined in __main__, a function "
            "or a lambda); define it at module level in an importable module, or run the sweep with "
            "isolation='inline'"
        )
    path = f"{module}:{qualname}"
    if resolve_cell_fn(path) is not fn:
        raise ValueError(f"cell function {fn!r}: {path} does not resolve to it; pass a module-level function")
    return path


def extend_sys_path(paths: list[str]) -> None:
    """Append the sweep process's import paths that this process lacks (so e.g. a test module's toy cell
    function imports here). Appended, never prepended: nothing installed is shadowed."""
    for entry in paths:
        if entry and entry not in sys.path:
            sys.path.append(entry)


# -------------------------------------------------------------------------------------------- output capture
@contextlib.contextmanager
def capture_output(log_path: Path, header: str) -> Iterator[None]:
    """Send everything the cell prints to ``log_path`` (appended): Python-level ``sys.stdout``/``sys.stderr``,
    the OS-level file descriptors 1 and 2 (C extensions, subprocesses) and a root logging handler."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with open(log_path, "a", encoding="utf-8", buffering=1) as log:
        log.write(header)
        log.flush()
        saved: list[tuple[int, int]] = []
        for fd in (1, 2):
            with contextlib.suppress(OSError):
                saved.append((fd, os.dup(fd)))
                os.dup2(log.fileno(), fd)
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        old_level = root.level
        # the command's stderr handler (harness.core.logconfig) would write every line into the log a second time
        console = [h for h in root.handlers if isinstance(h, StderrHandler)]
        for other in console:
            root.removeHandler(other)
        root.addHandler(handler)
        if root.level > logging.INFO:  # the default WARNING would hide the cell's progress messages
            root.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            root.removeHandler(handler)
            for other in console:
                root.addHandler(other)
            root.setLevel(old_level)
            log.flush()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)


def _check_result(result: Any) -> dict:
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise TypeError(f"cell function must return a dict (small, JSON-able), got {type(result).__name__}")
    try:
        json.dumps(result, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cell function returned a result that is not JSON-able: {exc}") from None
    return result


# -------------------------------------------------------------------------------------------------- one cell
def base_state(cell: Cell) -> dict:
    return {
        "status": "pending",
        "name": cell.name,
        "dir": cell.dir_name,
        "id": cell.id,
        "index": cell.index,
        "overrides": cell.overrides,
        "stages": list(cell.stages),
        "attempts": 0,
    }


def execute_cell(
    cell: Cell,
    cell_dir: str | Path,
    cell_fn: CellFn,
    *,
    force: bool = False,
    force_failed: bool = False,
    capture: bool = True,
) -> Outcome:
    """Run ``cell_fn(cell, cell_dir)`` under the cell's lock, recording its state. Never raises for a cell
    error (only KeyboardInterrupt, which leaves the state 'running' -> re-run next time)."""
    cell_dir = Path(cell_dir)
    lock = RunLock(cell_dir, "sweep cell")
    if not lock.try_acquire():
        return Outcome(cell.dir_name, "busy")
    try:
        prev = read_state(cell_dir) or {}
        prev_status = prev.get("status", "pending")
        if prev_status == "done" and not force:
            return Outcome(cell.dir_name, "done", skipped=True, duration_s=prev.get("duration_s"))
        if prev_status == "failed" and not (force or force_failed):
            return Outcome(cell.dir_name, "failed", skipped=True, error=prev.get("error"))
        attempts = int(prev.get("attempts") or 0) + 1
        state = {
            **base_state(cell),
            "status": "running",
            "attempts": attempts,
            "started_at": now(),
            "finished_at": None,
            "duration_s": None,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "code_version": cell.code_version,
            "result": None,
            "error": None,
            "traceback": None,
            "log": LOG_FILE,
        }
        if prev_status == "running":
            state["note"] = f"attempt {attempts - 1} was interrupted (pid {prev.get('pid')} on {prev.get('host')} died)"
        write_state(cell_dir, state)
        header = (
            f"\n===== cell {cell.dir_name} attempt {attempts} | {state['started_at']} | "
            f"host {state['host']} pid {state['pid']} | CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}\n"
        )
        t0 = time.perf_counter()
        ctx = capture_output(cell_dir / LOG_FILE, header) if capture else contextlib.nullcontext()
        # --force: start the cell afresh (its stages must not resume what an earlier run left)
        run_cell = dataclasses.replace(cell, fresh=True) if force else cell
        with ctx:
            try:
                result = _check_result(cell_fn(run_cell, cell_dir))
            except (Exception, SystemExit) as exc:
                tb = traceback.format_exc()
                log.error("cell failed:\n%s", tb.rstrip())
                state.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=tb)
            else:
                state.update(status="done", result=result)
                log.info("cell finished: done in %.2f s", time.perf_counter() - t0)
        state.update(finished_at=now(), duration_s=round(time.perf_counter() - t0, 3))
        write_state(cell_dir, state)  # atomically, after the cell's outputs
        return Outcome(cell.dir_name, state["status"], duration_s=state["duration_s"], error=state["error"])
    finally:
        lock.release()


def mark_failed_if_unfinished(cell: Cell, cell_dir: str | Path, error: str, detail: str = "") -> bool:
    """Record a failure that happened outside ``execute_cell`` (worker killed by a signal, submitit job lost),
    unless a live process holds the cell or it finished. Returns True if the state was written."""
    cell_dir = Path(cell_dir)
    lock = RunLock(cell_dir)
    if not lock.try_acquire():
        return False
    try:
        prev = read_state(cell_dir) or base_state(cell)
        if prev.get("status") in ("done", "failed"):
            return False
        state = {**base_state(cell), **prev}
        state.update(status="failed", error=error, traceback=detail or None, finished_at=now(), log=LOG_FILE)
        if prev.get("status") == "pending":
            state["attempts"] = int(prev.get("attempts") or 0) + 1
        write_state(cell_dir, state)
        with open(cell_dir / LOG_FILE, "a", encoding="utf-8") as log:
            log.write(f"\n===== {now()} cell failed outside the cell function: {error}\n{detail}\n")
        return True
    finally:
        lock.release()
