"""Cell identity, on-disk state and per-cell locks: what makes a sweep resumable and safe to run twice.

Layout of one cell, ``runs/<sweep>/cells/<name>-<hash8>/``:

- ``config.yaml``  the cell's resolved experiment (a normal experiment file),
- ``cell.json``    the cell's description (name, overrides, identity, stages, config) read by workers,
- ``state.json``   ``status`` (pending | running | done | failed), attempts, timestamps, host, pid, duration,
                   result, error and traceback; always replaced atomically,
- ``log.txt``      everything the cell printed (stdout, stderr, logging), appended per attempt,
- ``.lock``        the cell folder's ``harness.core.runlock.RunLock``, held by whichever process runs the cell
                   (its stages take it again: the lock is re-entrant within a process).

A cell counts as done only when ``state.json`` says so, and that is written after the cell's outputs. A cell
whose state says ``running`` while nobody holds its lock was interrupted (the process died): it is run again.
A done cell whose recorded input files (the ``identity.json`` of its stages) have changed content since is
stale: ``changed_inputs`` names them, and the sweep refuses to count it as done.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.core.atomic import write_json
from harness.core.identity import IDENTITY_FILE, canonical_json, file_sha256, read_identity
from harness.core.runlock import is_locked

STATE_FILE = "state.json"
CELL_FILE = "cell.json"
CONFIG_FILE = "config.yaml"
LOG_FILE = "log.txt"
STATUSES = ("pending", "running", "done", "failed")

# Keys of the experiment config that do not change what a cell computes: names, output paths, the sweep block.
IDENTITY_EXCLUDED_KEYS = ("name", "description", "output_root", "sweep")


# -------------------------------------------------------------------------------------------------- identity
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
    included only with ``--strict-code-version`` (``harness.core.identity.code_version``).
    """
    config = cfg if isinstance(cfg, dict) else cfg.to_dict()
    return hashlib.sha256(canonical_json(identity_payload(config, stages, code)).encode()).hexdigest()


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


# ------------------------------------------------------------------------------------------- stale inputs
def changed_inputs(cell_dir: str | Path, seen: dict | None = None) -> list[str]:
    """Input files recorded in the run identities under ``cell_dir`` whose content differs now.

    One line per file, ``<file>: size A -> B`` or ``<file>: content changed (sha256 A.. -> B..)``. A file that
    is gone is not a change of what was computed and is not listed. ``seen`` caches digests by (path, size,
    mtime) across the cells of one sweep, so a dataset shared by every cell is hashed once.
    """
    seen = {} if seen is None else seen
    lines: list[str] = []
    for path in sorted(Path(cell_dir).rglob(IDENTITY_FILE)):
        recorded = read_identity(path.parent)
        if recorded is None:
            continue
        for entries in recorded.data.values():
            for entry in entries.values() if isinstance(entries, dict) else ():
                if not (isinstance(entry, dict) and {"name", "size", "sha256"} <= entry.keys()):
                    continue
                line = _changed_file(entry, seen)
                if line and line not in lines:
                    lines.append(line)
    return lines


def _changed_file(entry: dict, seen: dict) -> str | None:
    path = Path(entry["name"])
    try:
        st = path.stat()
    except OSError:
        return None
    if st.st_size != entry["size"]:
        return f"{path}: size {entry['size']} -> {st.st_size} bytes"
    key = (str(path.absolute()), st.st_size, st.st_mtime_ns)
    if key not in seen:
        seen[key] = file_sha256(path)
    if seen[key] != entry["sha256"]:
        return f"{path}: content changed (sha256 {entry['sha256'][:12]}.. -> {seen[key][:12]}..)"
    return None
