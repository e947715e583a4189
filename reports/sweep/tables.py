"""The sweep's results tables: ``ablation_frame`` (one row per configuration and method, swept keys as columns,
metrics as mean with CI columns, across seeds when the sweep has them) and ``baseline_frame`` (methods identical
in every cell, shown once). Both return (table, bold_best, ci) in the form ``reports.exports`` formats."""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.bench.layout import LATENCY_COL
from reports.sweep.cells import SweepCell, finished_cells
from reports.sweep.keys import short_names, swept_keys, swept_value_label, truthy
from reports.sweep.seeds import config_groups, config_keys, per_seed_text, seed_interval, seed_of, seeds_text


def auto_precision(values: pd.Series) -> int:
    """Decimals that suit a metric's magnitude: 28.41, 0.9123, 0.2955, 123.4."""
    finite = pd.to_numeric(values, errors="coerce").abs().dropna()
    top = float(finite.median()) if len(finite) else 1.0
    return 1 if top >= 100 else 2 if top >= 10 else 3 if top >= 1 else 4


def constant_methods(cells: list[SweepCell]) -> list[str]:
    """Methods whose results are identical in every finished cell (e.g. a bicubic baseline benchmarked next
    to each cell's trained model): the report shows them once, not once per cell. Empty with fewer than two
    finished cells or when no other method would be left."""
    done = finished_cells(cells)
    if len(done) < 2:
        return []

    def values(cell: SweepCell, method: str) -> list:  # timings differ from run to run: not compared
        part = cell.summary[(cell.summary["method"] == method) & (cell.summary["metric"] != LATENCY_COL)]
        return sorted(part[["dataset", "metric", "mean"]].astype(str).itertuples(index=False, name=None))

    methods = list(dict.fromkeys(m for c in done for m in c.summary["method"]))
    same = [m for m in methods if values(done[0], m) and all(values(c, m) == values(done[0], m) for c in done)]
    return same if len(same) < len(methods) else []


def _wide(
    entries: list[tuple[dict[str, Any], list[pd.DataFrame]]], datasets: list[str]
) -> tuple[pd.DataFrame, dict[str, str], dict[str, tuple[str, str]]]:
    """Rows ``prefix + per metric mean / <col> lo / <col> hi`` from (prefix, summary rows of one method per
    seed). One seed: its mean and image-level CI. Several: the mean of the per-seed means, the t-interval
    across seeds (``seed_interval``) and ``<col> per seed`` (the per-seed means as text)."""
    rows, direction = [], {}
    for prefix, parts in entries:
        row = dict(prefix)
        per: dict[str, list[float]] = {}
        for part in parts:
            for rec in part.itertuples(index=False):
                col = rec.metric if len(datasets) == 1 else f"{rec.dataset}: {rec.metric}"
                per.setdefault(col, []).append(float(rec.mean))
                if len(parts) == 1:
                    row[col], row[f"{col} lo"], row[f"{col} hi"] = rec.mean, rec.ci_low, rec.ci_high
                if not pd.isna(rec.lower_better):
                    direction[col] = "lower" if truthy(rec.lower_better) else "higher"
        if len(parts) > 1:
            for col, values in per.items():
                row[col], row[f"{col} lo"], row[f"{col} hi"] = seed_interval(values)
                row[f"{col} per seed"] = per_seed_text(values, auto_precision(pd.Series(values)))
        rows.append(row)
    df = pd.DataFrame(rows)
    metric_cols = [c for c in df.columns if f"{c} lo" in df.columns]
    ci = {c: (f"{c} lo", f"{c} hi") for c in metric_cols if df[f"{c} lo"].notna().any()}
    df = df.drop(columns=[f"{c} {s}" for c in metric_cols if c not in ci for s in ("lo", "hi")])
    per_seed = [f"{c} per seed" for c in metric_cols if f"{c} per seed" in df.columns]
    if per_seed:  # after the metrics, in their order
        df = df[[c for c in df.columns if c not in per_seed] + per_seed]
    return df, {c: d for c, d in direction.items() if c in metric_cols}, ci


def ablation_frame(cells: list[SweepCell]) -> tuple[pd.DataFrame, dict[str, str], dict[str, tuple[str, str]]]:
    """Wide ablation table of the configurations with results: swept keys (short names; ``seed`` is the
    replicate axis, not a column), [method], [seeds], then per metric the mean with hidden ``<col> lo`` /
    ``<col> hi`` CI columns: over images for a configuration run at one seed, across seeds (mean of the
    per-seed means, t-interval, plus ``<col> per seed``) for one run at several. Returns (table, bold_best,
    ci) for ``exports``. Methods with the same results in every cell (``constant_methods``) are left out: see
    ``baseline_frame``.
    """
    done = finished_cells(cells)
    if not done:
        return pd.DataFrame(), {}, {}
    keys = config_keys(done)
    short = short_names(swept_keys(done))
    datasets = list(dict.fromkeys(d for c in done for d in c.summary["dataset"]))
    skip = set(constant_methods(done))
    parts = {c.name: c.summary[~c.summary["method"].isin(skip)] for c in done}
    multi_method = any(p.groupby("dataset")["method"].nunique().max() > 1 for p in parts.values())
    seeded = any(seed_of(c) is not None for c in done)
    entries = []
    for group in config_groups(done):
        first = group[0]
        for method in dict.fromkeys(parts[first.name]["method"]):
            prefix: dict[str, Any] = {} if keys else {"cell": "base" if seeded else first.name}
            prefix.update({short[k]: swept_value_label(first.overrides.get(k)) for k in keys})
            if multi_method:
                prefix["method"] = method
            if seeded:
                prefix["seeds"] = seeds_text([seed_of(c) for c in group])
            entries.append((prefix, [parts[c.name][parts[c.name]["method"] == method] for c in group]))
    return _wide(entries, datasets)


def baseline_frame(cells: list[SweepCell]) -> tuple[pd.DataFrame, dict[str, str], dict[str, tuple[str, str]]]:
    """The ``constant_methods`` once each (method, then per metric mean with CI columns); empty if none."""
    done = finished_cells(cells)
    methods = constant_methods(done)
    if not methods:
        return pd.DataFrame(), {}, {}
    datasets = list(dict.fromkeys(d for c in done for d in c.summary["dataset"]))
    first = done[0].summary
    return _wide([({"method": m}, [first[first["method"] == m]]) for m in methods], datasets)
