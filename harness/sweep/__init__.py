"""Sweeps: run an experiment over a grid/zip of config values, resumably, locally or on Slurm.

- ``expand``    cells from ``sweep.grid`` x ``sweep.zip``, validated up front, readable names;
- ``cache``     cell identity hash, ``state.json``, per-cell locks;
- ``execute``   running one cell (lock, state, log capture) in whatever process holds it;
- ``scheduler`` local workers (one per GPU, pinned; or N CPU workers), each cell in a fresh process;
- ``backends``  submitit (Slurm job arrays; local/debug clusters);
- ``runner``    orchestration (``run_sweep``), ``sweep.json`` / ``cells.csv``;
- ``cells``     the default cell function (train then bench).
"""
