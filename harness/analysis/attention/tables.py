"""Attention-distance tables: side-by-side comparison of two models and ``analysis/attention.csv`` I/O."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness.analysis.attention.stats import ATTENTION_COLUMNS

COMPARED = ("mean_distance", "within_scale_distance", "mass_within_r", "mass_own", "mass_prefix")
"""The statistics ``compare_models`` sets side by side (with their uniform baselines)."""


def compare_models(
    records_a: pd.DataFrame,
    records_b: pd.DataFrame,
    names: tuple[str, str] = ("A", "B"),
    by: Sequence[str] = ("query_level", "query_scale"),
    columns: Sequence[str] = COMPARED,
) -> pd.DataFrame:
    """Side-by-side attention statistics of two models on the same images (e.g. SCA off vs on).

    Inputs are distance tables (``AttentionRecorder.distance_table`` / ``read_attention_csv``); rows are
    averaged over everything not in ``by`` (layers x heads by default). Columns: ``by``, then for every
    statistic in ``columns``: ``stat[name]`` for both models, ``delta_stat`` = B - A and ``uniform_stat``
    (uniform attention over the visible keys, the mean of the two tables' baselines: equal for the same
    images and schedule).
    """
    needed = [*by, "radius", *columns, *(f"uniform_{c}" for c in columns)]
    for name, df in zip(names, (records_a, records_b)):
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise ValueError(f"compare_models: table {name!r} lacks columns {missing}")
    radii = {float(r) for df in (records_a, records_b) for r in df["radius"].unique()}
    if len(radii) > 1:
        raise ValueError(f"compare_models: the tables use different radii {sorted(radii)}")
    stats = [*columns, *(f"uniform_{c}" for c in columns)]
    agg = [df.groupby(list(by), sort=True)[stats].mean() for df in (records_a, records_b)]
    if not agg[0].index.equals(agg[1].index):

        def listing(keys: set) -> str:
            return ", ".join(sorted("/".join(map(str, k)) if isinstance(k, tuple) else str(k) for k in keys)) or "-"

        only_a = listing(set(agg[0].index) - set(agg[1].index))
        only_b = listing(set(agg[1].index) - set(agg[0].index))
        raise ValueError(
            f"compare_models: different scales; only in {names[0]!r}: {only_a}; only in {names[1]!r}: {only_b}"
        )
    out = pd.DataFrame(index=agg[0].index)
    for col in columns:
        out[f"{col}[{names[0]}]"] = agg[0][col]
        out[f"{col}[{names[1]}]"] = agg[1][col]
        out[f"delta_{col}"] = agg[1][col] - agg[0][col]
        out[f"uniform_{col}"] = (agg[0][f"uniform_{col}"] + agg[1][f"uniform_{col}"]) / 2
    return out.reset_index()


def write_attention_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a distance table to ``path`` (atomic), checking the ATTENTION_COLUMNS schema."""
    from harness.core.atomic import atomic_path

    missing = [c for c in ATTENTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: attention table lacks columns {missing}")
    cols = (["model"] if "model" in df.columns else []) + list(ATTENTION_COLUMNS)
    with atomic_path(path) as tmp:
        df[cols].to_csv(tmp, index=False)
    return Path(path)


def read_attention_csv(path: str | Path) -> pd.DataFrame:
    """Read ``analysis/attention.csv``; a missing column raises ValueError naming the file."""
    df = pd.read_csv(path)
    missing = [c for c in ATTENTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}: not an attention table, missing columns {missing}; expected {list(ATTENTION_COLUMNS)}"
        )
    df["query_scale"] = df["query_scale"].astype(str)
    return df
