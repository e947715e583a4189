"""``run_bench(cfg)``: every method on every dataset, per-image metrics, saved outputs, summary statistics.

1. ``prepare``: check every path the experiment names, build every dataset, method and metric and check they
   fit together; all problems are reported in one ``BenchValidationError`` before any work starts.
2. For each method (built once, moved to the device once) and each dataset, ``evaluate`` it; a method that
   raises is recorded (traceback in ``errors/``) and the others carry on.
3. Summary statistics with bootstrap CIs and set-level metrics (FID) from the saved folders; ``summary.json``
   is written last. ``BenchFailedError`` is raised at the very end if any method failed (the CLI exits 1).

Hooks (``BenchHook``) see the run as it goes; ``bench.efficiency`` adds the efficiency hook (Table 2).
"""

from __future__ import annotations

import datetime as _dt
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from harness.bench import layout
from harness.bench.efficiency import EfficiencyHook
from harness.bench.evaluate import CorruptInputError, DatasetState, evaluate, latency_source
from harness.bench.layout import record_failure
from harness.bench.prepare import BenchContext, BenchHook, Prepared, prepare
from harness.config.experiment import ExperimentConfig
from harness.config.files import dump_yaml
from harness.core.atomic import write_json
from harness.core.device import resolve_device
from harness.core.envinfo import collect_env


class RunExistsError(FileExistsError):
    """The run directory already holds a finished run and ``force`` was not given."""


class BenchFailedError(RuntimeError):
    """Raised after all outputs are written when at least one method (or set-level metric) failed."""

    def __init__(self, run_dir: Path, failures: list[dict[str, Any]]):
        self.run_dir = Path(run_dir)
        self.failures = failures
        lines = [f"{f['method']} on {f['dataset']}: {f['error']}" for f in failures]
        super().__init__(
            f"{len(failures)} failure(s) in {run_dir} (tracebacks in {run_dir / 'errors'}):\n  " + "\n  ".join(lines)
        )


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (each method x dataset starts from one state)."""
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
    for entry in layout.OUTPUT_ENTRIES:
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
    prepared = prepare(cfg, dev, progress=progress)
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
        layout.write_config(run_dir, dump_yaml(cfg.to_dict()))
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
                        rows = evaluate(
                            ctx, ds_name, ds, m_name, method.for_dataset(ds_name), states[ds_name], hooks, progress
                        )
                except CorruptInputError:
                    raise
                except Exception as exc:  # noqa: BLE001 - one method failing must not stop the others
                    failures.append(record_failure(run_dir, ds_name, m_name, exc))
                    continue
                states[ds_name].rows.extend(rows)
                table = layout.per_image_table(states[ds_name].rows, prepared.image_metrics(ds))
                layout.write_per_image(run_dir, ds_name, table, cfg.bench.results_format)
            close(m_name)
    finally:
        for m_name in prepared.methods:
            close(m_name)
    summary = summary_table(ctx, states, failures)
    for hook in hooks:
        hook.on_end(ctx, summary)
    skipped = {name: state.skipped for name, state in states.items()}
    meta = layout.run_meta(cfg, dev, prepared, skipped, failures, started)
    annotate_meta(meta, prepared, states)
    layout.write_summary(run_dir, summary, meta)
    if failures:
        raise BenchFailedError(run_dir, failures)
    return run_dir


def config_hooks(cfg: ExperimentConfig, given: Sequence[BenchHook] = ()) -> list[BenchHook]:
    """Hooks the config asks for: an ``EfficiencyHook`` when ``bench.efficiency`` is set (unless given)."""
    options = getattr(cfg.bench, "efficiency", None)
    if options is None:
        return []
    if any(isinstance(h, EfficiencyHook) for h in given):
        return []
    return [EfficiencyHook(options)]


# ----------------------------------------------------------------------------------------------- summary
def _preview(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... and {len(names) - limit} more"


def annotate_meta(meta: dict[str, Any], prepared: Prepared, states: dict[str, DatasetState]) -> None:
    """Add what ``layout.run_meta`` does not record: per-method skips and where each latency comes from."""
    notes = []
    for name, method in prepared.methods.items():
        source = latency_source(method)
        if name in meta.get("methods", {}):
            meta["methods"][name]["latency_source"] = source
        if source == "reported":
            notes.append(f"{name}: latency is the per-image time its timings file reports, not measured here")
    skipped = []
    for ds_name, state in states.items():
        for m_name, items in state.method_skipped.items():
            skipped += [
                {"dataset": ds_name, "method": m_name, layout.IMAGE_COL: k, "error": e} for k, e in items.items()
            ]
            notes.append(
                f"{m_name} on {ds_name}: {len(items)} image(s) without output skipped (strict: false), its "
                f"statistics cover the other images only: {_preview(list(items))}"
            )
    meta["method_skipped"] = skipped
    meta["notes"] = [*meta.get("notes", []), *notes]


def summary_table(ctx: BenchContext, states: dict[str, DatasetState], failures: list[dict]) -> pd.DataFrame:
    """Per-image metrics + latency through the bootstrap, then set-level metrics from the saved folders."""
    cfg, run_dir, prepared = ctx.cfg, ctx.run_dir, ctx.prepared
    parts = []
    for ds_name, state in states.items():
        ds, table = prepared.datasets[ds_name], pd.DataFrame(state.rows)
        if table.empty:
            continue
        directions = {k: prepared.flags[k].lower_better for k in prepared.image_metrics(ds)}
        directions[layout.LATENCY_COL] = True
        parts.append(layout.summarize(table, directions, n_boot=cfg.bench.bootstrap_samples, seed=cfg.seed))
        for mt_name, flags in prepared.flags.items():
            if not flags.set_level or (flags.needs_reference and not ds.has_reference):
                continue
            for m_name in dict.fromkeys(table["method"]):
                sr_dir, hr_dir = (
                    layout.sr_image_dir(run_dir, ds_name, m_name),
                    layout.reference_dir(run_dir, ds_name, "hr"),
                )
                try:
                    value = float(prepared.metrics[mt_name].compute_sets(sr_dir, hr_dir))
                except Exception as exc:  # noqa: BLE001
                    failures.append(record_failure(run_dir, ds_name, f"{m_name} ({mt_name})", exc))
                    continue
                n_images = int((table["method"] == m_name).sum())
                parts.append(layout.set_level_row(ds_name, m_name, mt_name, value, n_images, flags.lower_better))
    orders = {"dataset": list(prepared.datasets), "method": list(prepared.methods),
              "metric": [*prepared.metrics, layout.LATENCY_COL]}  # fmt: skip
    return layout.order_summary(parts, orders)
