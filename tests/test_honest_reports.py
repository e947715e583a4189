"""Honest reports: every model shown with its tokenizer ceiling and bicubic, and each warning drawn exactly when
its condition holds (issue 15 item 5).

``model_warnings`` is checked per warning with the condition true, at its threshold and false; then one real
bench run of a tiny AlignVAR checkpoint (with a training log next to it) checks the ceiling hook's numbers
against a direct computation and the bench report's table and banner.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from bs4 import BeautifulSoup

from harness.bench.ceiling import CEILING_COLUMNS, read_ceilings
from harness.bench.runner import run_bench
from harness.config.experiment import experiment_from_dict
from harness.core import registry
from reports.bench import render_report
from reports.honesty import ModelFacts, model_warnings
from tests.test_report import PhotoConfig  # noqa: F401 - registers the _t_report_photo dataset
from tests.tiny_models import make_tiny

CLEAN = ModelFacts(
    model="m", dataset="d", psnr_y=25.0, ceiling=26.0, bicubic=24.0, n_images=12, n_seeds=3, gate_mean=0.3,
    hcc_share=0.5,
)  # fmt: skip


def test_no_warning_when_every_condition_is_false():
    assert model_warnings(CLEAN) == []
    unknown = ModelFacts(model="m", dataset="d")  # nothing known: nothing claimed
    assert model_warnings(unknown) == []


@pytest.mark.parametrize(
    ("change", "expected", "at_threshold"),
    [
        (
            {"psnr_y": 23.5, "bicubic": 20.0},
            "m on d: PSNR-Y 23.50 dB is 2.50 dB below its tokenizer ceiling 26.00 dB (> 2 dB): the model, not its "
            "tokenizer, limits it",
            {"psnr_y": 24.0, "bicubic": 20.0},  # exactly 2 dB below: no warning
        ),
        (
            {"psnr_y": 24.9, "bicubic": 25.0},
            "m on d: PSNR-Y 24.90 dB is below bicubic (25.00 dB)",
            {"psnr_y": 25.0, "bicubic": 25.0},
        ),
        (
            {"n_images": 9},
            "m on d: evaluated on 9 images (< 10): differences are hard to detect and CIs are rough",
            {"n_images": 10},
        ),
        (
            {"n_seeds": 1},
            "m on d: one seed: training and sampling variance is not measured (sweep.seeds: [0, 1, 2])",
            {"n_seeds": 2},
        ),
        (
            {"gate_mean": 0.004},
            "m on d: SCA gate closed (mean m = 0.0040 < 0.01): SCA leaves the tokens almost unchanged",
            {"gate_mean": 0.01},
        ),
        (
            {"hcc_share": 0.0042},
            "m on d: HCC gradient share 0.42 % < 1 %: HCC barely moves the logits",
            {"hcc_share": 0.01},
        ),
    ],
)
def test_each_warning_exactly_when_its_condition_holds(change, expected, at_threshold):
    assert model_warnings(dataclasses.replace(CLEAN, **change)) == [expected]
    assert model_warnings(dataclasses.replace(CLEAN, **at_threshold)) == []


# ------------------------------------------------------------------------------------------ a real bench run
def _psnr_y(sr: torch.Tensor, hr: torch.Tensor) -> float:
    """PSNR on BT.601 Y (pyiqa's definition: Y in [16, 235] / 255, peak 1), as a closed form."""
    w = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64).view(1, 3, 1, 1)
    y = lambda x: ((x.double() * w).sum(1) + 16.0) / 255.0  # noqa: E731
    mse = (y(sr) - y(hr)).pow(2).mean()
    return float(10 * torch.log10(1.0 / mse))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("honest")
    train = root / "train"
    train.mkdir()
    ckpt = make_tiny("laplacian").save(train / "model.safetensors")
    # what run.py train leaves next to its checkpoint: the log (closed gate, weak HCC) and its config (lambda 1)
    pd.DataFrame(
        {"step": [10, 20], "hcc_grad_ratio": [0.01, 0.004], "hcc_share": [0.01, 0.004], "gate_mean": [0.005, 0.003]}
    ).to_csv(train / "metrics.csv", index=False)
    (train / "config.yaml").write_text(yaml.safe_dump({"model": {"hcc": {"lambda": 1.0}}}), encoding="utf-8")
    cfg = experiment_from_dict(
        {
            "name": "honest",
            "output_root": str(root),
            "datasets": [{"type": "_t_report_photo", "name": "photos", "n": 3}],
            "methods": ["bicubic", {"type": "alignvar", "name": "tiny", "checkpoint": str(ckpt), "cfg": 1.0}],
            "metrics": ["psnr_y"],
            "bench": {"device": "cpu", "bootstrap_samples": 100, "save_images": False},
        },
        source="honest.yaml",
    )
    run_bench(cfg, progress=False)
    return root / "honest"


def test_ceiling_hook_writes_the_tokenizer_and_bicubic_psnr_y_of_every_image(tiny_run):
    table = read_ceilings(tiny_run)
    assert list(table.columns) == list(CEILING_COLUMNS)
    assert list(table["method"]) == ["tiny"] * 3  # bicubic has no tokenizer: no rows
    assert table["error"].isna().all()
    # the bicubic column is the run's own bicubic method, image by image
    per_image = pd.read_csv(tiny_run / "metrics" / "photos.csv")
    bicubic = per_image[per_image["method"] == "bicubic"].set_index("image")["psnr_y"]
    assert table.set_index("image")["bicubic_psnr_y"].to_dict() == pytest.approx(bicubic.to_dict(), abs=1e-9)
    # the ceiling: the HR tile through the model's VQ-VAE (encode, quantise every scale, decode), 8-bit, PSNR-Y
    ds = registry.create("datasets", "_t_report_photo", {"n": 3})
    vqvae = make_tiny("laplacian").vqvae
    for i, row in enumerate(table.itertuples()):
        hr = ds[i].hr[None]
        recon = ((vqvae.reconstruct(hr * 2 - 1) + 1) / 2).clamp(0, 1).mul(255).add(0.5).floor().div(255)
        # pyiqa computes PSNR in float32: a relative 1e-6 is ~8 float32 ulps of the result
        assert row.tokenizer_psnr_y == pytest.approx(_psnr_y(recon, hr), rel=1e-6)


def test_bench_report_states_ceiling_and_bicubic_and_warns(tiny_run):
    html = render_report(tiny_run).read_text(encoding="utf-8")
    soup = BeautifulSoup(html, "html.parser")
    table = soup.find("table", class_="models")
    head = [th.get_text() for th in table.find_all("th")]
    assert head[:5] == ["model", "dataset", "PSNR-Y", "tokenizer ceiling", "bicubic"]
    cells = [td.get_text() for td in table.find("tbody").find("tr").find_all("td")]
    ceilings = read_ceilings(tiny_run)
    summary = pd.read_csv(tiny_run / "summary.csv")
    psnr = float(summary[(summary["method"] == "tiny") & (summary["metric"] == "psnr_y")]["mean"].iloc[0])
    ceiling, bicubic = ceilings["tokenizer_psnr_y"].mean(), ceilings["bicubic_psnr_y"].mean()
    assert cells[:5] == ["tiny", "photos", f"{psnr:.2f}", f"{ceiling:.2f}", f"{bicubic:.2f}"]
    assert cells[6:] == ["3", "1", "0.0040", "0.70 %"]  # images, seeds, gate and HCC share: means of the log
    banner = soup.find("div", class_="banner")  # the warnings banner at the top of the page
    text = " ".join(banner.get_text(" ").split())
    facts = ModelFacts("tiny", "photos", psnr, ceiling, bicubic, 3, 1, 0.004, 0.007)
    for warning in model_warnings(facts):
        assert warning in text
    assert "tiny on photos: evaluated on 3 images (< 10)" in text
    assert "tiny on photos: one seed" in text
    assert "tiny on photos: SCA gate closed (mean m = 0.0040 < 0.01)" in text
    assert "tiny on photos: HCC gradient share 0.70 % < 1 %" in text
    assert ("below bicubic" in text) == (psnr < bicubic)
    assert ("below its tokenizer ceiling" in text) == (psnr < ceiling - 2)


def test_tokenizer_is_reread_after_release_from_either_file_layout(tmp_path):
    """Inference-only methods free the VQ-VAE encoder; the ceiling reads it again, from our safetensors or from
    an official VQVAE.pth, and gives exactly the model's own reconstruction (sizes padded to 16 and cropped)."""
    model = make_tiny("none")
    torch.save(model.transformer.state_dict(), tmp_path / "VARSR.pth")
    torch.save(model.vqvae.state_dict(), tmp_path / "VQVAE.pth")
    ours = model.save(tmp_path / "ours.safetensors")
    hr = torch.rand(1, 3, 48, 40)
    padded = torch.nn.functional.pad(hr * 2 - 1, (0, 8, 0, 0), mode="reflect")
    want = (model.vqvae.reconstruct(padded)[..., :48, :40] + 1) / 2
    for options in ({"checkpoint": str(ours)}, {"checkpoint": str(tmp_path / "VARSR.pth"),
                                                 "vqvae": str(tmp_path / "VQVAE.pth")}):  # fmt: skip
        method = registry.create("methods", "alignvar", options)
        assert method.model.encoder_released  # inference_only (the default) freed it
        torch.testing.assert_close(method.tokenizer_reconstruct(hr), want, rtol=0, atol=1e-6)


def test_training_signals_judge_hcc_only_when_it_is_on():
    from reports.honesty import training_signals

    log = pd.DataFrame(
        {
            "step": range(7),
            "hcc_grad_ratio": [None, 1.0, 1.0, 2.0, 2.0, 3.0, 4.0],  # rows without it measured no gradients
            "hcc_share": [None, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            "gate_mean": [0.5, 0.1, 0.1, 0.2, 0.2, 0.3, 0.4],
        }
    )
    gate, share = training_signals(log, hcc_lambda=0.0)
    assert gate == pytest.approx((0.1 + 0.2 + 0.2 + 0.3 + 0.4) / 5) and share is None  # lambda 0: HCC is off
    assert training_signals(log, hcc_lambda=None) == (pytest.approx(gate), None)  # unknown lambda, share 0: off
    assert training_signals(log.assign(hcc_share=0.002), hcc_lambda=1.0)[1] == pytest.approx(0.002)
    assert training_signals(log.drop(columns=["gate_mean"]), 1.0)[0] is None  # SCA off: no gate logged
    assert training_signals(None, 1.0) == (None, None)


def test_ceiling_hook_can_be_capped(tmp_path):
    from harness.bench.ceiling import CeilingHook

    with pytest.raises(ValueError, match=r"max_images: must be >= 1 or None, got 0"):
        CeilingHook(max_images=0)
    ckpt = make_tiny("none").save(tmp_path / "m.safetensors")
    cfg = experiment_from_dict(
        {
            "name": "capped",
            "output_root": str(tmp_path),
            "datasets": [{"type": "_t_report_photo", "name": "photos", "n": 3}],
            "methods": [{"type": "alignvar", "name": "tiny", "checkpoint": str(ckpt), "cfg": 1.0}],
            "metrics": ["psnr_y"],
            "bench": {"device": "cpu", "bootstrap_samples": 0, "save_images": False},
        },
        source="capped.yaml",
    )
    run_bench(cfg, hooks=[CeilingHook(max_images=2)], progress=False)
    assert read_ceilings(tmp_path / "capped")["image"].tolist() == ["tile0", "tile1"]  # the given hook, no other
