"""harness.core.stats on closed forms: bootstrap CIs (BCa vs percentile), the exact sign-flip test, Wilcoxon,
Holm, minimum effects, the verdict truth table and the table-level comparison."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from harness.core import stats as S
from harness.core.stats import (
    ConfidenceInterval,
    StatisticsOptions,
    add_verdicts,
    bootstrap_ci,
    compare_arms,
    describe,
    holm,
    min_effect,
    paired_test,
    sign_flip_test,
    verdict,
    wilcoxon_test,
)


# ----------------------------------------------------------------------------------------------- intervals
def test_bootstrap_degenerate_inputs():
    assert bootstrap_ci(np.full(50, 3.25)) == ConfidenceInterval(3.25, 3.25, "percentile")
    assert bootstrap_ci([7.0]) == ConfidenceInterval(7.0, 7.0, "percentile")
    empty = bootstrap_ci([float("nan")])
    assert math.isnan(empty.low) and math.isnan(empty.high) and empty.method == "none"


def test_bca_where_valid_percentile_otherwise():
    x = [1.0, 2.0, 4.0, 8.0, 16.0]
    ci = bootstrap_ci(x, n_resamples=999, seed=3)
    assert ci.method == "BCa"
    ref = st.bootstrap((np.array(x),), np.mean, n_resamples=999, method="BCa", rng=np.random.default_rng(3))
    assert (ci.low, ci.high) == (ref.confidence_interval.low, ref.confidence_interval.high)
    two = bootstrap_ci([1.0, 3.0], n_resamples=999, seed=3)  # n < BCA_MIN_N = 3
    assert two.method == "percentile" and two.low >= 1.0 and two.high <= 3.0
    forced = bootstrap_ci(x, n_resamples=999, seed=3, method="percentile")
    ref = st.bootstrap((np.array(x),), np.mean, n_resamples=999, method="percentile", rng=np.random.default_rng(3))
    assert forced == ConfidenceInterval(ref.confidence_interval.low, ref.confidence_interval.high, "percentile")
    assert S.BCA_MIN_N == 3


def test_bca_falls_back_to_percentile_when_it_gives_no_interval(monkeypatch):
    real = S._scipy_bootstrap

    def fake(x, method, *args):
        return (math.nan, math.nan) if method == "BCa" else real(x, method, *args)

    monkeypatch.setattr(S, "_scipy_bootstrap", fake)
    ci = bootstrap_ci([1.0, 2.0, 4.0, 8.0], n_resamples=500)
    assert ci.method == "percentile" and math.isfinite(ci.low) and ci.low < ci.high


def test_bootstrap_large_n_matches_normal_theory():
    rng = np.random.default_rng(1)
    x = rng.normal(10.0, 2.0, size=4000)
    ci = bootstrap_ci(x, n_resamples=2000, seed=3)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)  # 0.062
    assert ci.low == pytest.approx(x.mean() - half, abs=0.15 * half)
    assert ci.high == pytest.approx(x.mean() + half, abs=0.15 * half)
    wide = bootstrap_ci(x, n_resamples=2000, seed=3, confidence=0.99)
    assert wide.low < ci.low and wide.high > ci.high


def test_bootstrap_is_deterministic_and_drops_nan():
    x = [1.0, 2.0, 4.0, 8.0, float("nan")]
    y = [*np.linspace(0.0, 3.0, 12) ** 2, float("nan")]
    assert bootstrap_ci(y, seed=5, n_resamples=500) == bootstrap_ci(y[:12], seed=5, n_resamples=500)
    assert bootstrap_ci(y, seed=5, n_resamples=500) != bootstrap_ci(y, seed=6, n_resamples=500)
    d = describe(x, n_resamples=500)
    assert d["n"] == 4 and d["mean"] == 3.75 and d["std"] == pytest.approx(np.std([1, 2, 4, 8], ddof=1))
    assert d["ci_method"] == "BCa"
    off = describe(x, n_resamples=0)
    assert math.isnan(off["ci_low"]) and off["ci_method"] == "none" and off["mean"] == 3.75


def test_option_errors_name_the_key_and_value():
    with pytest.raises(ValueError, match=r"^confidence: must be a number in \(0, 1\), got 1.5$"):
        bootstrap_ci([1.0, 2.0], confidence=1.5)
    with pytest.raises(ValueError, match=r"^n_resamples: must be an integer >= 1, got 0$"):
        bootstrap_ci([1.0, 2.0], n_resamples=0)
    with pytest.raises(ValueError, match=r"^n_resamples: must be an integer >= 1, got 10.5$"):
        bootstrap_ci([1.0, 2.0], n_resamples=10.5)
    assert bootstrap_ci([1.0, 2.0, 4.0], n_resamples=np.int64(200)).method == "BCa"  # numpy integers are integers
    with pytest.raises(ValueError, match=r"^method: must be auto, BCa or percentile, got 'bca'$"):
        bootstrap_ci([1.0, 2.0], method="bca")
    with pytest.raises(ValueError, match=r"^test: must be one of permutation, wilcoxon, got 'ttest'$"):
        paired_test([1.0], [2.0], test="ttest")
    with pytest.raises(ValueError, match=r"^alpha: must be a number in \(0, 1\), got 0$"):
        StatisticsOptions(alpha=0)
    with pytest.raises(ValueError, match=r"^n_resamples: must be >= 100 .*, got 99$"):
        StatisticsOptions(n_resamples=99)
    with pytest.raises(ValueError, match=r"^min_effect.lpips: must be a finite number >= 0, got -0.1$"):
        StatisticsOptions(min_effect={"lpips": -0.1})


# ----------------------------------------------------------------------------------------------- paired tests
def test_exact_sign_flip_p_values_by_hand():
    # 4 positive differences: of the 16 sign patterns only ++++ (and, two-sided, ----) are as extreme
    assert sign_flip_test([1.0, 2.0, 3.0, 4.0]) == (2 / 16, True)
    # sums of +-1 +-2 +-3 +-0.5 that reach the observed 5.5: 6.5 and 5.5 -> one side 2/16, two-sided 4/16
    assert sign_flip_test([1.0, 2.0, 3.0, -0.5]) == (pytest.approx(4 / 16), True)
    assert sign_flip_test([0.3]) == (1.0, True)  # one pair: both patterns are as extreme
    assert sign_flip_test([0.0, 0.0, 0.0]) == (1.0, True)
    p, exact = sign_flip_test([])
    assert math.isnan(p) and exact


def test_exact_up_to_16_pairs_or_when_every_pattern_fits_in_the_resamples():
    rng = np.random.default_rng(0)
    d16 = rng.normal(0.3, 1.0, size=16)
    p, exact = sign_flip_test(d16, n_resamples=100)
    ref = st.permutation_test((d16,), np.mean, permutation_type="samples", n_resamples=np.inf).pvalue
    assert exact and p == pytest.approx(ref, rel=1e-12) and p * 2**16 == pytest.approx(round(p * 2**16))
    d17 = rng.normal(0.3, 1.0, size=17)
    assert sign_flip_test(d17, n_resamples=2**17)[1] is True
    p, exact = sign_flip_test(d17, n_resamples=2**17 - 1, seed=4)
    assert not exact
    # Monte Carlo: p = (k + 1) / (R + 1) on each side, deterministic for a seed, and scipy's own number
    d = rng.normal(0.1, 1.0, size=60)
    p, exact = sign_flip_test(d, n_resamples=999, seed=7)
    ref = st.permutation_test(
        (d,), np.mean, permutation_type="samples", n_resamples=999, rng=np.random.default_rng(7), vectorized=True
    ).pvalue
    assert not exact and p == ref and round(p * 1000 / 2, 9) == round(p * 1000 / 2)
    assert sign_flip_test(d, n_resamples=999, seed=7) == (p, False)
    assert sign_flip_test(1000.0 + np.zeros(2000), n_resamples=200)[1] is False  # no overflow on 2**2000


def test_wilcoxon_exact_and_approximate():
    d = np.array([0.5, 1.5, -0.25, 2.0, 3.0, 0.75, -1.0, 1.25])
    p, exact = wilcoxon_test(d)
    assert exact and p == pytest.approx(st.wilcoxon(d, method="exact").pvalue)
    # 8 positive distinct differences: the exact two-sided p is 2 / 2**8
    assert wilcoxon_test(np.arange(1.0, 9.0)) == (pytest.approx(2 / 256), True)
    ties = np.array([1.0, 1.0, 2.0, -1.0, 3.0, 0.0])
    p, exact = wilcoxon_test(ties)
    assert not exact and p == pytest.approx(st.wilcoxon(ties, method="approx").pvalue)
    assert wilcoxon_test(np.zeros(5)) == (1.0, True)


def test_paired_test_closed_forms():
    a = np.linspace(20.0, 30.0, 40)
    same = paired_test(a, a.copy(), n_resamples=500)
    assert (same.mean_diff, same.ci, same.p_value, same.n) == (0.0, ConfidenceInterval(0.0, 0.0, "percentile"), 1.0, 40)
    shifted = paired_test(a, a - 0.5, n_resamples=500)  # every pair differs by exactly 0.5
    assert shifted.mean_diff == pytest.approx(0.5)
    assert shifted.ci.low == pytest.approx(0.5) and shifted.ci.high == pytest.approx(0.5)
    assert shifted.p_value == pytest.approx(2 / 501) and not shifted.exact  # two-sided, k = 0 on each side
    with pytest.raises(ValueError, match="paired inputs must be equally long, got 3 and 2 values"):
        paired_test([1, 2, 3], [1, 2])
    one = paired_test([1.0, float("nan"), 4.0], [0.0, 5.0, float("nan")])
    assert one.n == 1 and one.mean_diff == 1.0 and one.p_value == 1.0
    w = paired_test(a + np.arange(1, 41) * 0.01, a, test="wilcoxon", n_resamples=500)  # 40 distinct gains
    assert w.test == "wilcoxon" and w.exact and w.p_value == pytest.approx(2 / 2**40, rel=1e-9)


def test_paired_test_noisy_difference():
    rng = np.random.default_rng(0)
    base = rng.normal(25, 3, size=2000)
    noise = rng.normal(0.0, 1.0, size=2000)
    res = paired_test(base + 0.2 + noise, base, n_resamples=2000)
    half = 1.96 * noise.std(ddof=1) / math.sqrt(2000)
    assert res.ci.method == "BCa"
    assert res.ci.low == pytest.approx(res.mean_diff - half, abs=0.2 * half)
    assert res.p_value == pytest.approx(2 / 2001)  # no sign pattern reaches 9 standard errors


# ----------------------------------------------------------------------------------------------- families
def test_holm_by_hand():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adj = holm([0.01, float("nan"), 0.02])  # NaN: not a member of the family (m = 2)
    assert adj[0] == pytest.approx(0.02) and math.isnan(adj[1]) and adj[2] == pytest.approx(0.02)
    assert holm([0.6, 0.7]).tolist() == [1.0, 1.0]
    assert holm([0.04]).tolist() == [0.04]
    assert holm([]).size == 0


def test_min_effect_lookup():
    assert min_effect("psnr_y") == 0.05 and min_effect("psnr") == 0.05  # by family
    assert min_effect("ssim_y") == 0.001 and min_effect("lpips") == 0.005
    assert min_effect("psnr_y", {"psnr_y": 0.2}) == 0.2  # exact override
    assert min_effect("psnr_y", {"psnr": 0.1}) == 0.1  # family override beats the default
    assert min_effect("my_metric") == 0.0  # unknown: any significant difference counts
    assert set(S.DEFAULT_MIN_EFFECT) >= {"psnr", "ssim", "lpips", "dists", "niqe", "musiq", "maniqa", "clipiqa"}


@pytest.mark.parametrize(
    ("p", "ci", "lower_better", "expected"),
    [
        (0.001, (0.1, 0.3), False, "better"),  # significant, CI beyond the minimum
        (0.001, (0.1, 0.3), True, "worse"),  # same difference, lower-is-better metric
        (0.001, (-0.3, -0.1), False, "worse"),
        (0.001, (-0.3, -0.1), True, "better"),
        (0.001, (0.01, 0.06), False, "better"),  # mean below the minimum, but the CI reaches it
        (0.001, (0.01, 0.05), False, "better"),  # reaching exactly the minimum counts
        (0.001, (0.001, 0.02), False, "no detectable difference (n=30)"),  # p small but the effect is tiny
        (0.2, (0.1, 0.3), False, "no detectable difference (n=30)"),  # p not small
        (0.05, (0.1, 0.3), False, "no detectable difference (n=30)"),  # p == alpha is not < alpha
        (0.001, (-0.1, 0.3), False, "no detectable difference (n=30)"),  # CI holds 0
        (float("nan"), (0.1, 0.3), False, "no detectable difference (n=30)"),
        (0.001, (float("nan"), float("nan")), False, "no detectable difference (n=30)"),
    ],
)
def test_verdict_truth_table(p, ci, lower_better, expected):
    assert verdict(p, ci, 30, lower_better=lower_better, min_effect=0.05, alpha=0.05) == expected
    assert verdict(p, ConfidenceInterval(*ci, "BCa"), 30, lower_better=lower_better, min_effect=0.05) == expected


# ----------------------------------------------------------------------------------------------- tables
def _arm(values: dict[str, list[float]], keys: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"image": keys, **values})


def test_compare_arms_pairs_by_image_and_holms_over_its_metrics():
    keys = [f"im{i:02d}" for i in range(12)]
    rng = np.random.default_rng(3)
    psnr = rng.normal(25, 2, 12)
    lpips = rng.uniform(0.2, 0.4, 12)
    a = _arm({"psnr_y": psnr + 0.5 + rng.normal(0, 0.05, 12), "lpips": lpips + rng.normal(0, 0.01, 12)}, keys)
    b = _arm({"psnr_y": psnr, "lpips": lpips}, keys).iloc[::-1]  # another order: rows are paired by image
    out = compare_arms(a, b, ["psnr_y", "lpips"], lower_better={"psnr_y": False, "lpips": True},
                       options=StatisticsOptions(n_resamples=500))  # fmt: skip
    assert list(out.columns) == list(S.COMPARISON_COLUMNS)
    row = out.set_index("metric").loc["psnr_y"]
    d = a["psnr_y"].to_numpy() - psnr
    assert row["n"] == 12 and row["effect"] == pytest.approx(d.mean()) and row["exact"]
    assert row["p"] == pytest.approx(2 / 2**12) and row["p_holm"] == pytest.approx(2 * 2 / 2**12)
    assert row["verdict"] == "better" and row["min_effect"] == 0.05 and row["ci_method"] == "BCa"
    assert out.set_index("metric").loc["lpips", "verdict"].startswith("no detectable difference (n=12)")
    with pytest.raises(ValueError, match=r"arm b: duplicate image keys \['im00'\]"):
        compare_arms(a, pd.concat([b, b.iloc[-1:]]), ["psnr_y"], lower_better={"psnr_y": False})
    with pytest.raises(KeyError, match="metric 'niqe' missing from arm a"):
        compare_arms(a, b, ["niqe"], lower_better={"niqe": True})


def test_add_verdicts_over_a_concatenated_table_is_one_family():
    keys = [f"im{i}" for i in range(8)]
    a = _arm({"psnr_y": np.arange(8.0) + 1.0}, keys)
    b = _arm({"psnr_y": np.arange(8.0)}, keys)
    opts = StatisticsOptions(n_resamples=500)
    parts = [compare_arms(a, b, ["psnr_y"], lower_better={"psnr_y": False}, options=opts, adjust=False)] * 10
    one = compare_arms(a, b, ["psnr_y"], lower_better={"psnr_y": False}, options=opts)
    assert one["p"].iloc[0] == pytest.approx(2 / 256) and one["verdict"].iloc[0] == "better"
    table = add_verdicts(pd.concat(parts, ignore_index=True), alpha=0.05)
    # ten tests at p = 2/256 each: Holm multiplies the smallest by 10 -> 0.078 > 0.05, no verdict
    assert table["p_holm"].tolist() == pytest.approx([10 * 2 / 256] * 10)
    assert set(table["verdict"]) == {"no detectable difference (n=8)"}
