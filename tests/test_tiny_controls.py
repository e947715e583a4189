"""The instrument controls and the demo, on the checkpoints shipped in experiments/checkpoints/tiny.

* ``experiments/tiny_controls.yaml``: two sampling seeds of the same model must give "no detectable difference"
  on every metric; a planted degradation (every scale-4 token replaced at inference) must be found worse (SSIM-Y;
  PSNR-Y worse or undetected, never better) by the same statistics, and its free-running error-accumulation curve
  must equal the clean one up to scale 3 and leave it at scale 4.
* ``run.py demo``: the interpolation baselines and the four ablation cells from the shipped files, one report with
  the ablation comparison, the attention-distance and error-accumulation figures and the SCA gate panel.
* The shipped files: at most 20 MB, listed in the package data, each named in the manifest with its digest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.core.identity import file_sha256

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "experiments" / "checkpoints" / "tiny"
ARMS = ("varsr", "sca", "hcc", "sca_hcc")


def test_the_shipped_checkpoints_are_small_listed_and_match_their_manifest():
    import tomllib

    files = sorted(SHIPPED.glob("*.safetensors"))
    assert sorted(f.stem for f in files) == sorted([*ARMS, "tokenizer"])
    assert sum(f.stat().st_size for f in files) <= 20 * 2**20
    manifest = json.loads((SHIPPED / "MANIFEST.json").read_text())
    assert {name: entry["sha256"] for name, entry in manifest.items()} == {f.stem: file_sha256(f) for f in files}
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "checkpoints/tiny/*.safetensors" in data["experiments"]


def test_the_shipped_checkpoints_record_the_settings_they_are_named_after():
    from methods.alignvar.weights import stored_config

    settings = {}
    for arm in ARMS:
        cfg = stored_config(SHIPPED / f"{arm}.safetensors")
        settings[arm] = (cfg.sca.mask_input, cfg.hcc.lambda_)
    assert settings == {"varsr": ("none", 0.0), "sca": ("laplacian", 0.0), "hcc": ("none", 1.0),
                        "sca_hcc": ("laplacian", 1.0)}  # fmt: skip


def _sweep(name: str, tmp_path: Path, monkeypatch, *overrides: str) -> Path:
    from harness.sweep.expand import load_sweep
    from harness.sweep.runner import run_sweep

    monkeypatch.setenv("ALIGNVAR_CACHE", str(tmp_path / "cache"))
    spec = load_sweep(name, [f"output_root={tmp_path}", *overrides])
    result = run_sweep(spec, workers=1, isolation="inline", progress=False)
    assert result.ok
    return result.sweep_dir


@pytest.mark.slow
def test_the_controls_null_seed_and_planted_degradation_behave_as_stated(tmp_path, monkeypatch):
    from harness.core.stats import NO_DIFFERENCE, WORSE
    from reports.sweep.cells import load_sweep_cells
    from reports.sweep.comparison import comparison_frame
    from reports.sweep.report import render_sweep_report

    sweep_dir = _sweep("tiny_controls", tmp_path, monkeypatch)
    cells = load_sweep_cells(sweep_dir)
    table = comparison_frame(cells)
    seed = table[table["comparison"].str.startswith("seed:")]
    planted = table[table["comparison"].str.startswith("planted degradation:")]
    assert sorted(seed["metric"]) == sorted(planted["metric"]) == ["psnr_y", "ssim_y"]
    assert all(v.startswith(NO_DIFFERENCE) for v in seed["verdict"]), seed.to_string()
    verdict = dict(zip(planted["metric"], planted["verdict"]))
    assert verdict["ssim_y"] == WORSE, planted.to_string()
    assert verdict["psnr_y"] in (WORSE, f"{NO_DIFFERENCE} (n=64 images)"), planted.to_string()  # never "better"
    assert (planted["n"] == 64).all()

    def free_running(cell):
        acc = cell.accumulation
        return acc[acc["mode"] == "free_running"].sort_values("scale_index")["error"].to_numpy()

    by_label = {json.dumps(c.overrides, sort_keys=True): c for c in cells}
    clean = free_running(by_label[json.dumps({"methods.tiny.plant_scale": None, "methods.tiny.seed": 0})])
    hit = free_running(by_label[json.dumps({"methods.tiny.plant_scale": 4, "methods.tiny.seed": 0})])
    assert hit[:4] == pytest.approx(clean[:4], rel=1e-6)  # scales 0-3 are generated before the planted scale
    assert hit[4] > 1.5 * clean[4]  # the curve leaves the clean one at the planted scale
    page = render_sweep_report(sweep_dir).read_text()
    assert "planted degradation: tiny.plant_scale=4 vs null" in page and "seed: tiny.seed=1 vs 0" in page


@pytest.mark.slow
def test_the_demo_benchmarks_the_baselines_and_the_shipped_ablation_into_one_report(tmp_path, monkeypatch, capsys):
    from harness.cli.main import main

    monkeypatch.setenv("ALIGNVAR_CACHE", str(tmp_path / "cache"))
    code = main(["demo", "datasets.0.count=1", "--output-root", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    report = tmp_path / "demo_ablation" / "report.html"
    assert f"sweep report: {report}" in out
    cells = sorted((tmp_path / "demo_ablation" / "cells").iterdir())
    assert len(cells) == 4
    for cell in cells:
        summary = pd.read_csv(cell / "summary.csv")
        assert set(summary["method"]) == {"nearest", "bilinear", "bicubic", "lanczos", "tiny"}
        assert set(summary.loc[summary["metric"] == "psnr_y", "n"]) == {16}  # one held-out photograph, 16 tiles
    page = report.read_text()
    for text in ("SCA: sca.mask_input=laplacian vs none", "HCC: hcc.lambda=1 vs 0", "Attention distance",
                 "Error accumulation", "SCA gate statistics", "SCA gates:"):  # fmt: skip
        assert text in page, text


def test_packing_a_seeded_sweep_ships_the_chosen_replicate_of_each_arm(tmp_path):
    import sys

    import torch
    from safetensors.torch import save_file

    sys.path.insert(0, str(REPO / "tools"))
    import pack_demo_checkpoints as pack_tool

    assert pack_tool.cell_seed("hcc.lambda=1.0,sca.mask_input=none,seed=12-1a2b3c4d") == 12
    assert pack_tool.cell_seed("hcc.lambda=1.0,sca.mask_input=none-1a2b3c4d") is None
    assert pack_tool.cell_seed("hcc.lambda=1.0,myseed=3-1a2b3c4d") is None
    vq = {"vqvae.w": torch.ones(2)}
    for lam in (0.0, 1.0):
        for seed in (0, 1):
            cell = tmp_path / "sweep" / "cells" / f"hcc.lambda={lam},seed={seed}-0000000{seed}" / "train"
            cell.mkdir(parents=True)
            config = json.dumps({"sca": {"mask_input": "none"}, "hcc": {"lambda": lam}})
            tensors = {**vq, "word_embed.weight": torch.full((2,), 10.0 * lam + seed)}
            save_file(tensors, str(cell / "model.safetensors"), {"alignvar_config": config})
    manifest = pack_tool.pack(tmp_path / "sweep", tmp_path / "out", seed=1)
    assert sorted(manifest) == ["hcc", "tokenizer", "varsr"]
    assert manifest["hcc"]["source"] == "sweep/cells/hcc.lambda=1.0,seed=1-00000001/train/model.safetensors"
    from safetensors.torch import load_file

    assert load_file(str(tmp_path / "out" / "hcc.safetensors"))["word_embed.weight"].tolist() == [11.0, 11.0]
    assert load_file(str(tmp_path / "out" / "varsr.safetensors"))["word_embed.weight"].tolist() == [1.0, 1.0]
    with pytest.raises(SystemExit, match="no finished cell of seed 5"):
        pack_tool.pack(tmp_path / "sweep", tmp_path / "out5", seed=5)
