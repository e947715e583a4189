"""The benchmark runner: every method on every dataset, per-image metrics, saved outputs, summary statistics.

``run_bench(cfg)`` is the whole ``run.py bench`` command as a function (a sweep calls it once per cell):

1. ``prepare`` (``harness.bench_prepare``): first check that every file and folder the experiment names exists
   (``harness.requirements``: datasets, checkpoints, output folders, metric weights; all missing paths in one
   error), then build every dataset, method and metric and check they fit together (scales, method checks,
   set-level metrics need saved images). All problems are reported in ONE ``BenchValidationError`` before any
   work starts.
2. For each method (built once, moved to the device once) and each dataset, ``run_cell``
   (``harness.bench_cell``): upscale in batches of same-size images, time every batch, quantise the output to
   8 bit (so the metrics equal what the saved PNGs give), compute per-image metrics, save the SR PNGs. A method
   that raises is recorded (traceback in ``errors/``, ``harness.bench_errors``) and the others carry on;
   corrupt input images stop the run or are skipped (``bench.on_corrupt``).
   A non-strict precomputed method (``output_folder`` with ``strict: false``) is evaluated on the images it
   has (``available(keys)``); the others are recorded as skipped for that method (``method_skipped`` in
   ``summary.json``, a note in the report). Precomputed methods get the per-image latency they report
   (``reported_latency(key)``), marked ``latency_source: reported``.
3. Set-level metrics (FID) from the saved folders; summary statistics with bootstrap CIs
   (``harness.bench_summary``); ``summary.json`` written last. Raises ``BenchFailedError`` at the very end if
   any method failed (the CLI exits 1).

``bench.efficiency`` (or ``run.py bench --efficiency``) adds ``harness.bench_efficiency.EfficiencyHook``, which
writes ``efficiency.json`` (the paper's Table 2: params, steps, latency, peak memory per method). Hooks see a
``BenchContext`` (``harness.bench_context``); the device is resolved by ``harness.bench_device``.

The on-disk layout is defined in ``harness.results``. The names other modules import from here
(``run_bench``, ``resolve_device``, the error types, ``BenchContext``, ``BenchHook``, ...) are listed in
``__all__``.
"""

from __future__ import annotations

import datetime as _dt
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import results as R
from harness.atomic import write_json
from harness.bench_cell import DatasetState, quantize_8bit, run_cell
from harness.bench_context import BenchContext, BenchHook
from harness.bench_device import resolve_device
from harness.bench_errors import (
    BenchFailedError,
    BenchValidationError,
    CorruptInputError,
    RunExistsError,
    record_failure,
)
from harness.bench_prepare import prepare
from harness.bench_summary import annotate_meta, summary_table
from harness.config import ExperimentConfig, dump_yaml
from harness.envinfo import collect_env

__all__ = [
    "BenchContext",
    "BenchFailedError",
    "BenchHook",
    "BenchValidationError",
    "CorruptInputError",
    "RunExistsError",
    "config_hooks",
    "prepare",
    "quantize_8bit",
    "resolve_device",
    "run_bench",
    "seed_everything",
]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (each cell starts from the same state)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _claim_run_dir(run_dir: Path, force: bool) -> None:
    if (run_dir / "summary.json").exists() and not force:
        raise RunExistsError(
            f"{run_dir} already holds a finished run; pass --force (force=True) to overwrite "
            f"it or choose another name/output_root"
        )


def _clear_run_dir(run_dir: Path) -> None:
    for entry in R.OUTPUT_ENTRIES:
        path = run_dir / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


def run_bench(
    cfg: ExperimentConfig,
    *,
    device: str | torch.device | None = None,
    force: bool = False,
    hooks: Sequence[BenchHook] = (),
    progress: bool = True,
    notes: Sequence[str] = (),
) -> Path:
    """Run the benchmark described by ``cfg``; return the run directory (``cfg.run_dir``).

    ``notes`` are extra lines for ``summary.json`` and the report (e.g. "metric X left out: no weights").

    Raises BenchValidationError (nothing run), RunExistsError, CorruptInputError (on_corrupt=fail), or
    BenchFailedError after writing every output when some method failed.
    """
    dev = resolve_device(device if device is not None else cfg.bench.device)
    run_dir = cfg.run_dir
    _claim_run_dir(run_dir, force)
    hooks = [*hooks, *config_hooks(cfg, hooks)]
    prepared = prepare(cfg, dev)
    prepared.notes[:0] = list(notes)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    ctx = BenchContext(cfg, run_dir, dev, prepared)
    states = {name: DatasetState() for name in prepared.datasets}
    failures: list[dict[str, Any]] = []
    closed: set[str] = set()

    def close(name: str) -> None:  # free a method's memory as soon as it is done, exactly once
        if name not in closed:
            closed.add(name)
            prepared.methods[name].close()

    try:
        _clear_run_dir(run_dir)
        R.write_config(run_dir, dump_yaml(cfg.to_dict()))
        write_json(run_dir / "env.json", collect_env(dev))
        for hook in hooks:
            hook.on_start(ctx)
        for m_name, method in prepared.methods.items():
            try:
                method.to(dev)
                for hook in hooks:
                    hook.on_method_start(ctx, m_name, method)
            except Exception as exc:  # noqa: BLE001
                failures.extend(record_failure(run_dir, d, m_name, exc) for d in prepared.datasets)
                close(m_name)
                continue
            for ds_name, ds in prepared.datasets.items():
                seed_everything(cfg.seed)
                try:
                    with torch.inference_mode():
                        rows = run_cell(
                            ctx, ds_name, ds, m_name, method.for_dataset(ds_name), states[ds_name], hooks, progress
                        )
                except CorruptInputError:
                    raise
                except Exception as exc:  # noqa: BLE001 - one method failing must not stop the others
                    failures.append(record_failure(run_dir, ds_name, m_name, exc))
                    continue
                states[ds_name].rows.extend(rows)
                table = R.per_image_table(states[ds_name].rows, prepared.image_metrics(ds))
                R.write_per_image(run_dir, ds_name, table, cfg.bench.results_format)
            close(m_name)
    finally:
        for m_name in prepared.methods:
            close(m_name)
    summary = summary_table(ctx, states, failures)
    for hook in hooks:
        hook.on_end(ctx, summary)
    skipped = {name: state.skipped for name, state in states.items()}
    meta = R.run_meta(cfg, dev, prepared, skipped, failures, started)
    annotate_meta(meta, prepared, states)
    R.write_summary(run_dir, summary, meta)
    if failures:
        raise BenchFailedError(run_dir, failures)
    return run_dir


def config_hooks(cfg: ExperimentConfig, given: Sequence[BenchHook] = ()) -> list[BenchHook]:
    """Hooks the config asks for: an ``EfficiencyHook`` when ``bench.efficiency`` is set (unless given)."""
    options = getattr(cfg.bench, "efficiency", None)
    if options is None:
        return []
    from harness.bench_efficiency import EfficiencyHook

    if any(isinstance(h, EfficiencyHook) for h in given):
        return []
    return [EfficiencyHook(options)]
