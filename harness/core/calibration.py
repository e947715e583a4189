"""Synthetic calibration of ``harness.core.stats``: how often its verdict is wrong on null data and how often it
finds a planted effect of the minimum size (tests/test_statistics_calibration.py, and the same numbers printed
by benchmarks/statistics_calibration.py).

A repetition draws ``n_images`` per-image "difficulties" shared by both arms (they cancel in the pairs, as
image content does in a real benchmark), adds independent noise per arm scaled so that the paired difference
``a - b`` has standard deviation ``diff_sd``, and adds ``effect`` to arm ``a``. Every repetition has its own
generator ``default_rng([seed, repetition])``, so the rates are deterministic. docs/STATISTICS.md gives the
design point and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.core.stats import BETTER, WORSE, StatisticsOptions, holm, min_effect, paired_test, verdict

DESIGN_N_IMAGES = 100  # the documented design: n = 100 images ...
DESIGN_SD_IN_MIN_EFFECTS = 3.0  # ... and a paired-difference sd of 3 minimum effects (PSNR: 0.15 dB)


@dataclass(frozen=True)
class Design:
    """One synthetic paired comparison (see the module docstring)."""

    n_images: int = DESIGN_N_IMAGES
    diff_sd: float = DESIGN_SD_IN_MIN_EFFECTS * min_effect("psnr_y")
    effect: float = 0.0  # added to arm a (metric units)
    metric: str = "psnr_y"
    lower_better: bool = False
    noise: str = "normal"  # normal | t4 (Student t, 4 degrees of freedom: heavy tails, same sd)

    def __post_init__(self) -> None:
        if self.n_images < 1:
            raise ValueError(f"n_images: must be >= 1, got {self.n_images}")
        if not self.diff_sd > 0:
            raise ValueError(f"diff_sd: must be > 0, got {self.diff_sd}")
        if self.noise not in ("normal", "t4"):
            raise ValueError(f"noise: must be normal or t4, got {self.noise!r}")


def simulate(design: Design, rng: np.random.Generator, arms: int = 2) -> np.ndarray:
    """``(arms, n_images)`` scores: shared difficulties + per-arm noise; ``effect`` added to arm 0 (``a``)."""
    base = rng.normal(25.0, 3.0, size=design.n_images)
    if design.noise == "normal":
        noise = rng.standard_normal((arms, design.n_images))
    else:  # t with 4 degrees of freedom has variance 2
        noise = rng.standard_t(4, size=(arms, design.n_images)) / math.sqrt(2.0)
    scores = base + noise * (design.diff_sd / math.sqrt(2.0))
    scores[0] += design.effect
    return scores


@dataclass(frozen=True)
class Rate:
    """``hits`` of ``repetitions``; ``rate`` their share."""

    hits: int
    repetitions: int

    @property
    def rate(self) -> float:
        return self.hits / self.repetitions


def verdict_rate(
    design: Design,
    repetitions: int,
    *,
    options: StatisticsOptions | None = None,
    count: tuple[str, ...] = (BETTER, WORSE),
    family: int = 1,
    seed: int = 0,
) -> Rate:
    """How many of ``repetitions`` give a verdict in ``count`` for the first comparison of a table of
    ``family`` comparisons (the others: null pairs of the same design, adjusted together with Holm).

    With ``effect == 0`` and the default ``count`` this is the false-verdict rate (with ``family > 1`` of the
    first comparison only; see ``familywise_rate`` for any false verdict in the table); with a planted effect
    and ``count=("better",)`` it is the detection rate.
    """
    opts = options or StatisticsOptions()
    null = Design(design.n_images, design.diff_sd, 0.0, design.metric, design.lower_better, design.noise)
    hits = 0
    for rep in range(repetitions):
        rng = np.random.default_rng([seed, rep])
        tests = [_test(simulate(d, rng), opts) for d in [design, *[null] * (family - 1)]]
        p_holm = holm([t.p_value for t in tests])
        v = _verdict(tests[0], p_holm[0], design, opts)
        hits += v in count
    return Rate(hits, repetitions)


def familywise_rate(
    design: Design, repetitions: int, family: int, *, options: StatisticsOptions | None = None, seed: int = 0
) -> Rate:
    """How many of ``repetitions`` tables of ``family`` null comparisons (``design`` with effect 0) give at
    least one "better"/"worse" after Holm: the family-wise false-verdict rate."""
    opts = options or StatisticsOptions()
    null = Design(design.n_images, design.diff_sd, 0.0, design.metric, design.lower_better, design.noise)
    hits = 0
    for rep in range(repetitions):
        rng = np.random.default_rng([seed, rep])
        tests = [_test(simulate(null, rng), opts) for _ in range(family)]
        p_holm = holm([t.p_value for t in tests])
        hits += any(_verdict(t, p, null, opts) in (BETTER, WORSE) for t, p in zip(tests, p_holm))
    return Rate(hits, repetitions)


def _test(scores: np.ndarray, opts: StatisticsOptions):
    return paired_test(
        scores[0], scores[1], test=opts.test, n_resamples=opts.n_resamples, confidence=opts.confidence, seed=opts.seed
    )


def _verdict(test, p_holm: float, design: Design, opts: StatisticsOptions) -> str:
    return verdict(
        p_holm,
        test.ci,
        test.n,
        lower_better=design.lower_better,
        min_effect=min_effect(design.metric, opts.min_effect),
        alpha=opts.alpha,
    )
