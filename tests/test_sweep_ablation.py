"""Tiny ablations end to end: train -> bench -> analyze per sweep cell, then the sweep report and its exports.

The end-to-end sweep trains two tiny AlignVARs for a couple of steps (SCA off vs Laplacian SCA) on the bundled
photos: plumbing only, no number from them means anything. The table logic (baselines shown once, on-vs-off
differences with the paired tests of harness.core.stats, Holm and verdicts) is checked on hand-made cells with
closed-form answers, and the ``alignvar`` method's SCA default (the mode the checkpoint was trained with) on
saved tiny models.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ method: SCA default
def _tiny(mask_input: str, path: Path) -> Path:
    from methods.alignvar.configs import AlignVARConfig, SCAConfig
    from methods.alignvar.model import AlignVAR

    torch.manual_seed(0)
    cfg = AlignVARConfig(arch="tiny", sca=SCAConfig(mask_input=mask_input, hidden=8))
    return AlignVAR.from_config(cfg).save(path)


def test_alignvar_method_uses_the_sca_mode_it_was_trained_with(tmp_path):
    from harness.core.registry import create

    random_ckpt = _tiny("random", tmp_path / "random.safetensors")
    off_ckpt = _tiny("none", tmp_path / "off.safetensors")
    # default: as trained (mode and gate width from the metadata: the gate loads strictly, hidden=8 matters)
    method = create("methods", "alignvar", {"checkpoint": str(random_ckpt)})
    assert method.model.config.sca.mask_input == "random" and method.model.sca.mask_input == "random"
    assert not method.model.sca_untrained
    assert create("methods", "alignvar", {"checkpoint": str(off_ckpt)}).model.sca is None
    # an explicit mode overrides the stored one
    assert create("methods", "alignvar", {"checkpoint": str(random_ckpt), "sca": "none"}).model.sca is None
    laplacian = create("methods", "alignvar", {"checkpoint": str(random_ckpt), "sca": "laplacian"})
    assert laplacian.model.sca.mask_input == "laplacian"
    # a model trained without SCA cannot be evaluated with an (untrained) gate
    with pytest.raises(ValueError, match=r"has no SCA weights .* so sca: laplacian would run an untrained gate"):
        create("methods", "alignvar", {"checkpoint": str(off_ckpt), "sca": "laplacian"})


def test_official_checkpoints_default_to_sca_off(tmp_path):
    from harness.core.registry import create
    from methods.alignvar.configs import AlignVARConfig
    from methods.alignvar.model import AlignVAR

    torch.manual_seed(0)
    model = AlignVAR.from_config(AlignVARConfig(arch="tiny"))
    torch.save(model.transformer.state_dict(), tmp_path / "VARSR.pth")
    torch.save(model.vqvae.state_dict(), tmp_path / "VQVAE.pth")
    method = create(
        "methods",
        "alignvar",
        {"checkpoint": str(tmp_path / "VARSR.pth"), "vqvae": str(tmp_path / "VQVAE.pth")},
    )
    assert method.model.sca is None and method.model.config.sca.mask_input == "none"


# ------------------------------------------------------------------------ report tables on hand-made cells
def _cell(root: Path, name: str, index: int, overrides: dict, means: dict, per_image: dict):
    """A finished cell: summary.csv (+ metrics/toy.csv per-image values) for methods 'ours' and 'bicubic'."""
    from reports.sweep.cells import SweepCell

    cell_dir = root / "cells" / name
    (cell_dir / "metrics").mkdir(parents=True)
    summary = pd.DataFrame(
        [
            {
                "dataset": "toy",
                "method": m,
                "metric": "psnr_y",
                "mean": v,
                "ci_low": v - 0.1,
                "ci_high": v + 0.1,
            }
            | {"n": 4, "lower_better": False}
            for m, v in means.items()
        ]
    )
    rows = [{"dataset": "toy", "method": m, "image": f"im{i}", "psnr_y": v} for m, vs in per_image.items()
            for i, v in enumerate(vs)]  # fmt: skip
    pd.DataFrame(rows).to_csv(cell_dir / "metrics" / "toy.csv", index=False)
    return SweepCell(cell_dir, name, index, "done", overrides, run_dir=cell_dir, summary=summary)


def test_baselines_once_and_on_vs_off_differences(tmp_path):
    from reports.sweep.comparison import comparison_frame
    from reports.sweep.tables import ablation_frame, baseline_frame, constant_methods

    off_images, shift = [20.0, 22.0, 24.0, 26.0], [0.5, 0.7, 0.3, 0.5]  # on - off per image: mean 0.5
    cells = [
        _cell(tmp_path, "off", 0, {"model.hcc.lambda": 0.0}, {"ours": 23.0, "bicubic": 21.0},
              {"ours": off_images, "bicubic": [21.0] * 4}),
        _cell(tmp_path, "on", 1, {"model.hcc.lambda": 1.0}, {"ours": 23.5, "bicubic": 21.0},
              {"ours": [a + d for a, d in zip(off_images, shift)], "bicubic": [21.0] * 4}),
    ]  # fmt: skip
    assert constant_methods(cells) == ["bicubic"]
    table, bold, ci = ablation_frame(cells)  # one row per cell: bicubic is left to the baselines table
    assert table["hcc.lambda"].tolist() == ["0", "1"] and table["psnr_y"].tolist() == [23.0, 23.5]
    assert "method" not in table.columns and bold == {"psnr_y": "higher"}
    base, _, _ = baseline_frame(cells)
    assert base["method"].tolist() == ["bicubic"] and base["psnr_y"].tolist() == [21.0]

    cmp = comparison_frame(cells)
    assert len(cmp) == 1
    row = cmp.iloc[0]
    assert row["comparison"] == "HCC: hcc.lambda=1 vs 0" and (row["off"], row["on"]) == (23.0, 23.5)
    assert row["on - off"] == pytest.approx(0.5) and row["n"] == 4
    # bootstrap means of 4 differences in [0.3, 0.7] stay within them; all > 0, yet with 4 images the exact
    # sign-flip test cannot go below p = 2/16 (the all-positive pattern and its mirror image): no verdict
    # (the old bootstrap p-value said p < 0.01 and "better" here, a claim 4 images cannot support)
    assert 0.3 <= row["on - off lo"] <= 0.5 <= row["on - off hi"] <= 0.7
    assert row["p"] == pytest.approx(2 / 16) and row["p (Holm)"] == pytest.approx(2 / 16)
    assert row["verdict"] == "no detectable difference (n=4 images)"

    # only one cell: nothing is "constant", and there is no off cell to compare with
    assert constant_methods(cells[1:]) == [] and comparison_frame(cells[1:]).empty


def test_sca_toggle_pairs_cells_with_equal_other_keys(tmp_path):
    from reports.sweep.comparison import comparison_frame

    def cell(i, mask, lam, psnr):
        over = {"model.sca.mask_input": mask, "model.hcc.lambda": lam}
        return _cell(tmp_path, f"c{i}", i, over, {"ours": psnr}, {"ours": [psnr - 1, psnr + 1]})

    cells = [cell(0, "none", 0.0, 20.0), cell(1, "laplacian", 0.0, 21.0), cell(2, "none", 1.0, 22.0),
             cell(3, "laplacian", 1.0, 22.5)]  # fmt: skip
    cmp = comparison_frame(cells).set_index("comparison")
    assert cmp["on - off"].to_dict() == pytest.approx(
        {
            "HCC: hcc.lambda=1 vs 0 (sca.mask_input=none)": 2.0,
            "HCC: hcc.lambda=1 vs 0 (sca.mask_input=laplacian)": 1.5,
            "SCA: sca.mask_input=laplacian vs none (hcc.lambda=0)": 1.0,
            "SCA: sca.mask_input=laplacian vs none (hcc.lambda=1)": 0.5,
        }
    )
    # constant per-image differences: a zero-width CI that excludes 0, but from 2 images the exact sign-flip
    # p-value is 2/4 (and Holm over the 4 rows: 1), so no row gets a verdict
    assert (cmp["on - off lo"] == cmp["on - off hi"]).all()
    assert cmp["p"].tolist() == [0.5] * 4 and cmp["p (Holm)"].tolist() == [1.0] * 4
    assert set(cmp["verdict"]) == {"no detectable difference (n=2 images)"}


def test_comparison_verdicts_use_holm_over_the_table_and_the_minimum_effect(tmp_path):
    """16 images, every difference positive: exact p = 2 / 2**16 per row. HCC moves PSNR by 0.5 dB (better);
    SCA by 0.01 dB, a difference the test detects but whose CI stays below the 0.05 dB minimum effect."""
    from harness.core.stats import StatisticsOptions
    from reports.sweep.comparison import comparison_frame

    base = [20.0 + i for i in range(16)]
    jitter = [0.001 * (i % 3) for i in range(16)]

    def cell(i, mask, lam, shift):
        over = {"model.sca.mask_input": mask, "model.hcc.lambda": lam}
        images = [b + shift + j for b, j in zip(base, jitter)]
        return _cell(tmp_path, f"c{i}", i, over, {"ours": sum(images) / 16}, {"ours": images})

    cells = [cell(0, "none", 0.0, 0.0), cell(1, "laplacian", 0.0, 0.01), cell(2, "none", 1.0, 0.5)]
    cmp = comparison_frame(cells).set_index("comparison")
    assert cmp["p"].tolist() == pytest.approx([2 / 2**16] * 2)
    assert cmp["p (Holm)"].tolist() == pytest.approx([2 * 2 / 2**16] * 2)  # a family of 2
    assert cmp.loc["HCC: hcc.lambda=1 vs 0 (sca.mask_input=none)", "verdict"] == "better"
    sca = cmp.loc["SCA: sca.mask_input=laplacian vs none (hcc.lambda=0)"]
    assert sca["on - off hi"] < 0.05 and sca["verdict"] == "no detectable difference (n=16 images)"
    # with a configured minimum effect below 0.01 dB the same row is "better"
    relaxed = comparison_frame(cells, StatisticsOptions(min_effect={"psnr_y": 0.005})).set_index("comparison")
    assert relaxed.loc["SCA: sca.mask_input=laplacian vs none (hcc.lambda=0)", "verdict"] == "better"


# -------------------------------------------------------------------------------------- tiny sweep, for real
SWEEP_YAML = """\
base: {base}
name: tiny_sca_e2e
output_root: {root}
train:
  tokenizer:
    data: {{crop_size: 32, batch_size: 2}}
    loop: {{steps: 2, log_every: 1, checkpoint_every: 2, progress: false, tensorboard: false}}
  data: {{crop_size: 32, batch_size: 2}}
  loop: {{steps: 2, log_every: 1, checkpoint_every: 2, progress: false, tensorboard: false}}
datasets:
  - {{type: bundled, name: bundled64, hr_size: 64, count: 2, cache_dir: {root}/cache}}
bench: {{batch_size: 2, save_images: false}}
sweep:
  grid:
    model.sca.mask_input: [none, laplacian]
  stages: [train, bench, analyze]
"""


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """Run the 2-cell sweep once (inline), add a stale cell folder, render the report."""
    from harness.sweep.expand import load_sweep
    from harness.sweep.runner import run_sweep
    from reports.sweep.report import render_sweep_report

    root = tmp_path_factory.mktemp("ablation")
    exp = root / "sweep.yaml"
    exp.write_text(SWEEP_YAML.format(base=REPO / "experiments" / "tiny_train.yaml", root=root))
    result = run_sweep(load_sweep(exp), isolation="inline", progress=False)
    # a folder left by an earlier definition of the sweep: finished, but not in sweep.json any more
    stale = result.sweep_dir / "cells" / "sca.mask_input=old-0badc0de"
    stale.mkdir()
    (stale / "state.json").write_text(
        json.dumps({"status": "done", "name": "old", "index": 0, "overrides": {"model.sca.mask_input": "stale_v"}})
    )
    pd.read_csv(next(result.sweep_dir.glob("cells/*/summary.csv"))).to_csv(stale / "summary.csv", index=False)
    return result, render_sweep_report(result.sweep_dir)


def test_every_cell_trains_benches_and_analyses(tiny_sweep):
    from harness.analysis.accumulation import read_accumulation_csv
    from harness.analysis.attention.tables import read_attention_csv

    result, _ = tiny_sweep
    assert result.ok, [(r["name"], r["error"]) for r in result.rows]
    for row in result.rows:
        cell = result.sweep_dir / row["dir"]
        summary = pd.read_csv(cell / "summary.csv")
        # the model trained with SCA off is evaluated with SCA off (it has no gate weights: 'laplacian',
        # the old default, would have refused to build)
        assert set(summary["method"]) == {"bicubic", "alignvar_tiny"}
        att = read_attention_csv(cell / "analysis" / "attention.csv")
        assert set(att["layer"]) == {0, 1} and set(att["model"]) == {"alignvar_tiny"}  # tiny: depth 2
        groups = att[[f"mass_{g}" for g in ("prefix", "class", "coarser", "own")]].sum(axis=1)
        assert groups.to_numpy() == pytest.approx(1.0, abs=1e-6)  # the key groups partition the visible keys
        fine = att[att["query_level"] == 3]  # 4x4 queries see 16 prefix + 1 class + 13 coarser + 16 own keys
        assert fine["uniform_mass_own"].to_numpy() == pytest.approx(16 / 46)
        acc = read_accumulation_csv(cell / "analysis" / "accumulation.csv")
        assert set(acc["mode"]) == {"teacher_forced", "free_running", "perturbation"}
        assert acc["scale"].drop_duplicates().tolist() == ["1x1", "2x2", "3x3", "4x4"]  # 64 px output
        tf, fr = (acc[acc["mode"] == m]["error"].to_numpy() for m in ("teacher_forced", "free_running"))
        assert tf[0] == pytest.approx(fr[0], rel=1e-6)  # scale 1: the same (empty) prefix in both modes
        pert = acc[acc["mode"] == "perturbation"]
        assert set(pert["injected_scale"]) == {1}  # a coarse scale (the first 2x2)
        assert pert["error"].iloc[0] == 0.0 and pert["error"].iloc[1] > 0  # before it untouched, it moved
        analyze = row["result"]["analyze"]
        assert analyze["images"] == 2 and analyze["files"][:2] == ["analysis/attention.csv",
                                                                    "analysis/accumulation.csv"]  # fmt: skip
        masks = sorted(p.name for p in (cell / "analysis").glob("sca_masks_*.png"))
        if row["overrides"]["model.sca.mask_input"] == "none":
            assert masks == [] and analyze["skipped"] == {"sca_masks": "SCA off (sca: none): no gates"}
            assert not (cell / "analysis" / "sca_gates.csv").exists()
        else:
            assert len(masks) == 1 and f"analysis/{masks[0]}" in analyze["files"]
            gates = pd.read_csv(cell / "analysis" / "sca_gates.csv")
            assert gates["scale"].tolist() == ["2x2", "3x3", "4x4"]  # every gated scale, the class slot excluded
            assert gates["n_tokens"].tolist() == [2 * 4, 2 * 9, 2 * 16]  # summed over the 2 images
            assert analyze["gate_mean"] == pytest.approx(gates["gate_mean"].mean(), abs=1e-6)
        log = pd.read_csv(cell / "train" / "metrics.csv")  # logged at every step here (log_every 1)
        assert log["hcc"].gt(0).all() and log["hcc_share"].gt(0).all()  # lambda 1 (tiny_train): HCC trained
        assert ("gate_mean" in log.columns) == (row["overrides"]["model.sca.mask_input"] != "none")


def _section(html: str, title: str) -> str:
    start = html.index(f">{title}</h2>")
    end = html.find("<h2", start)
    return html[start : end if end > 0 else len(html)]


def _decodes(src: str) -> tuple[int, int]:
    from PIL import Image

    assert src.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as img:
        img.load()
        return img.size


def test_sweep_report_tables_and_figures(tiny_sweep):
    result, page = tiny_sweep
    html = page.read_text(encoding="utf-8")
    assert "stale_v" not in html  # the stale folder is not listed in sweep.json
    table = _section(html, "Ablation")
    body = table[table.index("<tbody>") : table.index("</tbody>")]
    rows = re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
    assert len(rows) == 2 and [re.search(r"<td[^>]*>(\w+)", r).group(1) for r in rows] == [
        "none",
        "laplacian",
    ]
    assert "psnr_y ↑" in table and "ssim_y ↑" in table and 'class="best"' in table
    assert "bicubic" not in table and "bicubic" in _section(html, "Baselines")
    assert "SCA: sca.mask_input=laplacian vs none" in _section(html, "Component on vs off")
    models = _section(html, "Models: tokenizer ceiling, bicubic, warnings")  # every cell's model, with warnings
    for mask in ("none", "laplacian"):
        assert f"sca.mask_input={mask} / alignvar_tiny" in models
        assert f"sca.mask_input={mask} / alignvar_tiny on bundled64: one seed: training and sampling" in html
        assert f"sca.mask_input={mask} / alignvar_tiny on bundled64: evaluated on 2 images (&lt; 10)" in html
    for title in ("Attention distance", "Error accumulation"):
        srcs = re.findall(r'<img[^>]*src="([^"]+)"', _section(html, title))
        assert len(srcs) == 1 and _decodes(srcs[0])[0] >= 900
        assert "sca.mask_input=none" in _section(html, title)  # the values table names both cells
    attention = _section(html, "Attention distance")
    assert "distance (own scale)" in attention and "mass: LR prefix" in attention
    assert attention.count("uniform attention") >= 4  # one baseline row per query scale (+ the caption)
    training = _section(html, "Training signals")
    assert "HCC share" in training and "gate mean" in training and "sca.mask_input=laplacian" in training
    assert "sca.mask_input=laplacian" in _section(html, "SCA gate statistics")
    gates = [t for t in re.findall(r">(SCA gates: [^<]+)</h2>", html)]
    assert gates == ["SCA gates: sca.mask_input=laplacian"]
    assert _decodes(re.search(r'<img[^>]*src="([^"]+)"', _section(html, gates[0])).group(1))[0] > 0


def test_sweep_latex_exports_are_balanced_and_escaped(tiny_sweep):
    from reports.exports import latex_is_balanced

    result, _ = tiny_sweep
    exports = result.sweep_dir / "exports"
    tex = {p.stem: p.read_text(encoding="utf-8") for p in exports.glob("*.tex")}
    assert {"ablation", "baselines", "comparison", "attention_distance", "accumulation"} <= set(tex)
    for name, text in tex.items():
        assert latex_is_balanced(text), name
    ablation = tex["ablation"]
    assert r"sca.mask\_input" in ablation and r"psnr\_y$\uparrow$" in ablation and r"\textbf{" in ablation
    assert ablation.count(r"\\") - 1 == 2  # header + one row per cell
    assert r"SCA: sca.mask\_input=laplacian vs none" in tex["comparison"]


def test_identical_free_running_curves_are_named():
    from reports.sweep.curves import identical_curves, identical_note

    def curve(model, mode, errors):
        return pd.DataFrame({"model": model, "mode": mode, "scale_index": range(3), "error": errors})

    acc = pd.concat(
        [
            curve("lambda=0", "free_running", [0.1, 0.2, 0.3]),
            curve("lambda=1", "free_running", [0.1, 0.2, 0.3]),
            curve("lambda=2", "free_running", [0.1, 0.2, 0.4]),
            curve("lambda=2", "teacher_forced", [0.1, 0.2, 0.3]),
        ]
    )
    assert identical_curves(acc) == [["lambda=0", "lambda=1"]]
    assert "(drawn on top of each other): lambda=0 = lambda=1." in identical_note(acc)
    assert identical_note(acc[acc["model"] != "lambda=1"]) == ""


def test_probe_image_equals_the_separate_probes(tmp_path, astronaut):
    """The stage's one-generation probe gives exactly the numbers of the three separate probes (randomly
    initialised tiny model: plumbing only, nothing is reported)."""
    from harness.analysis import probes
    from harness.analysis.accumulation import results_to_frame
    from methods.alignvar.model import AlignVAR

    model = AlignVAR.from_pretrained(_tiny("laplacian", tmp_path / "m.safetensors")).eval()
    hr = torch.nn.functional.interpolate(astronaut[None], size=(64, 64), mode="area")[0]
    lr = torch.nn.functional.interpolate(hr[None], size=(16, 16), mode="area")[0]
    probe = probes.probe_image(model, lr, hr, "m", query_sample=3, perturb_scales=(1, 2), sca_figure=True)
    table, maps = probes.attention_for_image(model, lr, query_sample=3)
    pd.testing.assert_frame_equal(probe.attention, table)
    assert probe.heatmaps.keys() == maps.keys()
    separate = probes.accumulation_for_image(model, lr, hr, "m", perturb_scales=(1, 2))
    pd.testing.assert_frame_equal(results_to_frame(probe.curves), results_to_frame(separate))
    assert probe.sca_figure is not None and len(probe.sca_figure.axes) == 2 * 3 + 1  # scales 2..4 + colorbar
    with pytest.raises(ValueError, match=r"perturb_scales \[4\] outside 0\.\.3 \(this image has 4 scales: 1x1, "):
        probes.probe_image(model, lr, hr, "m", perturb_scales=(4,))
