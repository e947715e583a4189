"""Regression check of a bench run against a reference run: paired tests per metric, Holm, tolerances.

Both runs must cover the same datasets, methods and image keys (a mismatch is an error that lists the keys).
For every (dataset, method, metric) the per-image scores are paired by image and
``harness.core.stats.paired_test`` gives the mean difference new - reference, its bootstrap CI and a two-sided
p-value (sign-flip permutation test, or Wilcoxon). The p-values of all the (dataset, method, metric)
comparisons of the check are one family, adjusted with Holm (``harness.core.stats.holm``). The metric's
direction (``lower_better``, from the reference run) turns the difference into a *worsening* (> 0 = worse).

A **regression** is ``harness.core.stats.verdict`` saying "worse" with the metric's tolerance as the minimum
effect: Holm-adjusted p < alpha, the CI on the worse side of 0, and the CI reaching the tolerance (the data do
not show the worsening to be within it). A significant worsening whose CI lies within the tolerance is
"worse (within tolerance)". Tolerances come from a YAML file (``yaml.safe_load``)::

    alpha: 0.05                    # optional, default 0.05 (family-wise, over every comparison of the check)
    psnr_y: {max_drop: 0.05}       # higher-is-better metric: allowed mean drop
    lpips: {max_increase: 0.002}   # lower-is-better metric: allowed mean increase

A metric without an entry has tolerance 0 (any significant worsening counts). Latency is not compared unless
asked for (it measures the machine as much as the method).

Two runs whose input data differ (the ``datasets/`` groups of their data manifests, ``identity.json``) are not
compared: a difference would be blamed on the method. ``allow_data_change`` compares them anyway and says so in
the notes and the verdict. A non-finite score (NaN, inf) in the new run where the reference has a finite one is
a regression of its own (status ``non-finite``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from harness.bench.layout import IMAGE_COL, LATENCY_COL, RunResults, load_run
from harness.bench.prepare import dataset_groups
from harness.core.identity import RunIdentity, format_differences
from harness.core.mapping import ConfigError, from_dict
from harness.core.stats import BETTER, DEFAULT_N_RESAMPLES, WORSE, holm, paired_test, verdict

MAX_LISTED_KEYS = 10


class RegressionError(ValueError):
    """The runs cannot be compared (different datasets, methods, images or metrics); says what differs."""


@dataclass
class MetricTolerance:
    """How much worse a metric may get before a significant change counts as a regression."""

    max_drop: float | None = None  # higher-is-better metrics
    max_increase: float | None = None  # lower-is-better metrics
    lower_better: bool | None = None  # override the direction recorded in the reference run

    def __post_init__(self) -> None:
        if self.max_drop is not None and self.max_increase is not None:
            raise ValueError("give max_drop (higher-is-better) or max_increase (lower-is-better), not both")
        for name in ("max_drop", "max_increase"):
            value = getattr(self, name)
            if value is not None and (value < 0 or not math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")


@dataclass
class Tolerances:
    alpha: float = 0.05
    metrics: dict[str, MetricTolerance] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")

    def allowed(self, metric: str, lower_better: bool, source: str = "tolerances") -> float:
        """The allowed worsening of ``metric`` (0 without an entry); the key must match the direction."""
        tol = self.metrics.get(metric)
        if tol is None:
            return 0.0
        if lower_better and tol.max_drop is not None:
            raise ConfigError(f"{source}: {metric}.max_drop: {metric} is lower-is-better; use max_increase")
        if not lower_better and tol.max_increase is not None:
            raise ConfigError(f"{source}: {metric}.max_increase: {metric} is higher-is-better; use max_drop")
        return float(tol.max_increase if lower_better else tol.max_drop or 0.0)


def load_tolerances(path: str | Path) -> Tolerances:
    """Read a tolerance YAML (see the module docstring); errors name the file and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: tolerance file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of metric -> {{max_drop|max_increase: value}}")
    data = dict(data)
    alpha = data.pop("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ConfigError(f"{path}: alpha: expected a number in (0, 1), got {alpha!r}")
    metrics = {}
    for metric, entry in data.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: {metric}: expected a mapping like {{max_drop: 0.05}}, got {entry!r}")
        metrics[str(metric)] = from_dict(MetricTolerance, entry, path=str(metric), source=str(path))
    return Tolerances(float(alpha), metrics)


# ------------------------------------------------------------------------------------------------- comparison
@dataclass
class MetricComparison:
    dataset: str
    method: str
    metric: str
    n: int
    lower_better: bool
    mean_ref: float
    mean_new: float
    diff: float  # mean(new - reference)
    ci_low: float
    ci_high: float
    p_value: float  # the paired test's two-sided p-value
    worsening: float  # > 0 means worse, in the metric's units
    tolerance: float
    significant: bool  # Holm-adjusted p < alpha and the CI excludes 0
    status: str  # regression | non-finite | worse (within tolerance) | worse (not significant) | improved | ...
    n_non_finite: int = 0  # images scored NaN/inf in the new run but finite in the reference
    p_holm: float = math.nan  # p_value adjusted with Holm over every comparison of the check
    ci_method: str = "none"  # BCa | percentile | none
    test: str = "permutation"  # permutation | wilcoxon
    exact: bool = True  # exact null distribution (else Monte Carlo / normal approximation)

    @property
    def regressed(self) -> bool:
        return self.status in ("regression", "non-finite")


def classify(judgement: str, worsening: float, significant: bool) -> str:
    """The status of one comparison from its ``harness.core.stats.verdict`` (with the tolerance as the minimum
    effect), the sign of the worsening and whether it is significant (see the module docstring)."""
    if judgement == WORSE:
        return "regression"
    if judgement == BETTER or (significant and worsening < 0):
        return "improved"
    if significant and worsening > 0:
        return "worse (within tolerance)"
    if worsening > 0:
        return "worse (not significant)"
    return "no change"


@dataclass
class RegressionReport:
    new_dir: Path
    ref_dir: Path
    alpha: float
    n_resamples: int
    rows: list[MetricComparison]
    notes: list[str] = field(default_factory=list)
    data_changed: list[str] = field(default_factory=list)  # data manifest differences, compared anyway

    @property
    def regressed(self) -> bool:
        return any(r.regressed for r in self.rows)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(r) for r in self.rows])

    def format_table(self) -> str:
        """A fixed-width text table (what the CLI prints)."""
        header = [
            "dataset",
            "method",
            "metric",
            "n",
            "reference",
            "new",
            "diff",
            "95% CI",
            "p",
            "p_holm",
            "tol",
            "status",
        ]
        lines = [header]
        for r in self.rows:
            arrow = "↓" if r.lower_better else "↑"
            lines.append(
                [
                    r.dataset,
                    r.method,
                    f"{r.metric}{arrow}",
                    str(r.n),
                    _num(r.mean_ref),
                    _num(r.mean_new),
                    f"{r.diff:+.4g}",
                    f"[{r.ci_low:+.4g}, {r.ci_high:+.4g}]",
                    f"{r.p_value:.3g}",
                    f"{r.p_holm:.3g}",
                    _num(r.tolerance),
                    r.status.upper() if r.regressed else r.status,
                ]
            )
        widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in lines)


def _num(v: float) -> str:
    return "nan" if v is None or not math.isfinite(v) else f"{v:.4g}"


def _listing(keys: set[str]) -> str:
    keys_sorted = sorted(map(str, keys))
    more = f" (+{len(keys_sorted) - MAX_LISTED_KEYS} more)" if len(keys_sorted) > MAX_LISTED_KEYS else ""
    return ", ".join(keys_sorted[:MAX_LISTED_KEYS]) + more if keys_sorted else "-"


def _mismatch(what: str, new: set, ref: set, where: str = "") -> RegressionError:
    return RegressionError(
        f"the runs differ in {what}{where}: only in the new run: {_listing(new - ref)}; "
        f"only in the reference: {_listing(ref - new)}"
    )


def _pair_names(pairs: set[tuple[str, str]]) -> set[str]:
    return {f"{d}/{m}" for d, m in pairs}


def _select(table: pd.DataFrame, dataset: str, method: str) -> pd.DataFrame:
    return table[(table["dataset"] == dataset) & (table["method"] == method)]


def _direction(new: RunResults, ref: RunResults, metric: str, tol: Tolerances) -> bool:
    override = tol.metrics.get(metric)
    if override is not None and override.lower_better is not None:
        return override.lower_better
    try:
        lower = ref.lower_better(metric)
    except KeyError:
        raise RegressionError(
            f"{ref.run_dir}: no direction recorded for metric {metric!r}; add "
            f"'{metric}: {{lower_better: true|false}}' to the tolerance file"
        ) from None
    try:
        if new.lower_better(metric) != lower:
            raise RegressionError(
                f"metric {metric!r} is lower-is-better in one run and higher-is-better in the "
                "other; they are not the same metric"
            )
    except KeyError:
        pass
    return lower


def compare_runs(
    new_dir: str | Path,
    ref_dir: str | Path,
    tolerances: Tolerances | None = None,
    *,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    test: str = "permutation",
    seed: int = 0,
    include_latency: bool = False,
    allow_data_change: bool = False,
) -> RegressionReport:
    """Compare every (dataset, method, metric) of ``new_dir`` with ``ref_dir`` (see the module docstring)."""
    tol = tolerances or Tolerances()
    new, ref = load_run(new_dir), load_run(ref_dir)
    notes: list[str] = []
    data_changed = _data_differences(new, ref, notes)
    if data_changed and not allow_data_change:
        raise RegressionError(
            "the runs were made from different input data, so a difference would be blamed on the method:\n"
            + format_differences(data_changed)
            + "\ncompare runs on the same data, or pass --allow-data-change to compare them anyway"
        )
    if data_changed:
        notes.append(f"input data differ ({len(data_changed)} difference(s)); compared anyway (--allow-data-change)")
    if new.per_image.empty or ref.per_image.empty:
        empty = new.run_dir if new.per_image.empty else ref.run_dir
        raise RegressionError(f"{empty}: no per-image metrics (metrics/<dataset>.csv) to compare")
    metrics = [
        m
        for m in ref.metrics
        or [c for c in ref.per_image.columns if c not in ("dataset", "method", IMAGE_COL, LATENCY_COL)]
        if m in ref.per_image.columns
    ]
    if include_latency and LATENCY_COL in ref.per_image.columns:
        metrics.append(LATENCY_COL)
    missing = [m for m in metrics if m not in new.per_image.columns]
    if missing:
        raise RegressionError(f"{new.run_dir}: metrics {missing} of the reference run are missing")
    extra = sorted(set(new.metrics) - set(metrics) - {LATENCY_COL})
    if extra:
        notes.append(f"metrics only in the new run (not compared): {', '.join(extra)}")
    unknown = sorted(set(tol.metrics) - set(metrics))
    if unknown:
        notes.append(f"tolerances for metrics not in these runs (ignored): {', '.join(unknown)}")

    new_sets = set(map(tuple, new.per_image[["dataset", "method"]].drop_duplicates().to_numpy()))
    ref_sets = set(map(tuple, ref.per_image[["dataset", "method"]].drop_duplicates().to_numpy()))
    if new_sets != ref_sets:
        raise _mismatch("datasets/methods", _pair_names(new_sets), _pair_names(ref_sets))

    rows = []
    for dataset, method in sorted(ref_sets):
        a, b = (_select(run.per_image, dataset, method) for run in (new, ref))
        for run, table in ((new, a), (ref, b)):
            dupes = table[IMAGE_COL][table[IMAGE_COL].duplicated()].unique()
            if len(dupes):
                raise RegressionError(f"{run.run_dir}: {dataset}/{method}: duplicate image keys {_listing(set(dupes))}")
        keys_new, keys_ref = set(a[IMAGE_COL]), set(b[IMAGE_COL])
        if keys_new != keys_ref:
            raise _mismatch("image keys", keys_new, keys_ref, f" for {dataset}/{method}")
        a = a.set_index(IMAGE_COL).sort_index()
        b = b.set_index(IMAGE_COL).loc[a.index]
        for metric in metrics:
            if b[metric].isna().all() and a[metric].isna().all():
                continue
            lower = _direction(new, ref, metric, tol)
            x, y = a[metric].to_numpy(float), b[metric].to_numpy(float)
            lost = ~np.isfinite(x) & np.isfinite(y)  # scored in the reference, NaN/inf now: a failure
            if not np.isfinite(y).all():
                notes.append(
                    f"{dataset}/{method}/{metric}: {int((~np.isfinite(y)).sum())} image(s) without a finite score "
                    "in the reference are left out"
                )
            keep = np.isfinite(x) & np.isfinite(y)
            res = paired_test(
                np.where(keep, x, np.nan), np.where(keep, y, np.nan), test=test, n_resamples=n_resamples, seed=seed
            )
            if lost.any():
                rows.append(
                    _non_finite_row(dataset, method, metric, lower, x, y, lost, res, tol.allowed(metric, lower))
                )
                continue
            if res.n == 0:
                notes.append(f"{dataset}/{method}/{metric}: no image has a score in both runs")
                continue
            rows.append(
                MetricComparison(
                    dataset=dataset,
                    method=method,
                    metric=metric,
                    n=res.n,
                    lower_better=lower,
                    mean_ref=float(b[metric].mean()),
                    mean_new=float(a[metric].mean()),
                    diff=res.mean_diff,
                    ci_low=res.ci.low,
                    ci_high=res.ci.high,
                    p_value=res.p_value,
                    worsening=(1.0 if lower else -1.0) * res.mean_diff,
                    tolerance=tol.allowed(metric, lower),
                    significant=False,
                    status="",  # set below, once the whole family's p-values are known
                    ci_method=res.ci.method,
                    test=res.test,
                    exact=res.exact,
                )
            )
    _judge(rows, tol.alpha)
    return RegressionReport(new.run_dir, ref.run_dir, tol.alpha, n_resamples, rows, notes, data_changed)


def _judge(rows: list[MetricComparison], alpha: float) -> None:
    """Holm over the p-values of every comparison (non-finite rows included: they are comparisons of the
    family too), then each finite row's significance and status."""
    for row, p in zip(rows, holm([r.p_value for r in rows])):
        row.p_holm = float(p)
        if row.status == "non-finite":
            continue
        row.significant = bool(row.p_holm < alpha and not (row.ci_low <= 0.0 <= row.ci_high))
        judgement = verdict(
            row.p_holm, (row.ci_low, row.ci_high), row.n, lower_better=row.lower_better,
            min_effect=row.tolerance, alpha=alpha,
        )  # fmt: skip
        row.status = classify(judgement, row.worsening, row.significant)


def _non_finite_row(dataset, method, metric, lower, x, y, lost, res, allowed) -> MetricComparison:
    """The comparison of a metric some of whose new scores are NaN/inf: a failure, whatever the others say."""
    return MetricComparison(
        dataset=dataset,
        method=method,
        metric=metric,
        n=int(len(x)),
        lower_better=lower,
        mean_ref=float(np.mean(y[np.isfinite(y)])) if np.isfinite(y).any() else math.nan,
        mean_new=float(np.mean(x)) if len(x) else math.nan,
        diff=res.mean_diff,
        ci_low=res.ci.low,
        ci_high=res.ci.high,
        p_value=res.p_value,
        worsening=math.inf,
        tolerance=allowed,
        significant=True,
        status="non-finite",
        n_non_finite=int(lost.sum()),
        ci_method=res.ci.method,
        test=res.test,
        exact=res.exact,
    )


def _data_differences(new: RunResults, ref: RunResults, notes: list[str]) -> list[str]:
    """The differences between the dataset groups of the two runs' data manifests ([] when equal)."""
    missing = [r.run_dir for r in (new, ref) if not r.identity or "data" not in r.identity]
    if missing:
        notes.append(
            f"no data manifest (identity.json) in {', '.join(map(str, missing))}: run by an earlier version; "
            "whether both runs read the same images is not checked"
        )
        return []
    old, now = (RunIdentity.from_json(r.identity) for r in (ref, new))
    old.data, now.data = dataset_groups(old.data), dataset_groups(now.data)
    if old.data == now.data:
        return []
    return RunIdentity("bench", {}, old.data, code={}).differences(RunIdentity("bench", {}, now.data, code={}))
