"""The end of a bench run: the summary table (bootstrap CIs, set-level metrics) and what ``summary.json`` adds.

``summary_table`` passes per-image metrics and latency through the bootstrap (``results.summarize``), then
computes set-level metrics (FID) from the saved folders; ``annotate_meta`` adds per-method skips and where each
latency comes from to the metadata of ``results.run_meta``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from harness import results as R
from harness.bench_cell import DatasetState, latency_source
from harness.bench_context import BenchContext, Prepared
from harness.bench_errors import record_failure


def _preview(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... and {len(names) - limit} more"


def annotate_meta(meta: dict[str, Any], prepared: Prepared, states: dict[str, DatasetState]) -> None:
    """Add what ``results.run_meta`` does not record: per-method skips and where each latency comes from."""
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
            skipped += [{"dataset": ds_name, "method": m_name, R.IMAGE_COL: k, "error": e} for k, e in items.items()]
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
        directions[R.LATENCY_COL] = True
        parts.append(R.summarize(table, directions, n_boot=cfg.bench.bootstrap_samples, seed=cfg.seed))
        for mt_name, flags in prepared.flags.items():
            if not flags.set_level or (flags.needs_reference and not ds.has_reference):
                continue
            for m_name in dict.fromkeys(table["method"]):
                sr_dir, hr_dir = (
                    R.sr_image_dir(run_dir, ds_name, m_name),
                    R.reference_dir(run_dir, ds_name, "hr"),
                )
                try:
                    value = float(prepared.metrics[mt_name].compute_sets(sr_dir, hr_dir))
                except Exception as exc:  # noqa: BLE001
                    failures.append(record_failure(run_dir, ds_name, f"{m_name} ({mt_name})", exc))
                    continue
                n_images = int((table["method"] == m_name).sum())
                parts.append(R.set_level_row(ds_name, m_name, mt_name, value, n_images, flags.lower_better))
    orders = {"dataset": list(prepared.datasets), "method": list(prepared.methods),
              "metric": [*prepared.metrics, R.LATENCY_COL]}  # fmt: skip
    return R.order_summary(parts, orders)
