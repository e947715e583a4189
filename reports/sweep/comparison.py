"""Component on vs off: ``comparison_frame`` pairs each configuration with SCA / HCC on against the one with it
off and the same other swept values, seed by seed, and tests the difference per metric: a paired test over the
images both cells of a seed evaluated (their per-image tables, ``metrics/<dataset>.csv``) and, with several
seeds, a paired test over the per-seed means; Holm over the whole table (docs/STATISTICS.md, "Images and
seeds")."""

from __future__ import annotations

import fnmatch
import json
import math
from typing import Any

import numpy as np
import pandas as pd

from harness.bench.layout import LATENCY_COL
from reports.sweep.cells import SweepCell, finished_cells, per_image_table
from reports.sweep.keys import short_names, swept_keys, swept_value_label, truthy, varying_keys
from reports.sweep.seeds import SEED_KEY, config_groups, config_keys, seed_of
from reports.sweep.tables import constant_methods

TOGGLES = (  # swept key (suffix, or a pattern with *) -> component name, "is off" value test
    ("hcc.lambda", "HCC", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v == 0),
    ("sca.mask_input", "SCA", lambda v: v in (None, "none")),
    # instrument controls (experiments/tiny_controls.yaml): a planted degradation against none, and a method's
    # sampling seed against seed 0 (the same config twice: a null comparison)
    ("plant_scale", "planted degradation", lambda v: v is None),
    ("methods.*.seed", "seed", lambda v: isinstance(v, int) and not isinstance(v, bool) and v == 0),
)
# Swept keys that name each cell's weights rather than a design factor (the demo zips its shipped checkpoints
# with the SCA / HCC settings they were trained with): they never keep an on cell from its off cell
ARM_SUFFIXES = (".checkpoint", ".vqvae")
DIFF = "on - off"


def _toggle(key: str) -> tuple[str, Any] | None:
    """(component name, is-off test) of the ``TOGGLES`` entry that swept ``key`` ends with, or None."""
    for suffix, name, is_off in TOGGLES:
        if key == suffix or key.endswith("." + suffix) or ("*" in suffix and fnmatch.fnmatchcase(key, suffix)):
            return name, is_off
    return None


def _same(a: Any, b: Any) -> bool:
    """Equal when written as JSON with sorted keys (lists and dicts compare by content; 1 and 1.0 differ)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _pairs(on: SweepCell, off: SweepCell, dataset: str, method: str, metric: str) -> tuple | None:
    """(on, off) per-image values over the images both cells evaluated (image order), or None."""
    tables = [per_image_table(c, dataset) for c in (on, off)]
    if any(t is None or metric not in t.columns for t in tables):
        return None
    a, b = (t[t["method"] == method].set_index("image")[metric] for t in tables)
    common = a.index.intersection(b.index, sort=False)
    if len(common) < 2:
        return None
    return a[common].to_numpy(float), b[common].to_numpy(float)


def _row(label: str, rec: Any, level: str, unit: str, on: float, off: float, res: Any, opts: Any) -> dict:
    from harness.core.stats import min_effect

    return {
        "comparison": label,
        "dataset": rec.dataset,
        "method": rec.method,
        "metric": rec.metric,
        "level": level,
        "off": off,
        "on": on,
        DIFF: res.mean_diff if res is not None else on - off,
        f"{DIFF} lo": res.ci.low if res is not None else math.nan,
        f"{DIFF} hi": res.ci.high if res is not None else math.nan,
        "p": res.p_value if res is not None else math.nan,
        "n": res.n if res is not None else math.nan,
        "unit": unit,
        "lower_better": None if pd.isna(rec.lower_better_on) else truthy(rec.lower_better_on),
        "min_effect": min_effect(rec.metric, opts.min_effect),
    }


def _compare(pairs: list[tuple[int | None, SweepCell, SweepCell]], label: str, skip: set[str], opts: Any) -> list:
    """The rows of one on / off comparison, ``pairs`` = (seed, on cell, off cell) per common seed: per (dataset,
    method, metric) both summaries have (not timings, not the ``skip`` methods) one image-level paired test per
    seed and, with two seeds or more, the seed-level paired test on the per-seed means."""
    from harness.core.stats import paired_test

    def test(a, b):
        return paired_test(a, b, test=opts.test, n_resamples=opts.n_resamples, confidence=opts.confidence,
                           seed=opts.seed)  # fmt: skip

    merged = [s_on.summary.merge(s_off.summary, on=["dataset", "method", "metric"], suffixes=("_on", "_off"))
              for _, s_on, s_off in pairs]  # fmt: skip
    first = merged[0]
    first = first[(first["metric"] != LATENCY_COL) & ~first["method"].isin(skip)]
    rows = []
    for rec in first.itertuples(index=False):
        seed_means = []
        for (seed, on, off), table in zip(pairs, merged):
            level = "images" if seed is None else f"seed {seed}"
            pair = _pairs(on, off, rec.dataset, rec.method, rec.metric)
            if pair is None:  # no per-image tables: the difference of the summary means, untested
                hit = table[(table["dataset"] == rec.dataset) & (table["method"] == rec.method)
                            & (table["metric"] == rec.metric)]  # fmt: skip
                if len(hit):
                    h = hit.iloc[0]
                    rows.append(_row(label, rec, level, "images", h["mean_on"], h["mean_off"], None, opts))
                continue
            a, b = pair
            rows.append(_row(label, rec, level, "images", float(a.mean()), float(b.mean()), test(a, b), opts))
            seed_means.append((float(a.mean()), float(b.mean())))
        if len(pairs) >= 2 and len(seed_means) == len(pairs):
            x, y = (np.array(v) for v in zip(*seed_means))
            level = f"across {len(pairs)} seeds"
            rows.append(_row(label, rec, level, "seeds", float(x.mean()), float(y.mean()), test(x, y), opts))
    return rows


def comparison_frame(cells: list[SweepCell], options: Any = None) -> pd.DataFrame:
    """Every swept SCA / HCC toggle on vs off (``TOGGLES``: ``hcc.lambda`` 0 and ``sca.mask_input`` none are
    off): each configuration with the component on is paired with the off configuration that has the same other
    swept values, seed by seed (cells of the same seed; ``seed`` is the replicate axis). Per method (not
    ``constant_methods``) and metric, rows at each ``level``:

    * ``images`` / ``seed S``: the on and off means and the difference on - off over the images both cells
      evaluated, with its bootstrap CI and the paired test's p (``harness.core.stats.paired_test``; sign-flip
      permutation by default), n = images;
    * ``across K seeds`` (K >= 2 common seeds): the same on the K per-seed means (n = seeds): the test of the
      configuration, training and sampling variance included.

    ``p (Holm)``: Holm over every row of the table (one family); ``verdict``: better / worse when p (Holm) < alpha
    and the CI reaches the metric's minimum effect (``harness.core.stats.verdict``), else "no detectable
    difference (n=...)"; "–" without per-image tables (difference of the means only). Columns dataset, method
    and level are dropped when they hold one value. Empty when the sweep toggles neither component."""
    from harness.core.stats import StatisticsOptions, add_verdicts

    opts = options or StatisticsOptions()
    done = finished_cells(cells)
    keys = config_keys(done)
    short = short_names(swept_keys(done))
    skip = set(constant_methods(done))
    groups = config_groups(done)
    rows: list[dict] = []
    for key in keys:
        toggle = _toggle(key)
        if toggle is None:
            continue
        name, is_off = toggle
        others = [k for k in varying_keys(done) if k not in (key, SEED_KEY) and not k.endswith(ARM_SUFFIXES)]
        offs = [g for g in groups if key in g[0].overrides and is_off(g[0].overrides[key])]
        for on_group in groups:
            on = on_group[0]
            if key not in on.overrides or is_off(on.overrides[key]):
                continue
            off_group = next(
                (g for g in offs if all(_same(g[0].overrides.get(k), on.overrides.get(k)) for k in others)), None
            )
            if off_group is None:
                continue
            off_by_seed = {seed_of(c): c for c in off_group}
            pairs = [(seed_of(c), c, off_by_seed[seed_of(c)]) for c in on_group if seed_of(c) in off_by_seed]
            if not pairs:
                continue
            on_value, off_value = swept_value_label(on.overrides[key]), swept_value_label(off_group[0].overrides[key])
            label = f"{name}: {short[key]}={on_value} vs {off_value}"
            if others:
                context = ", ".join(f"{short[k]}={swept_value_label(on.overrides.get(k))}" for k in others)
                label += f" ({context})"
            rows += _compare(pairs, label, skip, opts)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    tested = df["p"].notna() & df["lower_better"].notna()
    judged = add_verdicts(
        df[tested].rename(columns={f"{DIFF} lo": "ci_low", f"{DIFF} hi": "ci_high"}), alpha=opts.alpha
    )
    df["p (Holm)"] = math.nan
    df["verdict"] = "–"
    df.loc[tested, "p (Holm)"] = judged["p_holm"].to_numpy()
    df.loc[tested, "verdict"] = [
        v.replace(f"(n={n})", f"(n={n} {u})") for v, n, u in zip(judged["verdict"], judged["n"], judged["unit"])
    ]
    df = df.drop(columns=["unit", "lower_better", "min_effect"])
    single = [c for c in ("dataset", "method", "level") if df[c].nunique() == 1]
    if df["n"].isna().all():
        single += ["n", "p", "p (Holm)", f"{DIFF} lo", f"{DIFF} hi"]
    return df.drop(columns=single)
