"""Seeds in the sweep report: across-seed means with their t-interval and per-seed values, comparisons per seed
(images) and across seeds (per-seed means) with Holm over the table, and the seaborn figures' data.

Hand-made cells (summary.csv + per-image tables) with closed-form answers: config lambda 0 / 1 at seeds 0, 1, 2,
8 images each; on - off is +0.5 dB on every image of every seed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reports import figures
from reports.sweep.cells import SweepCell
from reports.sweep.comparison import comparison_frame
from reports.sweep.curves import distribution_frame, lambda_frame, seed_points
from reports.sweep.seeds import config_groups, seed_interval
from reports.sweep.tables import ablation_frame

T_2 = 4.302652729911275  # Student t, 2 degrees of freedom, 97.5 % quantile
IMAGES = [20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 26.0, 27.0]
SEED_SHIFT = {0: 0.0, 1: 1.2, 2: -0.6}  # between seeds the model moves much more than lambda does


def _cell(root: Path, lam: float, seed: int, index: int) -> SweepCell:
    name = f"hcc.lambda={lam:g},seed={seed}"
    cell_dir = root / "cells" / name
    (cell_dir / "metrics").mkdir(parents=True)
    ours = [v + SEED_SHIFT[seed] + (0.5 if lam else 0.0) for v in IMAGES]
    rows = [{"dataset": "toy", "method": "ours", "image": f"im{i}", "psnr_y": v} for i, v in enumerate(ours)]
    rows += [{"dataset": "toy", "method": "bicubic", "image": f"im{i}", "psnr_y": 19.0} for i in range(8)]
    pd.DataFrame(rows).to_csv(cell_dir / "metrics" / "toy.csv", index=False)
    mean = float(np.mean(ours))
    summary = pd.DataFrame(
        [
            {"dataset": "toy", "method": "ours", "metric": "psnr_y", "mean": mean, "ci_low": mean - 1,
             "ci_high": mean + 1, "n": 8, "lower_better": False},
            {"dataset": "toy", "method": "bicubic", "metric": "psnr_y", "mean": 19.0, "ci_low": 19.0,
             "ci_high": 19.0, "n": 8, "lower_better": False},
        ]
    )  # fmt: skip
    overrides = {"model.hcc.lambda": lam, "seed": seed}
    return SweepCell(cell_dir, name, index, "done", overrides, run_dir=cell_dir, summary=summary)


@pytest.fixture
def cells(tmp_path) -> list[SweepCell]:
    return [_cell(tmp_path, lam, seed, 3 * i + seed) for i, lam in enumerate((0.0, 1.0)) for seed in (0, 1, 2)]


def _expected(lam: float) -> tuple[list[float], float, float]:
    per_seed = [float(np.mean(IMAGES)) + SEED_SHIFT[s] + (0.5 if lam else 0.0) for s in (0, 1, 2)]
    mean = float(np.mean(per_seed))
    half = T_2 * float(np.std(per_seed, ddof=1)) / math.sqrt(3)
    return per_seed, mean, half


def test_seed_interval_closed_form():
    mean, low, high = seed_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and (low, high) == pytest.approx((2.0 - T_2 / math.sqrt(3), 2.0 + T_2 / math.sqrt(3)))
    assert seed_interval([5.0])[0] == 5.0 and math.isnan(seed_interval([5.0])[1])
    assert all(math.isnan(v) for v in seed_interval([]))


def test_cells_of_one_config_are_grouped_by_seed(cells):
    groups = config_groups(cells[::-1])  # any order in, seeds sorted out
    assert [[c.name for c in g] for g in groups] == [
        ["hcc.lambda=1,seed=0", "hcc.lambda=1,seed=1", "hcc.lambda=1,seed=2"],
        ["hcc.lambda=0,seed=0", "hcc.lambda=0,seed=1", "hcc.lambda=0,seed=2"],
    ]


def test_ablation_table_shows_across_seed_mean_ci_and_per_seed_values(cells):
    table, bold, ci = ablation_frame(cells)
    assert list(table.columns) == ["hcc.lambda", "seeds", "psnr_y", "psnr_y lo", "psnr_y hi", "psnr_y per seed"]
    assert table["hcc.lambda"].tolist() == ["0", "1"] and table["seeds"].tolist() == ["0, 1, 2"] * 2
    for row, lam in zip(table.itertuples(index=False), (0.0, 1.0)):
        per_seed, mean, half = _expected(lam)
        assert row.psnr_y == pytest.approx(mean)
        assert (row[3], row[4]) == pytest.approx((mean - half, mean + half))
        assert row[5] == " / ".join(f"{v:.2f}" for v in per_seed)  # e.g. 23.50 / 24.70 / 22.90
    assert bold == {"psnr_y": "higher"} and ci == {"psnr_y": ("psnr_y lo", "psnr_y hi")}


def test_comparison_per_seed_and_across_seeds_with_holm(cells):
    cmp = comparison_frame(cells)
    assert cmp["level"].tolist() == ["seed 0", "seed 1", "seed 2", "across 3 seeds"]
    assert cmp["on - off"].tolist() == pytest.approx([0.5] * 4)
    assert cmp["n"].tolist() == [8, 8, 8, 3]
    # exact sign-flip: every one of 8 image differences positive -> 2 / 2^8; 3 seed differences -> 2 / 2^3
    assert cmp["p"].tolist() == pytest.approx([2 / 256] * 3 + [0.25])
    # Holm over the 4 rows: 4 x 2/256 for the smallest, then the running maximum; 0.25 stays 0.25
    assert cmp["p (Holm)"].tolist() == pytest.approx([4 * 2 / 256] * 3 + [0.25])
    assert cmp["verdict"].tolist() == ["better"] * 3 + ["no detectable difference (n=3 seeds)"]


def test_comparison_pairs_seeds_not_positions(cells):
    # seed 2 of lambda 1 missing: only seeds 0 and 1 are compared, across 2 seeds
    cmp = comparison_frame([c for c in cells if c.name != "hcc.lambda=1,seed=2"])
    assert cmp["level"].tolist() == ["seed 0", "seed 1", "across 2 seeds"]
    assert cmp["n"].tolist() == [8, 8, 2] and cmp["p"].iloc[-1] == pytest.approx(0.5)


def test_lambda_curve_plots_the_tables_means_with_seed_dots(cells):
    long = lambda_frame(cells, "model.hcc.lambda")
    table, _, _ = ablation_frame(cells)
    ours = long[long["group"] == "ours"]  # the cells hold two methods: one curve each
    assert ours["mean"].tolist() == pytest.approx(table["psnr_y"].tolist())
    assert ours["ci_low"].tolist() == pytest.approx(table["psnr_y lo"].tolist()) and set(ours["seeds"]) == {3}
    points = seed_points(cells, "model.hcc.lambda")
    fig = figures.lambda_curve(ours, points=points[points["group"] == "ours"])
    ax = fig.axes[0]
    line = ax.lines[0]
    assert line.get_xdata().tolist() == [0.0, 1.0]
    assert line.get_ydata().tolist() == pytest.approx(table["psnr_y"].tolist())  # the plotted means = the table's
    dots = np.vstack([c.get_offsets() for c in ax.collections if len(c.get_offsets()) == 6])
    expected = [(lam, v) for lam in (0.0, 1.0) for v in _expected(lam)[0]]
    got = np.array(sorted(map(tuple, dots.tolist())))
    np.testing.assert_allclose(got, np.array(sorted(expected)), atol=1e-9)  # the dots: the per-seed means
    band = [c for c in ax.collections if c not in ax.collections[-1:]][0].get_paths()[0].vertices[:, 1]
    lo, hi = table["psnr_y lo"].tolist(), table["psnr_y hi"].tolist()
    assert min(band) == pytest.approx(min(lo)) and max(band) == pytest.approx(max(hi))  # the CI band


def test_distribution_figure_shows_every_image(cells):
    long = distribution_frame(cells, {"bicubic"})
    assert len(long) == 6 * 8 and set(long["config"]) == {"hcc.lambda=0", "hcc.lambda=1"}
    fig = figures.distribution_figure(long.assign(seed=long["seed"].astype(str)), hue="seed")
    ax = fig.axes[0]
    values = sorted(v for c in ax.collections for v in c.get_offsets()[:, 1].tolist())
    assert values == pytest.approx(sorted(long["value"].tolist()))  # one dot per image and seed
    assert [t.get_text() for t in ax.get_xticklabels()] == ["hcc.lambda=0", "hcc.lambda=1"]


def test_sweep_report_page_with_seeds(cells, tmp_path):
    """The whole page renders from the seeded cells (listed without sweep.json: every cells/ folder)."""
    import json

    from reports.sweep.report import render_sweep_report

    for cell in cells:
        (cell.dir / "state.json").write_text(
            json.dumps({"status": "done", "name": cell.name, "index": cell.index, "overrides": cell.overrides})
        )
        cell.summary.to_csv(cell.dir / "summary.csv", index=False)
    html = render_sweep_report(tmp_path).read_text(encoding="utf-8")
    assert "across 3 seeds" in html and "no detectable difference (n=3 seeds)" in html
    assert "psnr_y per seed" in html and "Per-image distributions: toy" in html
    assert "t-interval across seeds" in html


def test_report_uses_the_sweeps_statistics_options(cells, tmp_path):
    """``sweep.statistics`` (recorded in sweep.json by the runner) sets the report's test; a bad value names
    its key."""
    import json

    from reports.sweep.report import render_sweep_report

    rows = [{"dir": f"cells/{c.name}", "name": c.name, "index": c.index, "overrides": c.overrides,
             "status": "done"} for c in cells]  # fmt: skip
    for cell in cells:
        cell.summary.to_csv(cell.dir / "summary.csv", index=False)
    sweep_json = tmp_path / "sweep.json"
    sweep_json.write_text(json.dumps({"cells": rows, "statistics": {"test": "wilcoxon", "alpha": 0.1}}))
    html = render_sweep_report(tmp_path).read_text(encoding="utf-8")
    assert "p: two-sided Wilcoxon signed-rank test" in html and "only when p (Holm) &lt; 0.1 and" in html
    sweep_json.write_text(json.dumps({"cells": rows, "statistics": {"test": "ttest"}}))
    with pytest.raises(ValueError, match=r"statistics.test: must be one of permutation, wilcoxon, got 'ttest'"):
        render_sweep_report(tmp_path)


def test_models_section_aggregates_a_configs_seeds(cells):
    """Per configuration and model: means over its seeds, the seeds counted (no "one seed" warning at 3)."""
    import yaml

    from reports.honesty import model_warnings
    from reports.sweep.sections import sweep_model_facts

    for cell in cells:
        rows = [{"dataset": "toy", "method": "ours", "image": f"im{i}", "tokenizer_psnr_y": 30.0 + i % 2,
                 "bicubic_psnr_y": 19.0, "error": ""} for i in range(8)]  # fmt: skip
        pd.DataFrame(rows).to_csv(cell.dir / "ceilings.csv", index=False)
        config = {"methods": ["bicubic", {"type": "alignvar", "name": "ours"}], "metrics": ["psnr_y"]}
        (cell.dir / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    facts = sweep_model_facts(cells)
    assert [(f.model, f.dataset, f.n_seeds, f.n_images) for f in facts] == [
        ("hcc.lambda=0 / ours", "toy", 3, 8),
        ("hcc.lambda=1 / ours", "toy", 3, 8),
    ]
    for f, lam in zip(facts, (0.0, 1.0)):
        assert f.psnr_y == pytest.approx(_expected(lam)[1]) and (f.ceiling, f.bicubic) == (30.5, 19.0)
    gap = 30.5 - _expected(0.0)[1]
    assert model_warnings(facts[0]) == [
        f"hcc.lambda=0 / ours on toy: PSNR-Y {_expected(0.0)[1]:.2f} dB is {gap:.2f} dB below its tokenizer "
        "ceiling 30.50 dB (> 2 dB): the model, not its tokenizer, limits it",
        "hcc.lambda=0 / ours on toy: evaluated on 8 images (< 10): differences are hard to detect and CIs are rough",
    ]


def test_curves_leave_out_constant_baselines_and_keys_tied_to_the_curve_key(tmp_path):
    """An ablation whose lambda arms each come with their own checkpoint (the demo's layout): the checkpoint key
    moves with lambda, so it does not split the curves (that would give one point per curve), and the bicubic
    baseline, the same in every cell, gets no curve; a key that varies at fixed lambda (sca) still does."""
    cells = []
    for i, (sca, lam, ckpt) in enumerate(
        [("none", 0.0, "varsr"), ("sca", 0.0, "sca"), ("none", 1.0, "hcc"), ("sca", 1.0, "sca_hcc")]
    ):
        cell = _cell(tmp_path / str(i), lam, 0, i)
        cell.overrides = {"model.sca.mask_input": sca, "model.hcc.lambda": lam, "tiny.checkpoint": ckpt}
        cells.append(cell)
    points = seed_points(cells, "model.hcc.lambda")
    assert sorted(set(points["group"])) == ["sca.mask_input=none, ours", "sca.mask_input=sca, ours"]
    assert points.groupby("group")["value"].apply(sorted).tolist() == [[0.0, 1.0], [0.0, 1.0]]  # two points each
    from reports.sweep.curves import tied_to

    others = ["model.sca.mask_input", "tiny.checkpoint"]
    assert tied_to(cells, "tiny.checkpoint", "model.hcc.lambda", others)
    assert not tied_to(cells, "model.sca.mask_input", "model.hcc.lambda", others)
