"""harness.core.stats on closed forms: bootstrap CIs (BCa vs percentile), the exact sign-flip test, Wilcoxon,
Holm, minimum effects, the verdict truth table and the table-level comparison."""

from __future__ import annotations

import math
import warnings

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
        return (math.nan, 9.0) if method == "BCa" else real(x, method, *args)  # one bound missing is enough

    monkeypatch.setattr(S, "_scipy_bootstrap", fake)
    ci = bootstrap_ci([1.0, 2.0, 4.0, 8.0], n_resamples=500, seed=8)
    assert ci == bootstrap_ci([1.0, 2.0, 4.0, 8.0], n_resamples=500, seed=8, method="percentile")
    assert ci.method == "percentile" and math.isfinite(ci.low) and ci.low < ci.high


def test_an_infinite_score_gets_the_percentile_interval_without_a_warning():
    """PSNR is inf for an image reproduced exactly: BCa's jackknife is undefined (scipy warns and gives NaN), so
    the percentile interval is used, silently, with the same seed."""
    x = [20.0, 21.0, 22.0, 23.0, math.inf]
    with warnings.catch_warnings():
        warnings.simplefilter("error", st.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's inf - inf inside the jackknife
        ci = bootstrap_ci(x, n_resamples=400, seed=3)
        forced = bootstrap_ci(x, n_resamples=400, seed=3, method="percentile")
    assert ci == forced and ci.method == "percentile" and ci.high == math.inf and math.isfinite(ci.low)


def test_forced_bca():
    x = [1.0, 2.0, 4.0, 8.0, 16.0]
    assert bootstrap_ci(x, n_resamples=500, method="BCa") == bootstrap_ci(x, n_resamples=500)
    assert bootstrap_ci([1.0, 3.0], n_resamples=500, method="BCa").method == "BCa"  # forced: no fallback


def test_empty_inputs_compute_nothing_and_warn_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert describe([float("nan")])["n"] == 0
        assert describe([4.0])["n"] == 1  # no "degrees of freedom <= 0" for the std of one value
        assert paired_test([float("nan")], [1.0]).n == 0
        keys = ["i0", "i1"]
        out = compare_arms(_arm({"m": [1.0, float("nan")]}, keys), _arm({"m": [float("nan"), 2.0]}, keys), ["m"],
                           lower_better={"m": False}, options=StatisticsOptions(n_resamples=100))  # fmt: skip
    assert out["n"].tolist() == [0] and math.isnan(out["mean_a"].iloc[0]) and math.isnan(out["mean_b"].iloc[0])
    assert out["verdict"].tolist() == ["no detectable difference (n=0)"]
    assert math.isnan(describe([1.0, 2.0], n_resamples=0)["ci_high"])


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


def test_describe_passes_its_options_on_and_handles_small_n():
    x = np.linspace(0.0, 3.0, 12) ** 2
    d = describe(x)
    ci = bootstrap_ci(x, n_resamples=1000, seed=0)  # describe's defaults: 1000 resamples, seed 0, 95 %
    assert (d["ci_low"], d["ci_high"], d["ci_method"]) == (ci.low, ci.high, "BCa")
    other = describe(x, n_resamples=300, seed=4, confidence=0.8)
    ci = bootstrap_ci(x, n_resamples=300, seed=4, confidence=0.8)
    assert (other["ci_low"], other["ci_high"]) == (ci.low, ci.high)
    one = describe([5.0])
    assert (one["mean"], one["ci_low"], one["ci_high"], one["n"]) == (5.0, 5.0, 5.0, 1) and math.isnan(one["std"])
    two = describe([1.0, 3.0])
    assert two["std"] == pytest.approx(math.sqrt(2.0)) and two["ci_method"] == "percentile"
    none = describe([])
    assert none["n"] == 0 and math.isnan(none["mean"]) and math.isnan(none["std"]) and none["ci_method"] == "none"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": True}, "alpha: must be a number in (0, 1), got True"),
        ({"alpha": "0.05"}, "alpha: must be a number in (0, 1), got '0.05'"),
        ({"alpha": 1.0}, "alpha: must be a number in (0, 1), got 1.0"),
        ({"test": "t"}, "test: must be one of permutation, wilcoxon, got 't'"),
        ({"n_resamples": True}, "n_resamples: must be an integer >= 1, got True"),
        ({"n_resamples": -5}, "n_resamples: must be an integer >= 1, got -5"),
        ({"confidence": False}, "confidence: must be a number in (0, 1), got False"),
        ({"confidence": "high"}, "confidence: must be a number in (0, 1), got 'high'"),
        ({"confidence": 0.0}, "confidence: must be a number in (0, 1), got 0.0"),
        ({"confidence": 1.0}, "confidence: must be a number in (0, 1), got 1.0"),
        ({"min_effect": {"psnr": True}}, "min_effect.psnr: must be a finite number >= 0, got True"),
        ({"min_effect": {"psnr": "0.1"}}, "min_effect.psnr: must be a finite number >= 0, got '0.1'"),
        ({"min_effect": {"psnr": math.inf}}, "min_effect.psnr: must be a finite number >= 0, got inf"),
        ({"min_effect": {"psnr": math.nan}}, "min_effect.psnr: must be a finite number >= 0, got nan"),
    ],
)
def test_check_options_messages(kwargs, message):
    with pytest.raises(ValueError) as err:
        S.check_options(**kwargs)
    assert str(err.value) == message


def test_check_options_accepts_the_edges():
    S.check_options(alpha=1e-9, test="wilcoxon", n_resamples=1, confidence=0.999, min_effect={"psnr": 0, "x": 2})
    S.check_options()  # the defaults are valid
    assert S.DEFAULT_ALPHA == 0.05 and S.DEFAULT_CONFIDENCE == 0.95 and S.DEFAULT_N_RESAMPLES == 9999


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
    assert StatisticsOptions(n_resamples=100).n_resamples == 100
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
    assert sign_flip_test(np.zeros(40), n_resamples=100) == (1.0, True)  # no difference at all: exactly p = 1
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
    mid = np.linspace(-1.0, 1.2, 60)  # p about 0.5: Monte Carlo noise shows in the third digit
    assert sign_flip_test(mid, n_resamples=999) == sign_flip_test(mid, n_resamples=999, seed=0)  # default seed 0
    assert sign_flip_test(mid, n_resamples=999) != sign_flip_test(mid, n_resamples=999, seed=1)
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
    assert wilcoxon_test([0.5]) == (1.0, True)  # one pair: the exact distribution is {0, 1}, p = 1
    p, exact = wilcoxon_test([])
    assert math.isnan(p) and exact
    tied = np.array([1.0, 1.0, 2.0, -1.5, 3.0, 2.5])  # no zeros, but |d| tied: the exact tables do not apply
    assert wilcoxon_test(tied) == (pytest.approx(st.wilcoxon(tied, method="approx").pvalue), False)
    fifty = np.arange(1.0, 51.0) * np.where(np.arange(50) % 3 == 0, -1.0, 1.0)
    assert wilcoxon_test(fifty) == (pytest.approx(st.wilcoxon(fifty, method="exact").pvalue), True)
    fifty_one = np.append(fifty, 51.0)  # beyond 50 pairs: the normal approximation
    assert wilcoxon_test(fifty_one) == (pytest.approx(st.wilcoxon(fifty_one, method="approx").pvalue), False)


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


def test_paired_test_passes_its_options_on():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.2, 1.0, 40), rng.normal(0.0, 1.0, 40)
    d = a - b
    res = paired_test(a, b, n_resamples=300)
    assert res == paired_test(a, b, n_resamples=300, seed=0)  # the default seed is 0, and it is deterministic
    assert res.ci == bootstrap_ci(d, n_resamples=300, seed=0)
    assert res.p_value == sign_flip_test(d, n_resamples=300, seed=0)[0] and not res.exact
    other = paired_test(a, b, n_resamples=300, seed=1)
    assert other.ci != res.ci and other.p_value != res.p_value
    narrow = paired_test(a, b, n_resamples=300, confidence=0.5)
    assert narrow.ci == bootstrap_ci(d, n_resamples=300, confidence=0.5)
    assert res.ci.low < narrow.ci.low < narrow.ci.high < res.ci.high
    none = paired_test([float("nan")], [1.0])
    assert none.n == 0 and math.isnan(none.mean_diff) and math.isnan(none.p_value) and none.ci.method == "none"


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
    assert min_effect("psnr_y_center") == 0.05  # the family is the part before the first "_"
    # a setting beats a default, and within each the exact name beats the family
    assert min_effect("ms_ssim") == 0.001 and min_effect("ms_ssim", {"ms": 1.0}) == 1.0
    assert min_effect("psnr_y", {"psnr": 0.1, "psnr_y": 0.3}) == 0.3
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
        (0.001, (0.1, float("nan")), False, "no detectable difference (n=30)"),  # half an interval
        (0.001, (float("nan"), 0.3), False, "no detectable difference (n=30)"),
        (0.001, (0.0, 0.3), False, "no detectable difference (n=30)"),  # a bound on 0 does not exclude it
        (0.001, (-0.3, 0.0), False, "no detectable difference (n=30)"),
    ],
)
def test_verdict_truth_table(p, ci, lower_better, expected):
    assert verdict(p, ci, 30, lower_better=lower_better, min_effect=0.05, alpha=0.05) == expected
    assert verdict(p, ConfidenceInterval(*ci, "BCa"), 30, lower_better=lower_better, min_effect=0.05) == expected


# ----------------------------------------------------------------------------------------------- tables
def _arm(values: dict[str, list[float]], keys: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"image": keys, **values})


def test_compare_arms_pairs_by_image_and_holms_over_its_metrics():
    keys = [f"im{i:02d}" for i in (7, 3, 11, 0, 5, 9, 1, 10, 2, 8, 4, 6)]  # not sorted: pairs keep a's order
    rng = np.random.default_rng(3)
    psnr = rng.normal(25, 2, 12)
    lpips = rng.uniform(0.2, 0.4, 12)
    a = _arm({"psnr_y": psnr + 0.5 + rng.normal(0, 0.05, 12), "lpips": lpips + rng.normal(0, 0.01, 12)}, keys)
    a.loc[3, "lpips"] = float("nan")  # dropped from the lpips pairs only
    b = _arm({"psnr_y": psnr, "lpips": lpips}, keys).iloc[::-1]  # another order: rows are paired by image
    b = pd.concat([b, _arm({"psnr_y": [99.0], "lpips": [0.9]}, ["only_b"])])  # unpaired: left out
    opts = StatisticsOptions(n_resamples=500, seed=2, min_effect={"lpips": 0.001})
    out = compare_arms(a, b, ["psnr_y", "lpips"], lower_better={"psnr_y": False, "lpips": True}, options=opts)
    assert list(out.columns) == list(S.COMPARISON_COLUMNS) and out["metric"].tolist() == ["psnr_y", "lpips"]
    row = out.set_index("metric").loc["psnr_y"]
    d = a["psnr_y"].to_numpy() - psnr
    expected = paired_test(a["psnr_y"], psnr, n_resamples=500, seed=2)
    assert row["n"] == 12 and row["effect"] == pytest.approx(d.mean()) and out["exact"].tolist() == [True, True]
    assert (row["ci_low"], row["ci_high"], row["ci_method"]) == (expected.ci.low, expected.ci.high, "BCa")
    assert row["mean_a"] == pytest.approx(a["psnr_y"].mean()) and row["mean_b"] == pytest.approx(psnr.mean())
    assert row["p"] == pytest.approx(2 / 2**12) and row["test"] == "permutation"
    lp = out.set_index("metric").loc["lpips"]
    assert lp["n"] == 11 and lp["mean_b"] == pytest.approx(np.delete(lpips, 3).mean())
    assert lp["mean_a"] == pytest.approx(np.nanmean(a["lpips"])) and bool(lp["lower_better"])
    assert not bool(row["lower_better"])
    assert (row["min_effect"], lp["min_effect"]) == (0.05, 0.001)
    assert out["p_holm"].tolist() == pytest.approx(list(holm(out["p"])))
    assert row["p_holm"] == pytest.approx(2 * 2 / 2**12) and row["verdict"] == "better"
    assert lp["verdict"] == "no detectable difference (n=11)"
    # without adjustment: the raw rows, for a larger family built by the caller
    raw = compare_arms(a, b, ["psnr_y"], lower_better={"psnr_y": False}, options=opts, adjust=False)
    assert math.isnan(raw["p_holm"].iloc[0]) and raw["verdict"].iloc[0] == ""
    # Wilcoxon through the options; the default options are StatisticsOptions()
    w = compare_arms(a, b, ["psnr_y"], lower_better={"psnr_y": False}, options=StatisticsOptions(test="wilcoxon"))
    assert w["test"].iloc[0] == "wilcoxon" and w["p"].iloc[0] == pytest.approx(2 / 2**12)
    default = compare_arms(a, b, ["psnr_y"], lower_better={"psnr_y": False})
    assert default["ci_low"].iloc[0] == paired_test(a["psnr_y"], psnr).ci.low
    wide = compare_arms(a, b, ["psnr_y"], lower_better={"psnr_y": False}, options=StatisticsOptions(confidence=0.99))
    assert wide["ci_low"].iloc[0] == paired_test(a["psnr_y"], psnr, confidence=0.99).ci.low
    nothing = compare_arms(a, b, [], lower_better={})
    assert nothing.empty and list(nothing.columns) == list(S.COMPARISON_COLUMNS)


def test_compare_arms_alpha_and_errors():
    keys = [f"im{i}" for i in range(6)]
    a = _arm({"psnr_y": np.arange(6.0) + 1.0}, keys)
    b = _arm({"psnr_y": np.arange(6.0)}, keys)
    strict = compare_arms(a, b, ["psnr_y"], lower_better={"psnr_y": True}, options=StatisticsOptions(alpha=0.01))
    assert strict["p"].iloc[0] == pytest.approx(2 / 64) and strict["verdict"].iloc[0].startswith("no detectable")
    loose = compare_arms(a, b, ["psnr_y"], lower_better={"psnr_y": True}, options=StatisticsOptions(alpha=0.05))
    assert loose["verdict"].iloc[0] == "worse"  # +1 in a lower-is-better metric
    with pytest.raises(KeyError, match="arm a: no 'key' column to pair the rows by"):
        compare_arms(a, b.rename(columns={"image": "key"}), ["psnr_y"], lower_better={"psnr_y": False}, on="key")
    with pytest.raises(KeyError, match="arm b: no 'image' column"):
        compare_arms(a, b.rename(columns={"image": "key"}), ["psnr_y"], lower_better={"psnr_y": False})
    with pytest.raises(ValueError, match=r"^arm a: duplicate image keys \['im0'\]$"):
        compare_arms(pd.concat([a, a.iloc[:1]]), b, ["psnr_y"], lower_better={"psnr_y": False})
    many = _arm({"psnr_y": np.zeros(24)}, [f"k{i:02d}" for i in range(12)] * 2)
    with pytest.raises(ValueError, match=r"duplicate image keys \['k00', .*'k09'\]$") as err:
        compare_arms(many, b, ["psnr_y"], lower_better={"psnr_y": False})
    assert "k10" not in str(err.value)  # the first 10 are listed
    with pytest.raises(KeyError, match="metric 'niqe' missing from arm b"):
        compare_arms(a.assign(niqe=1.0), b, ["niqe"], lower_better={"niqe": True})
    with pytest.raises(KeyError, match="metric 'niqe' missing from arm a"):
        compare_arms(a, b.assign(niqe=1.0), ["niqe"], lower_better={"niqe": True})


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
    assert set(add_verdicts(pd.concat(parts, ignore_index=True), alpha=0.1)["verdict"]) == {"better"}
    flipped = add_verdicts(parts[0].assign(lower_better=True))
    assert flipped["verdict"].tolist() == ["worse"] and flipped["p_holm"].tolist() == pytest.approx([2 / 256])
    empty = add_verdicts(parts[0].iloc[:0])
    assert empty.empty and list(empty.columns) == list(S.COMPARISON_COLUMNS)
