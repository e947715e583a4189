"""Cell identity, on-disk state and per-cell locks: what makes a sweep resumable and safe to run twice.

Layout of one cell, ``runs/<sweep>/cells/<name>-<hash8>/``:

- ``config.yaml``  the cell's resolved experiment (a normal experiment file),
- ``cell.json``    the cell's description (name, overrides, identity, stages, config) read by workers,
- ``state.json``   ``status`` (pending | running | done | failed), attempts, timestamps, host, pid, duration,
                   result, error and traceback; always replaced atomically,
- ``log.txt``      everything the cell printed (stdout, stderr, logging), appended per attempt,
- ``.lock``        a ``filelock.FileLock`` held by whichever process runs the cell.

A cell counts as done only when ``state.json`` says so, and that is written after the cell's outputs. A cell
whose state says ``running`` while nobody holds its lock was interrupted (the process died): it is run again.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from harness.core.atomic import write_json
from harness.core.envinfo import source_checkout

STATE_FILE = "state.json"
CELL_FILE = "cell.json"
CONFIG_FILE = "config.yaml"
LOG_FILE = "log.txt"
LOCK_FILE = ".lock"
STATUSES = ("pending", "running", "done", "failed")

# Keys of the experiment config that do not change what a cell computes: names, output paths, the sweep block.
IDENTITY_EXCLUDED_KEYS = ("name", "description", "output_root", "sweep")


# -------------------------------------------------------------------------------------------------- identity
def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace) of plain data."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def identity_payload(config: dict, stages: tuple[str, ...] | list[str], code: dict | None = None) -> dict:
    """What a cell's identity hash covers: the resolved config minus names/paths, the stages, maybe code.

    The ``analysis`` block counts only for cells with an ``analyze`` stage, and only when it differs from the
    defaults (so cells written before the block existed keep their identity).
    """
    dropped = set(IDENTITY_EXCLUDED_KEYS)
    if "analyze" not in stages or config.get("analysis") == _default_analysis():
        dropped.add("analysis")
    payload: dict[str, Any] = {
        "config": {k: v for k, v in config.items() if k not in dropped},
        "stages": list(stages),
    }
    if code is not None:
        payload["code"] = {k: code.get(k) for k in ("commit", "dirty", "diff_sha256")}
    return payload


def _default_analysis() -> dict:
    from harness.config.experiment import AnalysisOptions
    from harness.core.mapping import to_dict

    return to_dict(AnalysisOptions())


def cell_identity(cfg: Any, stages: tuple[str, ...] | list[str], code: dict | None = None) -> str:
    """sha256 hex of a cell's identity. ``cfg`` is a validated ExperimentConfig (or its ``to_dict()``).

    Hashing the validated config makes equal configs spelt differently (``1`` vs ``1.0`` for a float, a
    component given as a name or as ``{type: ...}``) hash the same. ``code`` (see ``code_version``) is
    included only with ``--strict-code-version``.
    """
    config = cfg if isinstance(cfg, dict) else cfg.to_dict()
    return hashlib.sha256(canonical_json(identity_payload(config, stages, code)).encode()).hexdigest()


def code_version(repo: str | Path | None = None) -> dict:
    """``{commit, dirty, diff_sha256}`` of the git checkout holding this package (all None without git or for
    an installed copy, see ``harness.core.envinfo.source_checkout``)."""
    repo = Path(repo) if repo is not None else source_checkout()
    if repo is None:
        return {"commit": None, "dirty": None, "diff_sha256": None}

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=20, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "diff_sha256": None}
    diff = git("diff", "HEAD") or ""
    dirty = bool(diff.strip())
    return {
        "commit": commit.strip(),
        "dirty": dirty,
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if dirty else None,
    }


# ----------------------------------------------------------------------------------------------------- state
def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_state(cell_dir: str | Path) -> dict | None:
    """The cell's ``state.json``, or None when absent. Unreadable JSON (not written by us: we replace
    atomically) is reported as a state with status 'pending' and a note, so the cell is re-run rather than
    trusted."""
    path = Path(cell_dir) / STATE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        state = json.loads(text)
        if not isinstance(state, dict) or state.get("status") not in STATUSES:
            raise ValueError(f"no valid 'status' (one of {', '.join(STATUSES)})")
    except ValueError as exc:
        return {"status": "pending", "note": f"{path}: unreadable state ({exc}); the cell will be re-run"}
    return state


def write_state(cell_dir: str | Path, state: dict) -> None:
    write_json(Path(cell_dir) / STATE_FILE, state)


# ----------------------------------------------------------------------------------------------------- locks
class CellLock:
    """A non-blocking per-cell lock (``filelock.FileLock`` on ``<cell>/.lock``).

    The OS releases it when its process dies, which is how a stale ``running`` state is told from a live one.
    """

    def __init__(self, cell_dir: str | Path):
        self.path = Path(cell_dir) / LOCK_FILE
        self._lock = FileLock(str(self.path), timeout=0)

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        return True

    def wait(self, timeout: float | None = None, poll: float = 0.2) -> bool:
        """Block until the lock is free (then acquire it); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.try_acquire():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(poll)
        return True

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()

    def __enter__(self) -> CellLock:
        if not self.try_acquire():
            raise Timeout(str(self.path))
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(cell_dir: str | Path) -> bool:
    """True while another process holds the cell's lock (probes by trying to take it)."""
    if not (Path(cell_dir) / LOCK_FILE).exists():
        return False
    lock = CellLock(cell_dir)
    if lock.try_acquire():
        lock.release()
        return False
    return True


def cell_status(cell_dir: str | Path) -> tuple[str, str]:
    """(status, note) as seen from outside: a 'running' state without a live lock holder is 'pending'."""
    state = read_state(cell_dir)
    if state is None:
        return "pending", ""
    status, note = state["status"], state.get("note", "")
    if status == "running" and not is_locked(cell_dir):
        where = f"pid {state.get('pid')} on {state.get('host')}" if state.get("pid") else "an earlier run"
        return "pending", f"interrupted ({where} died); will re-run"
    if status == "failed":
        note = state.get("error", "") or note
    return status, note
