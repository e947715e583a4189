"""One writer per folder: a non-blocking lock on ``<folder>/.lock`` that names its holder.

``RunLock(folder)`` takes a ``filelock.FileLock`` (an OS lock: released by the kernel when its process dies, so
the lock of a dead process is simply taken over) and records the holder (host, pid, start time, command line)
in ``<folder>/.lock.owner.json``. A second writer fails at once with ``RunLockedError`` naming that holder. An
owner record left by a process that died is reported as taken over (``RunLock.took_over``).

The lock is re-entrant within one process: a sweep cell holds its folder while its train and bench stages take
the same folder's lock again. Bench and train runs, ``infer`` output folders and sweep cells all use it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from harness.core.atomic import write_json

LOCK_FILE = ".lock"
OWNER_FILE = ".lock.owner.json"

_HELD: dict[str, list[Any]] = {}  # resolved lock path -> [depth, FileLock] held by this process
_GUARD = threading.RLock()


class RunLockedError(RuntimeError):
    """Another live process holds the folder's lock; the message names it (host, pid, start time)."""


def read_owner(folder: str | Path) -> dict | None:
    """The holder record of ``folder`` (None when absent or unreadable)."""
    try:
        data = json.loads((Path(folder) / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_owner(owner: dict | None) -> str:
    if not owner:
        return "another process (it has not recorded itself yet)"
    text = f"pid {owner.get('pid')} on host {owner.get('host')}, started {owner.get('started')}"
    return f"{text} ({owner['command']})" if owner.get("command") else text


class RunLock:
    """The writer lock of ``folder`` (see the module docstring). ``what`` names the folder in messages."""

    def __init__(self, folder: str | Path, what: str = "run folder", *, leave_no_trace: bool = False) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.what = what
        self.leave_no_trace = leave_no_trace  # remove the lock file on release (a user's folder, e.g. infer's)
        self.took_over: dict | None = None  # the owner record of a dead holder, when one was replaced
        self._depth = 0

    @property
    def _key(self) -> str:
        return str(self.path.absolute().resolve())

    def try_acquire(self) -> bool:
        """Take the lock without waiting; False when another process holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with _GUARD:
            held = _HELD.get(self._key)
            if held is not None:  # this process holds it already (a sweep cell's stages)
                held[0] += 1
                self._depth += 1
                return True
            lock = FileLock(str(self.path), timeout=0, thread_local=False)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                return False
            previous = read_owner(self.folder)
            if previous and not (previous.get("pid") == os.getpid() and previous.get("host") == socket.gethostname()):
                self.took_over = previous  # the OS released a dead process's lock; its record remained
            write_json(
                self.folder / OWNER_FILE,
                {
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "command": " ".join(sys.argv),
                },
            )
            _HELD[self._key] = [1, lock]
            self._depth += 1
            return True

    def acquire(self) -> RunLock:
        """Take the lock or raise ``RunLockedError`` naming the holder."""
        if not self.try_acquire():
            owner = read_owner(self.folder)
            raise RunLockedError(
                f"{self.folder}: this {self.what} is being written by {describe_owner(owner)}; wait for it to "
                f"finish or use another name/output folder (lock file {self.path})"
            )
        return self

    def wait(self, timeout: float | None = None, poll: float = 0.2) -> bool:
        """Block until the lock is free (then take it); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.try_acquire():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(poll)
        return True

    def release(self) -> None:
        if self._depth == 0:
            return
        with _GUARD:
            self._depth -= 1
            held = _HELD.get(self._key)
            if held is None:
                return
            held[0] -= 1
            if held[0] == 0:
                del _HELD[self._key]
                try:
                    (self.folder / OWNER_FILE).unlink(missing_ok=True)
                    if self.leave_no_trace:  # before releasing: a newcomer then locks a new file, never ours
                        self.path.unlink(missing_ok=True)
                except OSError:
                    pass
                held[1].release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(folder: str | Path) -> bool:
    """True while a process (this one included) holds ``folder``'s lock (probes by trying to take it)."""
    if not (Path(folder) / LOCK_FILE).exists():
        return False
    lock = RunLock(folder)
    with _GUARD:
        if lock._key in _HELD:
            return True
    if lock.try_acquire():
        lock.release()
        return False
    return True
