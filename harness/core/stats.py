"""Bootstrap statistics for benchmark tables and regression checks (the ONE place bootstrap lives).

* ``bootstrap_ci``: percentile bootstrap CI of the mean of per-image scores (what the report shows as
  ``mean [low, high]``).
* ``paired_bootstrap``: CI and two-sided p-value of the mean difference of two paired score vectors (same
  images, two runs or two methods), for regression checks.
* ``describe``: mean, std, CI and n in one dict, as stored in ``summary.json`` / ``summary.csv``.

Everything is vectorised numpy (resampled in chunks so memory stays bounded for large n) and deterministic
for a given ``seed``. NaN scores are dropped (for paired inputs: the pairs where either side is NaN) because a
NaN means "not computed for this image", not a score.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

_MAX_CHUNK_ELEMENTS = 1 << 22  # resample at most ~4M indices at a time (32 MiB of int64)


def _as_1d(values, what: str = "values") -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    return arr[~np.isnan(arr)]


def _check(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _index_chunks(n: int, n_boot: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yield (rows, n) arrays of resampling indices, ``n_boot`` rows in total."""
    rows = max(1, _MAX_CHUNK_ELEMENTS // max(n, 1))
    done = 0
    while done < n_boot:
        take = min(rows, n_boot - done)
        yield rng.integers(0, n, size=(take, n))
        done += take


def bootstrap_means(values, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``n_boot`` means of resamples (with replacement, same size) of ``values``; NaNs dropped first."""
    x = _as_1d(values)
    _check(n_boot, 0.05)
    if x.size == 0:
        return np.full(n_boot, np.nan)
    rng = np.random.default_rng(seed)
    return np.concatenate([x[idx].mean(axis=1) for idx in _index_chunks(x.size, n_boot, rng)])


def bootstrap_ci(values, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap ``(1 - alpha)`` confidence interval of the mean of ``values``.

    Constant values give a zero-width interval; one value gives ``(v, v)``; no values gives ``(nan, nan)``.
    """
    _check(n_boot, alpha)
    means = bootstrap_means(values, n_boot, seed)
    if np.isnan(means).all():
        return (math.nan, math.nan)
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return (float(low), float(high))


def describe(values, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict[str, float | int]:
    """``{mean, std, ci_low, ci_high, n}`` of the non-NaN ``values`` (std with ddof=1; NaN when n < 2)."""
    x = _as_1d(values)
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n >= 2 else math.nan
    low, high = bootstrap_ci(x, n_boot=n_boot, alpha=alpha, seed=seed)
    return {"mean": mean, "std": std, "ci_low": low, "ci_high": high, "n": n}


@dataclass(frozen=True)
class PairedBootstrap:
    """Result of ``paired_bootstrap(a, b)``: statistics of ``d = a - b`` over the paired items."""

    mean_diff: float  # mean of a - b
    ci_low: float  # percentile bootstrap CI of mean_diff
    ci_high: float
    p_value: float  # two-sided bootstrap p-value for H0: mean difference = 0
    n: int  # number of pairs used (NaN pairs dropped)
    n_boot: int
    alpha: float

    @property
    def significant(self) -> bool:
        """True when the CI excludes 0 and p < alpha."""
        return self.p_value < self.alpha and not (self.ci_low <= 0.0 <= self.ci_high)

    def to_dict(self) -> dict:
        return asdict(self)


def paired_bootstrap(a, b, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> PairedBootstrap:
    """Paired bootstrap of the mean difference ``mean(a - b)``.

    The same resampled image indices are used for ``a`` and ``b`` (resampling the differences), so
    image-to-image variation cancels. The p-value is the two-sided null-centred bootstrap p-value
    ``(1 + #{|m* - mean_d| >= |mean_d|}) / (n_boot + 1)`` (never exactly 0; 1 when all differences are 0).
    """
    _check(n_boot, alpha)
    xa = np.asarray(a, dtype=np.float64).reshape(-1)
    xb = np.asarray(b, dtype=np.float64).reshape(-1)
    if xa.shape != xb.shape:
        raise ValueError(f"paired_bootstrap needs equally long inputs, got {xa.size} and {xb.size} values")
    keep = ~(np.isnan(xa) | np.isnan(xb))
    d = xa[keep] - xb[keep]
    n = int(d.size)
    if n == 0:
        return PairedBootstrap(math.nan, math.nan, math.nan, math.nan, 0, n_boot, alpha)
    mean_d = float(d.mean())
    means = bootstrap_means(d, n_boot, seed)
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    # Under H0 the bootstrap distribution is shifted to mean 0: |m* - mean_d| plays the role of |m*_0|.
    # A relative tolerance keeps float noise (e.g. constant differences) from counting as "as extreme".
    tol = 1e-12 * max(1.0, abs(mean_d))
    extreme = np.count_nonzero(np.abs(means - mean_d) >= abs(mean_d) - tol)
    p_value = (1.0 + extreme) / (n_boot + 1.0)
    return PairedBootstrap(
        mean_diff=mean_d,
        ci_low=float(low),
        ci_high=float(high),
        p_value=float(p_value),
        n=n,
        n_boot=n_boot,
        alpha=alpha,
    )
