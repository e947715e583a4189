"""Sweeps: run an experiment over a grid/zip of config values, resumably, locally or on Slurm.

- ``expand``    cells from ``sweep.grid`` x ``sweep.zip``, validated up front, readable names;
- ``cache``     cell identity hash, ``state.json``, per-cell locks;
- ``execute``   running one cell (lock, state, log capture) in whatever process holds it;
- ``scheduler`` local workers (one per GPU, pinned; or N CPU workers), each cell in a fresh process;
- ``backends``  submitit (Slurm job arrays; local/debug clusters);
- ``runner``    orchestration (``run_sweep``), ``sweep.json`` / ``cells.csv``;
- ``cells``     the default cell function (train then bench).

Public names are imported lazily so that ``import harness.sweep`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Cell": "harness.sweep.expand",
    "SweepSpec": "harness.sweep.expand",
    "load_sweep": "harness.sweep.expand",
    "expand": "harness.sweep.expand",
    "cell_name": "harness.sweep.expand",
    "short_keys": "harness.sweep.expand",
    "cell_identity": "harness.sweep.cache",
    "code_version": "harness.sweep.cache",
    "read_state": "harness.sweep.cache",
    "cell_status": "harness.sweep.cache",
    "Outcome": "harness.sweep.execute",
    "execute_cell": "harness.sweep.execute",
    "SweepResult": "harness.sweep.runner",
    "plan": "harness.sweep.runner",
    "run_sweep": "harness.sweep.runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'harness.sweep' has no attribute {name!r}")
