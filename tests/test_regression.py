"""Regression check (harness.bench.regression, run.py regress) on synthetic bench run directories."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pandas as pd
import pytest

from harness.bench import layout as R
from harness.bench.regression import RegressionError, Tolerances, classify, compare_runs, load_tolerances
from harness.cli import regress as cli
from harness.core.mapping import ConfigError

METRICS = {"psnr_y": False, "lpips": True}  # name -> lower_better
N_IMAGES = 24


def make_run(run_dir, table: pd.DataFrame) -> None:
    """A finished bench run as harness.bench.layout writes it (per-image CSVs, summary.csv/json)."""
    for dataset, part in table.groupby("dataset"):
        R.write_per_image(run_dir, dataset, part.reset_index(drop=True))
    summary = R.summarize(table, METRICS, n_boot=200)
    meta = {
        "experiment": run_dir.name,
        "datasets": {d: {} for d in table["dataset"].unique()},
        "methods": {m: {} for m in table["method"].unique()},
        "metrics": {m: {"lower_better": low} for m, low in METRICS.items()},
    }
    R.write_summary(run_dir, summary, meta)


def base_table(methods=("bicubic", "alignvar")) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for method in methods:
        for i in range(N_IMAGES):
            rows.append(
                {
                    "dataset": "drealsr",
                    "method": method,
                    "image": f"img_{i:03d}",
                    "psnr_y": float(rng.normal(28, 2)),
                    "lpips": float(rng.uniform(0.2, 0.4)),
                    "latency_s": float(rng.uniform(0.1, 0.2)),
                }
            )
    return pd.DataFrame(rows)


def run_cli(new, ref, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args([str(new), "--against", str(ref), "--n-resamples", "500", *extra])
    from harness.core.logconfig import configure

    configure(0)  # as harness.cli.main does: diagnostics on stderr
    return cli.run(args)


@pytest.fixture
def ref_run(tmp_path):
    path = tmp_path / "ref"
    make_run(path, base_table())
    return path


def test_identical_copy_passes(tmp_path, ref_run, capsys):
    new = tmp_path / "new"
    make_run(new, base_table())
    assert run_cli(new, ref_run) == 0
    out = capsys.readouterr().out
    assert "PASS" in out
    report = compare_runs(new, ref_run, n_resamples=300)
    assert len(report.rows) == 4  # 2 methods x 2 metrics, latency not compared
    for row in report.rows:
        assert row.diff == 0.0 and row.p_value == 1.0 and row.status == "no change" and row.n == N_IMAGES
    assert (new / "regression.html").is_file()


def test_psnr_drop_of_half_a_db_fails(tmp_path, ref_run, capsys):
    table = base_table()
    table.loc[table["method"] == "alignvar", "psnr_y"] -= 0.5
    new = tmp_path / "new"
    make_run(new, table)
    assert run_cli(new, ref_run, "--output", str(tmp_path / "diff.html")) == 1
    out = capsys.readouterr().out
    assert "FAIL: 1 regression" in out
    report = compare_runs(new, ref_run, n_resamples=500)
    by_key = {(r.method, r.metric): r for r in report.rows}
    bad = by_key[("alignvar", "psnr_y")]
    assert bad.status == "regression"
    assert bad.diff == pytest.approx(-0.5, abs=1e-9)
    assert bad.worsening == pytest.approx(0.5, abs=1e-9)
    assert bad.ci_low == pytest.approx(-0.5, abs=1e-9) and bad.ci_high == pytest.approx(-0.5, abs=1e-9)
    # every image drops by exactly 0.5 (n = 24, too many sign patterns to enumerate): the Monte Carlo sign-flip
    # test counts no resample as extreme on either side, p = 2 (0 + 1) / (500 + 1) (two one-sided Monte Carlo
    # p-values; the old null-centred bootstrap counted both sides at once and gave 1 / 501)
    assert bad.p_value == pytest.approx(2 / 501) and not bad.exact and bad.test == "permutation"
    assert bad.p_holm == pytest.approx(4 * 2 / 501)  # Holm over 2 methods x 2 metrics; the others have p = 1
    assert by_key[("bicubic", "psnr_y")].status == "no change"
    assert by_key[("alignvar", "lpips")].status == "no change"
    assert "regression" in (tmp_path / "diff.html").read_text()


def test_small_drop_within_tolerance_passes_but_not_without_it(tmp_path, ref_run):
    table = base_table()
    table.loc[table["method"] == "alignvar", "psnr_y"] -= 0.01
    new = tmp_path / "new"
    make_run(new, table)
    tol_file = tmp_path / "tol.yaml"
    tol_file.write_text("alpha: 0.05\npsnr_y: {max_drop: 0.05}\nlpips: {max_increase: 0.002}\n")
    assert run_cli(new, ref_run, "--tolerances", str(tol_file)) == 0
    report = compare_runs(new, ref_run, load_tolerances(tol_file), n_resamples=300)
    row = next(r for r in report.rows if (r.method, r.metric) == ("alignvar", "psnr_y"))
    assert row.status == "worse (within tolerance)" and row.tolerance == 0.05
    # tolerance 0 (no file): the same, perfectly consistent drop is a regression
    assert run_cli(new, ref_run) == 1


def test_lower_is_better_direction(tmp_path, ref_run):
    table = base_table()
    table.loc[table["method"] == "alignvar", "lpips"] += 0.01  # worse
    table.loc[table["method"] == "bicubic", "lpips"] -= 0.01  # better
    new = tmp_path / "new"
    make_run(new, table)
    tol = Tolerances(metrics=load_tolerances(_write(tmp_path, "lpips: {max_increase: 0.002}\n")).metrics)
    report = compare_runs(new, ref_run, tol, n_resamples=300)
    by_key = {(r.method, r.metric): r for r in report.rows}
    assert by_key[("alignvar", "lpips")].status == "regression"
    assert by_key[("alignvar", "lpips")].worsening == pytest.approx(0.01)
    assert by_key[("bicubic", "lpips")].status == "improved"
    assert report.regressed


def test_zero_mean_noise_is_not_significant(tmp_path, ref_run):
    table = base_table()
    signs = np.where(np.arange(len(table)) % 2 == 0, 1.0, -1.0)  # +-0.3 alternating: mean change exactly 0
    table["psnr_y"] += 0.3 * signs
    new = tmp_path / "new"
    make_run(new, table)
    report = compare_runs(new, ref_run, n_resamples=300)
    rows = [r for r in report.rows if r.metric == "psnr_y"]
    assert all(not r.significant and r.status == "no change" for r in rows)
    assert all(r.ci_low < 0 < r.ci_high for r in rows)
    assert not report.regressed


def test_mismatched_image_keys_are_listed(tmp_path, ref_run, capsys):
    table = base_table()
    table = table[table["image"] != "img_007"].copy()
    table.loc[table["image"] == "img_003", "image"] = "img_999"
    new = tmp_path / "new"
    make_run(new, table)
    with pytest.raises(RegressionError) as err:
        compare_runs(new, ref_run)
    message = str(err.value)
    assert "only in the new run: img_999" in message
    assert "only in the reference: img_003, img_007" in message
    assert run_cli(new, ref_run) == 2
    assert "img_007" in capsys.readouterr().err


def test_mismatched_methods_and_missing_metric(tmp_path, ref_run):
    new = tmp_path / "new"
    make_run(new, base_table(methods=("bicubic", "varsr")))
    with pytest.raises(
        RegressionError,
        match=r"only in the new run: drealsr/varsr; only in the reference: "
        r"drealsr/alignvar",
    ):
        compare_runs(new, ref_run)
    new2 = tmp_path / "new2"
    make_run(new2, base_table().drop(columns=["lpips"]))
    with pytest.raises(RegressionError, match=re.escape("metrics ['lpips'] of the reference run are missing")):
        compare_runs(new2, ref_run)


def test_html_is_escaped(tmp_path):
    evil = "<script>alert(1)</script>"
    table = base_table(methods=(evil,))
    ref, new = tmp_path / "ref", tmp_path / "new"
    make_run(ref, table)
    table["psnr_y"] -= 1.0
    make_run(new, table)
    out = tmp_path / "diff.html"
    assert run_cli(new, ref, "--output", str(out)) == 1
    html = out.read_text()
    assert evil not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "FAIL: 1 significant regression beyond tolerance" in html


def _write(tmp_path, text: str):
    path = tmp_path / "tol.yaml"
    path.write_text(text)
    return path


def test_tolerance_file_errors(tmp_path, ref_run):
    with pytest.raises(
        ConfigError,
        match=r"tol\.yaml: psnr_y\.max_dorp: unknown key; valid keys: max_drop, "
        r"max_increase, lower_better",
    ):
        load_tolerances(_write(tmp_path, "psnr_y: {max_dorp: 0.1}\n"))
    with pytest.raises(ConfigError, match=r"alpha: expected a number in \(0, 1\), got 5"):
        load_tolerances(_write(tmp_path, "alpha: 5\n"))
    with pytest.raises(ConfigError, match="not both"):
        load_tolerances(_write(tmp_path, "lpips: {max_drop: 0.1, max_increase: 0.1}\n"))
    # a direction-mismatched key is caught when the metric's direction is known
    tol = load_tolerances(_write(tmp_path, "lpips: {max_drop: 0.1}\n"))
    with pytest.raises(ConfigError, match="lpips is lower-is-better; use max_increase"):
        compare_runs(ref_run, ref_run, tol, n_resamples=100)


def test_classify_rule():
    # classify() maps the stats verdict (tolerance as the minimum effect) and the worsening's sign to a status
    assert classify("worse", 0.5, True) == "regression"
    assert classify("no detectable difference (n=24)", 0.05, True) == "worse (within tolerance)"
    assert classify("no detectable difference (n=24)", 0.5, False) == "worse (not significant)"
    assert classify("better", -0.5, True) == "improved"
    assert classify("no detectable difference (n=24)", -0.001, True) == "improved"
    assert classify("no detectable difference (n=24)", 0.0, False) == "no change"


def test_p_values_are_the_sign_flip_test_and_holm_spans_the_check(tmp_path, ref_run):
    """The regress p-value is scipy's sign-flip permutation test on the paired differences (here exact: the
    first 12 images), and Holm's family is every (dataset, method, metric) compared."""
    from scipy import stats as st

    table = base_table()
    rng = np.random.default_rng(7)
    table["psnr_y"] += rng.normal(-0.15, 0.3, size=len(table))
    table = table[table["image"] < "img_012"]
    ref = tmp_path / "ref12"
    make_run(ref, base_table()[lambda t: t["image"] < "img_012"])
    new = tmp_path / "new"
    make_run(new, table)
    report = compare_runs(new, ref, n_resamples=999)
    rows = {(r.method, r.metric): r for r in report.rows}
    base = base_table()[lambda t: t["image"] < "img_012"]
    for method in ("bicubic", "alignvar"):
        d = table[table["method"] == method]["psnr_y"].to_numpy() - base[base["method"] == method]["psnr_y"].to_numpy()
        expected = st.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf).pvalue
        row = rows[(method, "psnr_y")]
        assert row.exact and row.p_value == pytest.approx(expected, rel=1e-12)
        assert row.diff == pytest.approx(d.mean())
    ps = [r.p_value for r in report.rows]
    order = np.argsort(ps)
    m = len(ps)
    expected_holm = np.maximum.accumulate([min(1.0, (m - i) * ps[j]) for i, j in enumerate(order)])
    assert [report.rows[j].p_holm for j in order] == pytest.approx(list(expected_holm))
    # Wilcoxon as the test: the exact signed-rank p-value (no ties, no zeros)
    w = compare_runs(new, ref, n_resamples=999, test="wilcoxon")
    d = (
        table[table["method"] == "alignvar"]["psnr_y"].to_numpy()
        - base[base["method"] == "alignvar"]["psnr_y"].to_numpy()
    )
    row = next(r for r in w.rows if (r.method, r.metric) == ("alignvar", "psnr_y"))
    assert row.test == "wilcoxon" and row.exact
    assert row.p_value == pytest.approx(st.wilcoxon(d, method="exact").pvalue)


def test_a_significant_drop_whose_ci_reaches_the_tolerance_is_a_regression(tmp_path, ref_run):
    """The tolerance is the verdict's minimum effect: a clear drop whose mean is within the tolerance but whose
    CI reaches beyond it is not shown to be within it, so it fails; a tight one inside it passes."""
    table = base_table()
    sel = table["method"] == "alignvar"
    noise = np.resize([0.0, 0.08], int(sel.sum()))  # drops of 0.01 and 0.09 dB: mean 0.05, CI about +-0.02
    table.loc[sel, "psnr_y"] -= 0.01 + noise
    new = tmp_path / "new"
    make_run(new, table)
    tol = load_tolerances(_write(tmp_path, "psnr_y: {max_drop: 0.06}\n"))
    row = next(r for r in compare_runs(new, ref_run, tol, n_resamples=500).rows if r.method == "alignvar")
    assert row.worsening == pytest.approx(0.05) and row.worsening < row.tolerance
    assert row.significant and -row.ci_low >= 0.06 and row.status == "regression"
    tol = load_tolerances(_write(tmp_path, "psnr_y: {max_drop: 0.1}\n"))
    row = next(r for r in compare_runs(new, ref_run, tol, n_resamples=500).rows if r.method == "alignvar")
    assert row.significant and -row.ci_low < 0.1 and row.status == "worse (within tolerance)"


def test_cli_constants_match_the_stats_module():
    from harness.core import stats

    assert cli.DEFAULT_N_RESAMPLES == stats.DEFAULT_N_RESAMPLES and cli.TESTS == stats.TESTS
