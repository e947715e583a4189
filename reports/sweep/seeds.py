"""Seeds as replicates: the cells of one configuration at different seeds, and statistics across them.

The override key ``seed`` (``sweep.seeds: [0, 1, 2]``, or ``seed`` swept by ``grid`` / ``zip``) is the replicate
axis: cells that differ only in it are one configuration (``config_groups``). Across its seeds a configuration
gets the mean of its per-seed means with a Student-t interval (``seed_interval``: with a handful of seeds the
bootstrap has too few distinct resamples to give an honest interval); docs/STATISTICS.md ("Images and seeds")
says how this combines with the image-level statistics.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from scipy import stats as _st

from reports.sweep.cells import SweepCell
from reports.sweep.keys import swept_keys

SEED_KEY = "seed"  # harness.sweep.expand.SEED_KEY (not imported: reading a sweep needs no sweep engine)


def seed_of(cell: SweepCell) -> int | None:
    """The cell's replicate seed (its ``seed`` override), or None when seeds are not swept."""
    value = cell.overrides.get(SEED_KEY)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def config_keys(cells: list[SweepCell]) -> list[str]:
    """The swept keys that define a configuration: every swept key except ``seed``."""
    return [k for k in swept_keys(cells) if k != SEED_KEY]


def config_id(cell: SweepCell, keys: list[str]) -> str:
    """A configuration's identity: its values of ``keys`` (JSON, sorted)."""
    return json.dumps({k: cell.overrides.get(k) for k in keys}, sort_keys=True, default=str)


def config_groups(cells: list[SweepCell]) -> list[list[SweepCell]]:
    """The cells grouped by configuration (first-seen order), each group sorted by seed."""
    keys = config_keys(cells)
    groups: dict[str, list[SweepCell]] = {}
    for cell in cells:
        groups.setdefault(config_id(cell, keys), []).append(cell)
    return [sorted(g, key=lambda c: (seed_of(c) is None, seed_of(c) or 0)) for g in groups.values()]


def seed_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of per-seed values with its Student-t ``confidence`` interval
    (mean +- t_{n-1} s / sqrt(n)); NaN bounds for fewer than two values."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    half = float(_st.t.ppf(0.5 + confidence / 2.0, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def per_seed_text(values: list[float], decimals: int) -> str:
    """Per-seed values as shown in a table cell: ``27.41 / 27.38 / 27.50``."""
    return " / ".join(f"{v:.{decimals}f}" for v in values)


def seeds_text(seeds: list[Any]) -> str:
    return ", ".join(str(s) for s in seeds)
