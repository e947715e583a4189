"""Calibration of the verdicts of harness.core.stats on synthetic paired data (harness.core.calibration).

Design point (docs/STATISTICS.md): n = 100 images, paired-difference sd = 3 minimum effects (PSNR-Y: 0.15 dB),
alpha = 0.05, the default minimum effect (PSNR-Y: 0.05 dB). Every repetition has its own fixed generator, so
the counts below are the same on every run; the bounds say what a correct procedure guarantees:

* null (both arms from one distribution): a procedure whose false-verdict rate is at most alpha gives more
  than ``binom.ppf(0.99, R, alpha)`` false verdicts in R repetitions with probability <= 1 %; equivalently
  the one-sided binomial test of "rate <= alpha" must not reject at the 1 % level.
* planted effect of the minimum size: the one-sided 99 % Clopper-Pearson lower bound of the detection rate
  must be >= 80 % (so 80 % is met with confidence, not just by the point estimate).

Monte Carlo resamples are 999 here (p-value resolution 0.001, far below alpha) to keep the test to seconds;
benchmarks/statistics_calibration.py prints the same rates with the default 9999.
"""

from __future__ import annotations

import pytest
from scipy import stats as st

from harness.core.calibration import DESIGN_N_IMAGES, Design, familywise_rate, verdict_rate
from harness.core.stats import DEFAULT_ALPHA, StatisticsOptions, min_effect

N_NULL = 400
N_PLANTED = 200


def _consistent_with_at_most_alpha(hits: int, reps: int, alpha: float = DEFAULT_ALPHA) -> bool:
    """hits <= the 99 % quantile of Binomial(reps, alpha) (the one-sided binomial test does not reject)."""
    return hits <= st.binom.ppf(0.99, reps, alpha)


def _lower_bound(hits: int, reps: int) -> float:
    return st.binomtest(hits, reps).proportion_ci(confidence_level=0.98, method="exact").low  # one-sided 99 %


def test_design_point_is_the_documented_one():
    design = Design()
    assert design.n_images == DESIGN_N_IMAGES == 100
    assert design.diff_sd == pytest.approx(0.15) and min_effect(design.metric) == 0.05


@pytest.mark.parametrize(
    ("test", "noise", "n_null"),
    [("permutation", "normal", N_NULL), ("permutation", "t4", N_NULL // 2), ("wilcoxon", "normal", N_NULL // 2)],
)
def test_null_false_verdict_rate_is_at_most_alpha(test, noise, n_null):
    rate = verdict_rate(Design(noise=noise), n_null, options=StatisticsOptions(test=test, n_resamples=999))
    assert rate.repetitions == n_null >= 200
    assert _consistent_with_at_most_alpha(rate.hits, rate.repetitions), rate


@pytest.mark.parametrize(("test", "noise"), [("permutation", "normal"), ("wilcoxon", "normal")])
def test_planted_minimum_effect_is_detected_at_least_80_percent(test, noise):
    effect = min_effect("psnr_y")
    rate = verdict_rate(
        Design(effect=effect, noise=noise),
        N_PLANTED,
        options=StatisticsOptions(test=test, n_resamples=999),
        count=("better",),
    )
    assert _lower_bound(rate.hits, rate.repetitions) >= 0.80, rate
    # the same effect planted in a lower-is-better metric is "worse" (direction from lower_better)
    worse = verdict_rate(
        Design(effect=effect, noise=noise, lower_better=True),
        50,
        options=StatisticsOptions(test=test, n_resamples=999),
        count=("worse",),
    )
    assert worse.hits >= 40


def test_holm_keeps_the_familywise_false_verdict_rate_at_most_alpha():
    """Four null metrics per table: without a correction about 1 - 0.95**4 = 19 % of tables would show a
    false verdict somewhere (bounded here by the per-comparison rate); with Holm it is <= alpha."""
    # Holm's guarantee does not depend on the test; Wilcoxon's normal approximation keeps this one fast
    rate = familywise_rate(Design(), 200, 4, options=StatisticsOptions(test="wilcoxon", n_resamples=999))
    assert _consistent_with_at_most_alpha(rate.hits, rate.repetitions), rate


def test_a_planted_effect_below_the_minimum_gets_no_verdict_at_large_n():
    """A real but negligible difference (a fifth of the minimum effect), measured so precisely that the test
    detects it (n = 2000): the CI lies inside +-min_effect, so the verdict is "no detectable difference"."""
    effect = 0.2 * min_effect("psnr_y")
    rate = verdict_rate(
        Design(n_images=2000, effect=effect), 20, options=StatisticsOptions(n_resamples=999), count=("better",)
    )
    assert rate.hits == 0
