"""Component on vs off: ``comparison_frame`` pairs each cell with SCA / HCC on against the cell with it off and
the same other swept values, and tests the difference per metric with ``harness.core.stats.paired_test`` over
the images both cells evaluated (their per-image tables, ``metrics/<dataset>.csv``); the whole table is one
Holm family and each row gets ``harness.core.stats.verdict``."""

from __future__ import annotations

import fnmatch
import json
import math
from typing import Any

import pandas as pd

from harness.bench.layout import LATENCY_COL
from harness.core.stats import min_effect
from reports.sweep.cells import SweepCell, finished_cells
from reports.sweep.keys import short_names, swept_keys, swept_value_label, truthy, varying_keys
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


def _per_image(cell: SweepCell, dataset: str) -> pd.DataFrame | None:
    """The cell's per-image metric table of ``dataset`` (bench layout ``metrics/<dataset>.csv``), or None."""
    from harness.bench.layout import per_image_path, read_per_image

    for fmt in ("csv", "parquet"):
        path = per_image_path(cell.run_dir, dataset, fmt) if cell.run_dir is not None else None
        if path is not None and path.is_file():
            try:
                return read_per_image(path)
            except (OSError, ValueError, ImportError) as exc:
                cell.problems.append(f"{path}: unreadable ({exc})")
    return None


def _paired(on: SweepCell, off: SweepCell, dataset: str, method: str, metric: str, options) -> Any:
    """The ``harness.core.stats.PairedTest`` of on - off over the images both have, or None."""
    from harness.core.stats import paired_test

    tables = [_per_image(c, dataset) for c in (on, off)]
    if any(t is None or metric not in t.columns for t in tables):
        return None
    a, b = (t[t["method"] == method].set_index("image")[metric] for t in tables)
    common = a.index.intersection(b.index)
    if len(common) < 2:
        return None
    return paired_test(
        a[common].to_numpy(float),
        b[common].to_numpy(float),
        test=options.test,
        n_resamples=options.n_resamples,
        confidence=options.confidence,
        seed=options.seed,
    )


def _compare(on: SweepCell, off: SweepCell, label: str, skip: set[str], options) -> list[dict]:
    """The ``comparison_frame`` rows of one on / off pair: every (dataset, method, metric) both summaries have,
    except timings and the ``skip`` methods."""
    merged = on.summary.merge(off.summary, on=["dataset", "method", "metric"], suffixes=("_on", "_off"))
    merged = merged[merged["metric"] != LATENCY_COL]  # a timing, not a quality difference of the component
    rows = []
    for rec in merged[~merged["method"].isin(skip)].itertuples(index=False):
        res = _paired(on, off, rec.dataset, rec.method, rec.metric, options)
        if res is None:
            diff, low, high, p, n = rec.mean_on - rec.mean_off, math.nan, math.nan, math.nan, math.nan
        else:
            diff, low, high, p, n = res.mean_diff, res.ci.low, res.ci.high, res.p_value, res.n
        rows.append(
            {
                "comparison": label,
                "dataset": rec.dataset,
                "method": rec.method,
                "metric": rec.metric,
                "off": rec.mean_off,
                "on": rec.mean_on,
                DIFF: diff,
                f"{DIFF} lo": low,
                f"{DIFF} hi": high,
                "p": p,
                "n": n,
                "_lower_better": rec.lower_better_on,
                "_min_effect": min_effect(rec.metric, options.min_effect),
            }
        )
    return rows


def _judge(df: pd.DataFrame, options) -> pd.DataFrame:
    """``p (Holm)`` over every tested row of the table (one family) and each row's verdict ("–": untested)."""
    from harness.core.stats import holm, verdict

    df.insert(df.columns.get_loc("p") + 1, "p (Holm)", holm(df["p"].to_numpy(float)))
    verdicts = []
    for r in df.to_dict(orient="records"):
        if pd.isna(r["p"]) or pd.isna(r["_lower_better"]):
            verdicts.append("–")
            continue
        verdicts.append(
            verdict(
                r["p (Holm)"],
                (r[f"{DIFF} lo"], r[f"{DIFF} hi"]),
                int(r["n"]),
                lower_better=truthy(r["_lower_better"]),
                min_effect=r["_min_effect"],
                alpha=options.alpha,
            )
        )
    df["verdict"] = verdicts
    return df.drop(columns=["_lower_better", "_min_effect"])


def comparison_frame(cells: list[SweepCell], options: Any = None) -> pd.DataFrame:
    """Every swept SCA / HCC toggle on vs off (``TOGGLES``: ``hcc.lambda`` 0 and ``sca.mask_input`` none are
    off): each cell with the component on is paired with the off cell that has the same other swept values;
    per method (not ``constant_methods``) and metric: both means and the difference on - off with its bootstrap
    CI and the paired test's p-value over the images both cells evaluated (from their per-image tables; without
    them only the difference of means), ``p (Holm)`` over all the table's tests, and ``verdict``
    (``harness.core.stats.verdict``: better / worse / no detectable difference (n=N); "–" when untested).
    ``options``: a ``harness.core.stats.StatisticsOptions`` (default: its defaults). Columns dataset and method
    are dropped when they hold one value. Empty when the sweep toggles neither component."""
    from harness.core.stats import StatisticsOptions

    options = options or StatisticsOptions()
    done = finished_cells(cells)
    keys = swept_keys(done)
    short = short_names(keys)
    skip = set(constant_methods(done))
    rows: list[dict] = []
    for key in keys:
        toggle = _toggle(key)
        if toggle is None:
            continue
        name, is_off = toggle
        others = [k for k in varying_keys(done) if k != key and not k.endswith(ARM_SUFFIXES)]
        offs = [c for c in done if key in c.overrides and is_off(c.overrides[key])]
        for on in done:
            if key not in on.overrides or is_off(on.overrides[key]):
                continue
            off = next((c for c in offs if all(_same(c.overrides.get(k), on.overrides.get(k)) for k in others)), None)
            if off is None:
                continue
            on_value, off_value = swept_value_label(on.overrides[key]), swept_value_label(off.overrides[key])
            label = f"{name}: {short[key]}={on_value} vs {off_value}"
            if others:
                context = ", ".join(f"{short[k]}={swept_value_label(on.overrides.get(k))}" for k in others)
                label += f" ({context})"
            rows += _compare(on, off, label, skip, options)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df = _judge(df, options)
    single = [c for c in ("dataset", "method") if df[c].nunique() == 1]
    if df["n"].isna().all():
        single += ["n", "p", "p (Holm)", f"{DIFF} lo", f"{DIFF} hi"]
    return df.drop(columns=single)
