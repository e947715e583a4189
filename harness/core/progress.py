"""Progress of long work: a tqdm bar on a terminal, plain log lines anywhere else (log files, CI, pipes).

``progress(...)`` is the one way the project shows progress (bench evaluation, tiles, preflight downloads,
training, sweeps, efficiency, analyses). A bar is drawn when progress is wanted (``enabled``), stderr is a
terminal or a notebook, and the verbosity is not below the default (``-q`` turns bars off). Otherwise an info
line ``DESC: 40/100 img (40%), 12.3 s, 3.25 img/s`` is logged every ``every`` items (default: a tenth of the
total), at least every ``interval`` seconds while items complete, and at the end. Transient work
(``leave=False``: tiles, timing repeats) logs at debug level. ``ALIGNVAR_PROGRESS=1`` forces bars and ``0``
turns them off (lines stay); ``enabled=False`` shows nothing at all.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from harness.core.logconfig import verbosity

PROGRESS_ENV = "ALIGNVAR_PROGRESS"
log = logging.getLogger(__name__)


def interactive() -> bool:
    """Whether stderr is a terminal (or the process is a Jupyter kernel, where tqdm draws widgets)."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def bars_shown(enabled: bool = True) -> bool:
    """Whether a tqdm bar is drawn for work that wants progress (``enabled``); see the module docstring.
    Also the ``progress`` flag to hand libraries that draw their own bars (downloads)."""
    forced = os.environ.get(PROGRESS_ENV)
    if not enabled or forced == "0" or verbosity() < 0:
        return False
    return forced == "1" or interactive()


class LogProgress:
    """The subset of tqdm's interface the project uses, reporting by log lines (see the module docstring)."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        every: int | None = None,
        interval: float = 60.0,
        level: int | None = logging.INFO,
        logger: logging.Logger | None = None,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self._last_n = self.initial = initial
        self.every = every if every is not None else (max(1, math.ceil(total / 10)) if total else None)
        self.interval, self.level, self.logger = interval, level, logger or log
        self.postfix = ""
        self._start = self._last_t = time.monotonic()
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("LogProgress without an iterable is not iterable; call update()")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return self.total or 0

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.level is None:
            return
        now = time.monotonic()
        step_due = self.every is not None and self.n - self._last_n >= self.every
        if step_due or (self.n > self._last_n and now - self._last_t >= self.interval):
            self._emit(now)

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.level is not None and self.n > self._last_n:
            self._emit(time.monotonic())

    def line(self, now: float | None = None) -> str:
        """``DESC: N/TOTAL UNIT (P%), ELAPSED s, RATE UNIT/s[, postfix]``."""
        elapsed = (now if now is not None else time.monotonic()) - self._start
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else float("nan")
        text = f"{self.desc}: {done} {self.unit}{pct}, {elapsed:.1f} s, {rate:.3g} {self.unit}/s"
        return text + (f", {self.postfix}" if self.postfix else "")

    def _emit(self, now: float) -> None:
        self.logger.log(self.level, "%s", self.line(now))
        self._last_n, self._last_t = self.n, now


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    leave: bool = True,
    initial: int = 0,
    every: int | None = None,
    interval: float = 60.0,
) -> Any:
    """A tqdm bar (on stderr) or a ``LogProgress`` for ``iterable`` / ``total`` items; see the module docstring."""
    if bars_shown(enabled):
        from tqdm.auto import tqdm

        return tqdm(
            iterable, total=total, desc=desc, unit=unit, leave=leave, initial=initial, dynamic_ncols=True,
            file=sys.stderr,
        )  # fmt: skip
    level = None if not enabled else (logging.INFO if leave else logging.DEBUG)
    return LogProgress(
        iterable, total=total, desc=desc, unit=unit, initial=initial, every=every, interval=interval, level=level
    )
