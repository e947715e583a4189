"""The long tables behind the sweep's figures: ``lambda_frame`` (metrics over one numeric swept key) and
``analysis_frame`` (the cells' attention-distance or error-accumulation tables side by side, one model label per
cell), plus ``identical_curves`` / ``identical_note`` for accumulation curves drawn on top of each other."""

from __future__ import annotations

import pandas as pd

from reports.sweep.cells import SweepCell
from reports.sweep.keys import cell_label, short_names, swept_keys, swept_value_label, truthy, varying_keys


def lambda_frame(cells: list[SweepCell], key: str) -> pd.DataFrame:
    """Long table (value, group, metric, mean, ci_low, ci_high) for a curve over swept ``key``; ``group``
    labels the other swept keys' values (and the method when a cell has several)."""
    others = [k for k in varying_keys(cells) if k != key]
    short = short_names(swept_keys(cells))
    rows = []
    for cell in cells:
        if cell.summary is None or key not in cell.overrides:
            continue
        n_datasets = cell.summary["dataset"].nunique()
        for rec in cell.summary.itertuples(index=False):
            group = ", ".join(f"{short[k]}={swept_value_label(cell.overrides.get(k))}" for k in others)
            if cell.summary["method"].nunique() > 1:
                group = f"{group}, {rec.method}" if group else rec.method
            metric = rec.metric if n_datasets == 1 else f"{rec.dataset}: {rec.metric}"
            rows.append(
                {
                    "value": float(cell.overrides[key]),
                    "group": group,
                    "metric": metric,
                    "mean": rec.mean,
                    "ci_low": rec.ci_low if not pd.isna(rec.ci_low) else rec.mean,
                    "ci_high": rec.ci_high if not pd.isna(rec.ci_high) else rec.mean,
                    "lower_better": None if pd.isna(rec.lower_better) else truthy(rec.lower_better),
                }
            )
    return pd.DataFrame(rows)


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
