"""Cell functions: what one sweep cell does. ``cell_fn(cell, cell_dir) -> dict`` (a small JSON-able result).

The default, ``train_and_bench``, runs the cell's ``stages`` in order: ``train`` (``harness.training.stage``: the
experiment's ``train:``/``model:`` blocks, into ``<cell_dir>/train``), ``bench``
(``harness.bench.runner.run_bench``; a method with ``checkpoint: "@trained"`` evaluates what the train stage
produced), then ``analyze`` (``harness.analysis.stage.run_analysis``: attention distance, error accumulation
and SCA masks of that trained model into ``<cell_dir>/analysis``, which the sweep report draws; its knobs are
the cell config's ``analysis:`` block, which a sweep may vary too: ``grid: {analysis.radius: [0.05, 0.1]}``).
The run folder is the cell folder, since each cell's config has ``output_root``/``name`` pointing there. Imported
lazily so the sweep engine works (and is tested) without the heavy stages; pass another function with
``run.py sweep ... --cell-fn module:function``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from harness.sweep.expand import Cell


def train_and_bench(cell: Cell, cell_dir: Path) -> dict:
    from harness.training.stage import resolve_trained, run_train, trained_checkpoint, uses_trained

    cfg = cell.config
    result: dict[str, Any] = {}
    checkpoint = None
    if "train" in cell.stages:
        if cfg.train is None:  # the trainer says whether it needs a 'model:' block too (alignvar does)
            raise ValueError(f"{cfg.source}: the 'train' stage needs a 'train:' block (or use stages: [bench])")
        checkpoint = run_train(cfg, force=cell.fresh, progress=False)
        result["train"] = {"checkpoint": str(checkpoint)}
    if "bench" in cell.stages:
        from harness.bench.runner import run_bench

        # force: the engine decided this cell must run, so earlier outputs in its folder are stale
        run_dir = run_bench(resolve_trained(cfg, checkpoint), force=True, progress=False)
        result["bench"] = {"run_dir": str(run_dir), **_bench_means(Path(run_dir))}
    if "analyze" in cell.stages:
        from harness.analysis.stage import run_analysis

        if checkpoint is None and uses_trained(cfg):  # stages without train: an earlier run's checkpoint
            checkpoint = trained_checkpoint(cfg)
        result["analyze"] = run_analysis(cfg, cfg.run_dir, checkpoint, options=cfg.analysis)
    return result


def _bench_means(run_dir: Path) -> dict:
    """Mean per dataset/method/metric from the bench run's summary.csv (if written), for sweep.json."""
    path = run_dir / "summary.csv"
    if not path.is_file():
        return {}
    means: dict[str, float] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                key = "/".join(row[k] for k in ("dataset", "method", "metric"))
                means[key] = float(row["mean"])
            except (KeyError, TypeError, ValueError):
                continue
    return {"mean": means} if means else {}
