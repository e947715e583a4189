"""The long tables behind the sweep's figures: ``lambda_frame`` (metrics over one numeric swept key, across
seeds; ``seed_points`` its per-seed means), ``distribution_frame`` (per-image values per configuration) and
``analysis_frame`` (the cells' attention-distance or error-accumulation tables side by side, one model label per
cell), plus ``identical_curves`` / ``identical_note`` for accumulation curves drawn on top of each other."""

from __future__ import annotations

import pandas as pd

from harness.bench.layout import LATENCY_COL
from reports.sweep.cells import SweepCell, per_image_table
from reports.sweep.keys import cell_label, short_names, swept_keys, swept_value_label, truthy, varying_keys
from reports.sweep.seeds import SEED_KEY, config_id, config_keys, seed_interval, seed_of
from reports.sweep.tables import constant_methods


def lambda_frame(cells: list[SweepCell], key: str) -> pd.DataFrame:
    """Long table (value, group, metric, mean, ci_low, ci_high, lower_better, seeds) for a curve over swept
    ``key``, one row per configuration: one seed, its mean and image-level CI; several, the mean of the per-seed
    means with the t-interval across seeds (``seed_interval``; the same numbers as ``ablation_frame``).
    ``group`` labels the other swept keys' values (and the method when a cell has several)."""
    points = seed_points(cells, key)
    if points.empty:
        return pd.DataFrame(columns=[*POINT_COLUMNS[:3], "mean", "ci_low", "ci_high", "lower_better", "seeds"])
    rows = []
    for (_config, group, metric), part in points.groupby(["config", "group", "metric"], sort=False):
        if len(part) == 1:
            rec = part.iloc[0]
            mean, low, high = rec["mean"], rec["ci_low"], rec["ci_high"]
        else:
            mean, low, high = seed_interval(part["mean"].tolist())
        rows.append(
            {
                "value": float(part["value"].iloc[0]),
                "group": group,
                "metric": metric,
                "mean": mean,
                "ci_low": low if not pd.isna(low) else mean,
                "ci_high": high if not pd.isna(high) else mean,
                "lower_better": part["lower_better"].iloc[0],
                "seeds": len(part),
            }
        )
    return pd.DataFrame(rows)


POINT_COLUMNS = ("value", "group", "metric", "seed", "mean", "ci_low", "ci_high", "lower_better", "config")


def seed_points(cells: list[SweepCell], key: str) -> pd.DataFrame:
    """One row per cell (seed), metric and group: its mean (and image-level CI) at its value of ``key``
    (``POINT_COLUMNS``; ``config`` identifies the configuration the seeds replicate)."""
    others = [k for k in varying_keys(cells) if k not in (key, SEED_KEY)]
    others = [k for k in others if not tied_to(cells, k, key, others)]
    short = short_names(swept_keys(cells))
    constant = set(constant_methods(cells))  # baselines: the same in every cell, no curve over ``key``
    rows = []
    for cell in cells:
        if cell.summary is None or key not in cell.overrides:
            continue
        n_datasets = cell.summary["dataset"].nunique()
        config = config_id(cell, config_keys(cells))
        for rec in cell.summary.itertuples(index=False):
            if rec.method in constant:
                continue
            group = ", ".join(f"{short[k]}={swept_value_label(cell.overrides.get(k))}" for k in others)
            if cell.summary["method"].nunique() > 1:
                group = f"{group}, {rec.method}" if group else rec.method
            metric = rec.metric if n_datasets == 1 else f"{rec.dataset}: {rec.metric}"
            rows.append(
                {
                    "value": float(cell.overrides[key]),
                    "group": group,
                    "metric": metric,
                    "seed": seed_of(cell),
                    "mean": rec.mean,
                    "ci_low": rec.ci_low,
                    "ci_high": rec.ci_high,
                    "lower_better": None if pd.isna(rec.lower_better) else truthy(rec.lower_better),
                    "config": config,
                }
            )
    return pd.DataFrame(rows, columns=list(POINT_COLUMNS))


def tied_to(cells: list[SweepCell], other: str, key: str, others: list[str]) -> bool:
    """Whether swept ``other`` changes together with ``key`` (e.g. each lambda arm zipped with its own
    checkpoint): with the remaining keys fixed, every value of ``key`` comes with its own value of ``other``.
    Such a key would give every curve a single point, so it does not split the curves."""
    rest = [k for k in others if k != other and k != SEED_KEY]
    seen: dict[tuple, dict[str, set[str]]] = {}
    for cell in cells:
        if key not in cell.overrides:
            continue
        group = tuple(swept_value_label(cell.overrides.get(k)) for k in rest)
        by_value = seen.setdefault(group, {})
        by_value.setdefault(swept_value_label(cell.overrides[key]), set()).add(
            swept_value_label(cell.overrides.get(other))
        )
    tied = False
    for by_value in seen.values():
        if len(by_value) < 2:
            continue
        if any(len(v) > 1 for v in by_value.values()):
            return False  # ``other`` varies at a fixed value of ``key``: a real axis of its own
        if len(set().union(*by_value.values())) != len(by_value):
            return False  # some values of ``key`` share a value of ``other``
        tied = True
    return tied


def distribution_frame(cells: list[SweepCell], skip: set[str] = frozenset()) -> pd.DataFrame:
    """Per-image metric values of every finished cell (long: config, method, seed, dataset, metric, image,
    value), methods in ``skip`` (e.g. the constant baselines) left out; ``config`` is the cell's label without
    its seed."""
    keys = [k for k in varying_keys(cells) if k != SEED_KEY]
    short = short_names(swept_keys(cells))
    rows = []
    for cell in cells:
        if cell.summary is None or cell.summary.empty:
            continue
        label = ", ".join(f"{short[k]}={swept_value_label(cell.overrides.get(k))}" for k in keys) or "base"
        directions = cell.summary.groupby("metric")["lower_better"].first()
        for dataset in dict.fromkeys(cell.summary["dataset"]):
            table = per_image_table(cell, dataset)
            if table is None:
                continue
            metrics = [m for m in directions.index if m in table.columns and m != LATENCY_COL]
            for method, part in table[~table["method"].isin(skip)].groupby("method", sort=False):
                long = part.melt(id_vars=["image"], value_vars=metrics, var_name="metric", value_name="value")
                long = long.assign(config=label, method=method, seed=seed_of(cell), dataset=dataset)
                rows.append(long)
    if not rows:
        return pd.DataFrame(columns=["config", "method", "seed", "dataset", "metric", "image", "value"])
    return pd.concat(rows, ignore_index=True)[["config", "method", "seed", "dataset", "metric", "image", "value"]]


def identical_curves(accumulation: pd.DataFrame, mode: str = "free_running") -> list[list[str]]:
    """Groups (2+) of models whose ``mode`` curves are identical, i.e. drawn on top of each other: for
    free-running curves, models that generated the same tokens (e.g. undertrained ones that predict one code
    per scale whatever the training setting)."""
    groups: dict[tuple, list[str]] = {}
    for model, curve in accumulation[accumulation["mode"] == mode].groupby("model", sort=False):
        key = tuple(curve.sort_values("scale_index")["error"].round(12))
        groups.setdefault(key, []).append(str(model))
    return [g for g in groups.values() if len(g) > 1]


def identical_note(accumulation: pd.DataFrame) -> str:
    """A caption sentence naming the ``identical_curves`` of the free-running mode; empty when there are none."""
    groups = identical_curves(accumulation)
    if not groups:
        return ""
    listing = "; ".join(" = ".join(g) for g in groups)
    return (
        f" Identical free-running curves (drawn on top of each other): {listing}. Those models generated the "
        "same tokens for these images, so this analysis cannot tell them apart."
    )


def analysis_frame(cells: list[SweepCell], attr: str) -> pd.DataFrame | None:
    """The cells' analysis tables (``attr``: 'attention' or 'accumulation') concatenated, ``model`` = the cell's
    label (+ the table's own model name when the cells' tables do not all name the same single model); None when
    no cell has one."""
    keys = varying_keys(cells)
    short = short_names(swept_keys(cells))
    tables = []
    for cell in cells:
        df = getattr(cell, attr)
        if df is not None and not df.empty:
            df = df.copy()
            inner = df["model"].fillna("").astype(str) if "model" in df.columns else pd.Series("", index=df.index)
            tables.append((cell, df, inner))
    if not tables:
        return None
    one_model = len({m for _, _, inner in tables for m in inner}) == 1
    for cell, df, inner in tables:
        label = cell_label(cell, keys, short)
        df["model"] = [f"{label} / {m}" if m and not one_model else label for m in inner]
    return pd.concat([df for _, df, _ in tables], ignore_index=True)
