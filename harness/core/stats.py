"""Statistics of benchmark tables, sweep comparisons and regression checks, on ``scipy.stats`` (the one place).

* ``bootstrap_ci``: CI of the mean of per-image scores (``scipy.stats.bootstrap``; BCa where valid, percentile
  otherwise; the method used is returned). ``describe``: mean, std, CI, n (what ``summary.csv`` stores).
* ``paired_test``: two paired score vectors (same images): mean difference ``mean(a - b)`` with its bootstrap CI
  and a two-sided p-value, from the sign-flip permutation test (``scipy.stats.permutation_test``,
  ``permutation_type="samples"``; exact when ``2**n`` sign patterns are few, Monte Carlo with a fixed seed
  otherwise) or the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``).
* ``holm``: Holm's step-down adjustment of a family of p-values (all metrics x comparisons of one table).
* ``min_effect`` / ``DEFAULT_MIN_EFFECT``: the smallest difference of interest per metric.
* ``verdict``: "better" / "worse" only when the Holm-adjusted p < alpha and the effect's CI reaches the metric's
  minimum effect in its direction; otherwise "no detectable difference (n=N)".
* ``compare_arms`` (one table of paired per-image comparisons) and ``add_verdicts`` (Holm + verdicts over a
  whole table made of several such comparisons); ``StatisticsOptions`` holds the knobs a user sets.

Everything is deterministic for a given ``seed``. NaN scores are dropped (for paired inputs: the pairs where
either side is NaN) because a NaN means "not computed for this image", not a score. docs/STATISTICS.md says
what each test is and why the defaults are what they are. scipy and pandas are imported on first use, so that
the experiment config (which holds ``StatisticsOptions``) stays cheap to load.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_N_RESAMPLES = 9999  # bootstrap resamples and Monte Carlo permutations
MIN_RESAMPLES = 100  # the least a user may configure (StatisticsOptions); the functions take any n >= 1
DEFAULT_ALPHA = 0.05
DEFAULT_CONFIDENCE = 0.95
TESTS = ("permutation", "wilcoxon")
EXACT_MAX_N = 16  # the sign-flip test enumerates all 2**n sign patterns up to here (65536), or when 2**n <= n_resamples
BCA_MIN_N = 3  # BCa needs a jackknife of >= 3 values; fewer (or constant data) -> percentile

BETTER, WORSE = "better", "worse"
NO_DIFFERENCE = "no detectable difference"

# The smallest difference of interest per metric family, in the metric's own units (docs/STATISTICS.md says
# why). A metric name is looked up as is, then by its family (the part before the first "_": psnr_y -> psnr).
DEFAULT_MIN_EFFECT: dict[str, float] = {
    "psnr": 0.05,  # dB
    "ssim": 0.001,
    "ms_ssim": 0.001,
    "lpips": 0.005,
    "dists": 0.005,
    "niqe": 0.1,
    "musiq": 0.5,  # 0-100 scale
    "maniqa": 0.005,  # ~0-1 scale
    "clipiqa": 0.005,  # 0-1 scale
}


# ----------------------------------------------------------------------------------------------- options
@dataclass
class StatisticsOptions:
    """The knobs of the paired comparisons (a sweep's ``statistics:`` block, ``run.py regress`` options).

    A failing check names its field first (``"alpha: must be in (0, 1), got 2"``), which the config loader
    reports at the field's key path.
    """

    alpha: float = DEFAULT_ALPHA  # family-wise error rate of one table (Holm)
    test: str = "permutation"  # permutation | wilcoxon
    n_resamples: int = DEFAULT_N_RESAMPLES  # bootstrap resamples and Monte Carlo permutations
    confidence: float = DEFAULT_CONFIDENCE  # level of the CIs
    min_effect: dict[str, float] = field(default_factory=dict)  # metric -> smallest difference of interest
    seed: int = 0

    def __post_init__(self) -> None:
        check_options(self.alpha, self.test, self.n_resamples, self.confidence, self.min_effect)
        if self.n_resamples < MIN_RESAMPLES:
            raise ValueError(
                f"n_resamples: must be >= {MIN_RESAMPLES} (fewer give unstable CI bounds and p-values), "
                f"got {self.n_resamples}"
            )


def check_options(
    alpha: float = DEFAULT_ALPHA,
    test: str = "permutation",
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    min_effect: Mapping[str, float] | None = None,
) -> None:
    """Raise ``ValueError("KEY: ..., got VALUE")`` for the first invalid option."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: must be a number in (0, 1), got {alpha!r}")
    if test not in TESTS:
        raise ValueError(f"test: must be one of {', '.join(TESTS)}, got {test!r}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, numbers.Integral) or n_resamples < 1:
        raise ValueError(f"n_resamples: must be an integer >= 1, got {n_resamples!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: must be a number in (0, 1), got {confidence!r}")
    for metric, value in (min_effect or {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"min_effect.{metric}: must be a finite number >= 0, got {value!r}")


# ----------------------------------------------------------------------------------------------- intervals
@dataclass(frozen=True)
class ConfidenceInterval:
    """A CI and the method that made it: "BCa", "percentile" or "none" (no values: NaN bounds)."""

    low: float
    high: float
    method: str


def _as_1d(values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    return arr[~np.isnan(arr)]


def bootstrap_ci(
    values,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    seed: int = 0,
    method: str = "auto",
) -> ConfidenceInterval:
    """Bootstrap CI of the mean of the non-NaN ``values`` (``scipy.stats.bootstrap``, fixed ``seed``).

    ``method="auto"`` uses BCa when it is valid (n >= ``BCA_MIN_N``, values not all equal, finite bounds) and
    the percentile interval otherwise; ``"percentile"`` / ``"BCa"`` force one. One value, or equal values,
    give the zero-width interval ``(v, v)`` (the bootstrap distribution is that one point); none give NaN.
    """
    check_options(confidence=confidence, n_resamples=n_resamples)
    if method not in ("auto", "BCa", "percentile"):
        raise ValueError(f"method: must be auto, BCa or percentile, got {method!r}")
    x = _as_1d(values)
    if x.size == 0:
        return ConfidenceInterval(math.nan, math.nan, "none")
    if np.all(x == x[0]):
        return ConfidenceInterval(float(x[0]), float(x[0]), "percentile")
    use = method
    if method == "auto":
        use = "BCa" if x.size >= BCA_MIN_N else "percentile"
    low, high = _scipy_bootstrap(x, use, confidence, n_resamples, seed)
    if use == "BCa" and method == "auto" and not (math.isfinite(low) and math.isfinite(high)):
        use = "percentile"
        low, high = _scipy_bootstrap(x, use, confidence, n_resamples, seed)
    return ConfidenceInterval(low, high, use)


def _scipy_bootstrap(x: np.ndarray, method: str, confidence: float, n_resamples: int, seed: int) -> tuple:
    from scipy import stats as _st

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _st.DegenerateDataWarning)
        res = _st.bootstrap(
            (x,),
            np.mean,
            confidence_level=confidence,
            n_resamples=n_resamples,
            method=method,
            rng=np.random.default_rng(seed),
        )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def describe(
    values,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, float | int | str]:
    """``{mean, std, ci_low, ci_high, ci_method, n}`` of the non-NaN ``values`` (std with ddof=1; NaN when
    n < 2). ``n_resamples=0`` switches the CI off (NaN bounds, method "none")."""
    x = _as_1d(values)
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n >= 2 else math.nan
    if n_resamples == 0:
        ci = ConfidenceInterval(math.nan, math.nan, "none")
    else:
        ci = bootstrap_ci(x, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return {"mean": mean, "std": std, "ci_low": ci.low, "ci_high": ci.high, "ci_method": ci.method, "n": n}


# ----------------------------------------------------------------------------------------------- paired tests
@dataclass(frozen=True)
class PairedTest:
    """``paired_test(a, b)``: the mean difference ``mean(a - b)`` over the pairs, its CI, a two-sided p-value."""

    n: int  # pairs used (NaN pairs dropped)
    mean_diff: float
    ci: ConfidenceInterval  # bootstrap CI of mean_diff
    p_value: float  # two-sided, H0: no difference (NaN when n == 0)
    test: str  # permutation | wilcoxon
    exact: bool  # exact null distribution (all sign patterns / exact Wilcoxon) rather than Monte Carlo/normal


def _paired_diffs(a, b) -> np.ndarray:
    xa = np.asarray(a, dtype=np.float64).reshape(-1)
    xb = np.asarray(b, dtype=np.float64).reshape(-1)
    if xa.shape != xb.shape:
        raise ValueError(f"paired inputs must be equally long, got {xa.size} and {xb.size} values")
    keep = ~(np.isnan(xa) | np.isnan(xb))
    return xa[keep] - xb[keep]


def _mean_stat(d, axis=-1):
    return np.mean(d, axis=axis)


def sign_flip_test(d, *, n_resamples: int = DEFAULT_N_RESAMPLES, seed: int = 0) -> tuple[float, bool]:
    """(two-sided p-value, exact) of H0 "the differences ``d`` are symmetric about 0", statistic mean(d).

    ``scipy.stats.permutation_test`` with one sample and ``permutation_type="samples"`` flips the sign of each
    difference; it enumerates all ``2**n`` patterns (exact) when ``n <= EXACT_MAX_N`` or ``2**n <=
    n_resamples``, and otherwise draws ``n_resamples`` patterns with a fixed seed (p = (k + 1) / (R + 1)).
    """
    d = _as_1d(d)
    n = int(d.size)
    if n == 0:
        return math.nan, True
    if n == 1 or np.all(d == 0):  # one pair: both sign patterns are as extreme as the data
        return 1.0, True
    from scipy import stats as _st

    exact = n <= EXACT_MAX_N or (1 << n) <= n_resamples
    res = _st.permutation_test(
        (d,),
        _mean_stat,
        permutation_type="samples",
        vectorized=True,
        n_resamples=2**n if exact else n_resamples,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(res.pvalue), bool(exact)


def wilcoxon_test(d) -> tuple[float, bool]:
    """(two-sided p-value, exact) of the Wilcoxon signed-rank test of the differences ``d``
    (``scipy.stats.wilcoxon``, method "auto": exact for small n without ties or zeros, normal otherwise)."""
    d = _as_1d(d)
    n = int(d.size)
    if n == 0:
        return math.nan, True
    if np.all(d == 0):
        return 1.0, True
    from scipy import stats as _st

    exact = n <= 50 and np.all(d != 0) and np.unique(np.abs(d)).size == n
    res = _st.wilcoxon(d, zero_method="wilcox", alternative="two-sided", method="exact" if exact else "approx")
    return float(res.pvalue), bool(exact)


def paired_test(
    a,
    b,
    *,
    test: str = "permutation",
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> PairedTest:
    """Paired comparison of ``a`` and ``b`` (same images, same order): ``mean(a - b)``, its bootstrap CI
    (``bootstrap_ci`` of the differences) and the two-sided p-value of ``test`` ("permutation": the sign-flip
    test ``sign_flip_test``; "wilcoxon": ``wilcoxon_test``). Pairs with a NaN on either side are dropped."""
    check_options(test=test, n_resamples=n_resamples, confidence=confidence)
    d = _paired_diffs(a, b)
    n = int(d.size)
    ci = bootstrap_ci(d, confidence=confidence, n_resamples=n_resamples, seed=seed)
    if test == "permutation":
        p, exact = sign_flip_test(d, n_resamples=n_resamples, seed=seed)
    else:
        p, exact = wilcoxon_test(d)
    mean = float(d.mean()) if n else math.nan
    return PairedTest(n=n, mean_diff=mean, ci=ci, p_value=p, test=test, exact=exact)


# ----------------------------------------------------------------------------------------------- families
def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order; NaNs stay NaN and are not in the family.

    With the m p-values sorted, p_(1) <= ... <= p_(m): adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    Rejecting where adj < alpha controls the family-wise error rate at alpha under any dependence.
    """
    p = np.asarray(pvalues, dtype=np.float64).reshape(-1)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def min_effect(metric: str, overrides: Mapping[str, float] | None = None) -> float:
    """The smallest difference of interest for ``metric``: ``overrides`` then ``DEFAULT_MIN_EFFECT``, each by
    the exact name first, then by the family (``psnr_y`` -> ``psnr``); 0.0 for a metric known to neither."""
    family = metric.split("_", 1)[0]
    for table in (overrides or {}, DEFAULT_MIN_EFFECT):
        for key in (metric, family):
            if key in table:
                return float(table[key])
    return 0.0


def verdict(
    p_adjusted: float,
    ci: ConfidenceInterval | tuple[float, float],
    n: int,
    *,
    lower_better: bool,
    min_effect: float,
    alpha: float = DEFAULT_ALPHA,
) -> str:
    """The verdict on the difference ``a - b`` whose CI is ``ci``: "better" / "worse" (for ``a``) or
    "no detectable difference (n=N)".

    "better"/"worse" needs both (1) ``p_adjusted`` (Holm) < ``alpha`` and (2) the CI reaching ``min_effect`` in
    the direction of the difference (the far bound, |bound| >= min_effect: the data do not show the difference
    to be smaller than the smallest one of interest). A significant difference whose whole CI lies inside
    (-min_effect, min_effect) is "no detectable difference". Direction: ``lower_better`` turns a negative
    difference into "better".
    """
    low, high = (ci.low, ci.high) if isinstance(ci, ConfidenceInterval) else ci
    label = f"{NO_DIFFERENCE} (n={n})"
    if not (p_adjusted < alpha) or not (math.isfinite(low) and math.isfinite(high)):
        return label
    if low > 0:
        up, reach = True, high
    elif high < 0:
        up, reach = False, -low
    else:  # the CI holds 0: the interval and the test disagree; no verdict
        return label
    if reach < min_effect:
        return label
    return BETTER if up != lower_better else WORSE


# ----------------------------------------------------------------------------------------------- tables
COMPARISON_COLUMNS = (
    "metric", "n", "mean_a", "mean_b", "effect", "ci_low", "ci_high", "ci_method", "p", "test", "exact",
    "lower_better", "min_effect", "p_holm", "verdict",
)  # fmt: skip


def compare_arms(
    per_image_a: pd.DataFrame,
    per_image_b: pd.DataFrame,
    metrics: Sequence[str],
    *,
    lower_better: Mapping[str, bool],
    on: str = "image",
    options: StatisticsOptions | None = None,
    adjust: bool = True,
) -> pd.DataFrame:
    """Paired comparison of arm ``a`` against arm ``b`` for every metric (columns ``COMPARISON_COLUMNS``).

    Rows are paired by the ``on`` column (images both arms have; duplicates are an error). ``effect`` is the
    mean of a - b over the pairs, ``ci_*`` its bootstrap CI, ``p`` the test's p-value; with ``adjust`` the
    metrics of this call are one Holm family and ``p_holm`` / ``verdict`` are filled (``add_verdicts``).
    Build a larger family by concatenating several calls made with ``adjust=False`` and calling
    ``add_verdicts`` once on the whole table.
    """
    import pandas as pd

    opts = options or StatisticsOptions()
    for name, frame in (("a", per_image_a), ("b", per_image_b)):
        if on not in frame.columns:
            raise KeyError(f"arm {name}: no {on!r} column to pair the rows by")
        dupes = frame[on][frame[on].duplicated()].unique()
        if len(dupes):
            raise ValueError(f"arm {name}: duplicate {on} keys {sorted(map(str, dupes))[:10]}")
    a = per_image_a.set_index(on)
    b = per_image_b.set_index(on)
    common = a.index.intersection(b.index, sort=False)
    rows = []
    for metric in metrics:
        if metric not in a.columns or metric not in b.columns:
            raise KeyError(f"metric {metric!r} missing from arm {'a' if metric not in a.columns else 'b'}")
        x, y = a.loc[common, metric].to_numpy(float), b.loc[common, metric].to_numpy(float)
        res = paired_test(x, y, test=opts.test, n_resamples=opts.n_resamples, confidence=opts.confidence,
                          seed=opts.seed)  # fmt: skip
        keep = ~(np.isnan(x) | np.isnan(y))
        rows.append(
            {
                "metric": metric,
                "n": res.n,
                "mean_a": float(x[keep].mean()) if res.n else math.nan,
                "mean_b": float(y[keep].mean()) if res.n else math.nan,
                "effect": res.mean_diff,
                "ci_low": res.ci.low,
                "ci_high": res.ci.high,
                "ci_method": res.ci.method,
                "p": res.p_value,
                "test": res.test,
                "exact": res.exact,
                "lower_better": bool(lower_better[metric]),
                "min_effect": min_effect(metric, opts.min_effect),
                "p_holm": math.nan,
                "verdict": "",
            }
        )
    frame = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    return add_verdicts(frame, alpha=opts.alpha) if adjust else frame


def add_verdicts(table: pd.DataFrame, *, alpha: float = DEFAULT_ALPHA) -> pd.DataFrame:
    """A copy of ``table`` (columns p, ci_low, ci_high, n, lower_better, min_effect) with ``p_holm`` (Holm over
    all its rows: one family) and ``verdict`` filled in."""
    check_options(alpha=alpha)
    out = table.copy()
    out["p_holm"] = holm(out["p"].to_numpy(float)) if len(out) else []
    out["verdict"] = [
        verdict(
            r.p_holm,
            (r.ci_low, r.ci_high),
            int(r.n),
            lower_better=bool(r.lower_better),
            min_effect=float(r.min_effect),
            alpha=alpha,
        )  # fmt: skip
        for r in out.itertuples(index=False)
    ]
    return out
