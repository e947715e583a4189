"""The swept keys of a sweep's cells and how the report names them: which keys were swept, which vary, which are
numeric (a curve each), short display names, cell labels and value formatting."""

from __future__ import annotations

import json
from typing import Any

from reports.sweep.cells import SweepCell


def swept_keys(cells: list[SweepCell]) -> list[str]:
    """Every override key of the cells, in first-seen order."""
    return list(dict.fromkeys(k for c in cells for k in c.overrides))


def short_names(keys: list[str]) -> dict[str, str]:
    """Display names of dotted keys (``harness.sweep.expand.short_keys``: 'model.hcc.lambda' -> 'hcc.lambda')."""
    try:
        from harness.sweep.expand import short_keys

        return short_keys(keys)
    except ImportError:  # pragma: no cover - the sweep engine is optional for reading
        return {k: k for k in keys}


def truthy(v: Any) -> bool:
    """A ``lower_better`` cell read from CSV: 'True' / '1' / 'yes' strings or a real bool."""
    return v.strip().lower() in ("true", "1", "yes") if isinstance(v, str) else bool(v)


def swept_value_label(v: Any) -> str:
    """A swept value as shown in tables and labels: 0.5, true, null, laplacian, JSON for lists and dicts."""
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, float):
        return f"{v:g}"
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def varying_keys(cells: list[SweepCell]) -> list[str]:
    """Swept keys whose value differs between cells (a key swept over one value labels nothing)."""
    return [
        k
        for k in swept_keys(cells)
        if len({json.dumps(c.overrides.get(k), sort_keys=True, default=str) for c in cells}) > 1
    ]


def cell_label(cell: SweepCell, keys: list[str], short: dict[str, str]) -> str:
    """Short label from the varying keys, e.g. 'hcc.lambda=0.5' (the cell name when nothing varies)."""
    return ", ".join(f"{short[k]}={swept_value_label(cell.overrides.get(k))}" for k in keys) or cell.name


def numeric_keys(cells: list[SweepCell]) -> list[str]:
    """Swept keys whose values are all numbers (not bools) with at least two distinct values; keys
    containing 'lambda' first. ``seed`` is not one: it is the replicate axis (``reports.sweep.seeds``)."""
    out = []
    for key in swept_keys(cells):
        if key == "seed":
            continue
        values = [c.overrides.get(key) for c in cells if key in c.overrides]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric and len(set(values)) >= 2:
            out.append(key)
    return sorted(out, key=lambda k: ("lambda" not in k.lower(), out.index(k)))
