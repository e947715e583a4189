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
    args = parser.parse_args([str(new), "--against", str(ref), "--n-boot", "500", *extra])
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
    report = compare_runs(new, ref_run, n_boot=300)
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
    report = compare_runs(new, ref_run, n_boot=500)
    by_key = {(r.method, r.metric): r for r in report.rows}
    bad = by_key[("alignvar", "psnr_y")]
    assert bad.status == "regression"
    assert bad.diff == pytest.approx(-0.5, abs=1e-9)
    assert bad.worsening == pytest.approx(0.5, abs=1e-9)
    assert bad.ci_low == pytest.approx(-0.5, abs=1e-9) and bad.ci_high == pytest.approx(-0.5, abs=1e-9)
    assert bad.p_value == pytest.approx(1 / 501)  # the smallest p-value 500 resamples can give
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
    report = compare_runs(new, ref_run, load_tolerances(tol_file), n_boot=300)
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
    report = compare_runs(new, ref_run, tol, n_boot=300)
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
    report = compare_runs(new, ref_run, n_boot=300)
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
        compare_runs(ref_run, ref_run, tol, n_boot=50)


def test_classify_rule():
    assert classify(0.5, True, 0.1) == "regression"
    assert classify(0.05, True, 0.1) == "worse (within tolerance)"
    assert classify(0.5, False, 0.0) == "worse (not significant)"
    assert classify(-0.5, True, 0.0) == "improved"
    assert classify(0.0, False, 0.0) == "no change"
