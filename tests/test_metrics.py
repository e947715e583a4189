"""Metrics: pyiqa calibration values, OSEDiff's logged DRealSR numbers, closed forms, offline weights."""

from __future__ import annotations

import builtins
import csv
import math
import os
import re
from pathlib import Path

import pytest
import torch

from harness.core.imageio import load_image
from harness.core.mapping import ConfigError
from harness.data.bundled import pyiqa_calibration_dir
from harness.metrics import backend
from harness.metrics.iqa import build_metric, metric_info, metric_infos
from harness.metrics.weights import MissingWeightsError

CALIB_IMAGES = ["I03", "I04", "I06", "I08", "I19"]


def _csv_rows(path: Path) -> dict[str, list[float]]:
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        assert header[1:] == [f"{n}.bmp" for n in CALIB_IMAGES]
        return {row[0]: [float(v) for v in row[1:]] for row in reader if row}


@pytest.fixture(scope="module")
def calibration(reference_dir):
    root = pyiqa_calibration_dir()
    if root is None:
        pytest.skip("pyiqa's ResultsCalibra images are not installed (they ship with the pyiqa wheel)")
    dist = torch.stack([load_image(root / "dist_dir" / f"{n}.bmp") for n in CALIB_IMAGES])
    ref = torch.stack([load_image(root / "ref_dir" / f"{n}.bmp") for n in CALIB_IMAGES])
    official = _csv_rows(reference_dir / "calibration" / "results_official.csv")
    ours = _csv_rows(reference_dir / "calibration" / "calibration_summary.csv")
    return dist, ref, official, ours


def _close(got: torch.Tensor, want: list[float], atol: float) -> None:
    want_t = torch.tensor(want, dtype=torch.float64)
    assert got.dtype == torch.float64 and got.shape == want_t.shape
    assert torch.allclose(got, want_t, atol=atol, rtol=0), f"{got.tolist()} vs {want}"


# ----------------------------------------------------------------------------------------------- calibration
def test_calibration_psnr_is_rgb_no_crop(calibration):
    dist, ref, official, ours = calibration
    scores = build_metric({"type": "psnr", "y_channel": False})(dist, ref)
    _close(scores, ours["psnr(ours)"], atol=2e-4)  # the CSV has 4 decimals
    _close(scores, official["psnr"], atol=5e-3)  # 2 decimals
    _close(build_metric("psnr_rgb")(dist, ref), ours["psnr(ours)"], atol=2e-4)


def test_calibration_ssim_is_yiq_luma(calibration):
    dist, ref, official, ours = calibration
    scores = build_metric({"type": "ssim", "color_space": "yiq"})(dist, ref)
    _close(scores, ours["ssim(ours)"], atol=1e-4)
    _close(scores, official["ssim"], atol=5e-4)  # pyiqa's ReLU on cs_map: documented +4e-4


def test_calibration_niqe_from_basicsr_params(calibration, reference_dir, tmp_path, monkeypatch):
    dist, _, official, ours = calibration
    npz = reference_dir / "niqe" / "niqe_pris_params.npz"
    if not npz.is_file():
        pytest.skip(f"{npz} is absent")
    monkeypatch.setenv("ALIGNVAR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # empty cache: only the given params exist
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    niqe = build_metric({"type": "niqe", "niqe_params": str(npz)})
    scores = niqe(dist)
    _close(scores, ours["niqe(ours)"], atol=5e-3)  # BasicSR's params vs pyiqa's .mat: within 0.002
    assert torch.allclose(scores, torch.tensor(official["niqe"], dtype=torch.float64), rtol=6e-2)  # pyiqa tol
    assert len(list((tmp_path / "cache" / "niqe").glob("niqe_*.mat"))) == 1  # converted once, cached
    # the same params found as BasicSR's file name in a user weights folder
    (tmp_path / "weights").mkdir()
    os.symlink(npz, tmp_path / "weights" / "niqe_pris_params.npz")
    monkeypatch.setenv("ALIGNVAR_WEIGHTS_DIR", str(tmp_path / "weights"))
    single = build_metric("niqe")(dist[1])
    assert single.shape == (1,) and abs(single.item() - scores[1].item()) < 1e-9


# ----------------------------------------------------------------------------------------------- DRealSR
DREALSR_KEYS = ["Canon_10_x1", "DSC_1137_x1", "sony_80_x1"]


def test_drealsr_osediff_logged_psnr_ssim(drealsr_dir):
    pattern = re.compile(r"results_osediff/(\S+)\.png \| PSNR: ([\d.]+); SSIM: ([\d.]+)")
    logged = {
        m[1]: (float(m[2]), float(m[3])) for m in pattern.finditer((drealsr_dir / "osediff_metrics.log").read_text())
    }
    assert len(logged) == 93
    sr = torch.stack([load_image(drealsr_dir / "results_osediff" / f"{k}.png") for k in DREALSR_KEYS])
    hr = torch.stack([load_image(drealsr_dir / "test_HR" / f"{k}.png") for k in DREALSR_KEYS])
    psnr, ssim = build_metric("psnr")(sr, hr), build_metric("ssim")(sr, hr)  # defaults: Y of YCbCr, no crop
    _close(psnr, [logged[k][0] for k in DREALSR_KEYS], atol=1e-3)
    _close(ssim, [logged[k][1] for k in DREALSR_KEYS], atol=1e-3)


# ----------------------------------------------------------------------------------------------- closed forms
@pytest.fixture(scope="module")
def image_pair():
    img = torch.rand(2, 3, 24, 20, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    return img, img + 0.05


def test_psnr_of_constant_offset(image_pair):
    img, shifted = image_pair
    rgb = build_metric("psnr_rgb")(shifted, img)
    assert torch.allclose(rgb, torch.full((2,), -10 * math.log10(0.05**2 + 1e-8), dtype=torch.float64), atol=1e-3)
    # BT.601 luma: Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 moves by 0.05 * 219 / 255
    y = build_metric("psnr")(shifted, img)
    assert torch.allclose(
        y, torch.full((2,), -10 * math.log10((0.05 * 219 / 255) ** 2 + 1e-8), dtype=torch.float64), atol=1e-3
    )
    assert torch.equal(build_metric("psnr_y")(shifted, img), y)


def test_crop_border_ignores_the_border(image_pair):
    img, _ = image_pair
    framed = img.clone()
    framed[..., :4, :] = 0.0
    framed[..., :, -4:] = 1.0
    assert build_metric("psnr")(framed, img).max() < 40
    # identical after cropping: pyiqa's PSNR is 10 log10(1 / (0 + 1e-8)) = 80 dB
    cropped = build_metric({"type": "psnr", "crop_border": 4})(framed, img)
    assert torch.allclose(cropped, torch.full((2,), 80.0, dtype=torch.float64))
    assert torch.allclose(
        build_metric({"type": "ssim_y", "crop_border": 4})(framed, img), torch.ones(2, dtype=torch.float64)
    )


# ----------------------------------------------------------------------------------------------- API
def test_metric_info_for_every_registered_metric():
    infos = metric_infos()
    assert {
        "psnr",
        "ssim",
        "psnr_y",
        "ssim_y",
        "psnr_rgb",
        "ssim_rgb",
        "lpips",
        "dists",
        "niqe",
        "musiq",
    } <= set(infos)
    assert {"maniqa", "clipiqa", "fid"} <= set(infos)
    assert metric_info("psnr") == (False, True) and metric_info("lpips") == (True, True)
    assert metric_info("niqe") == (True, False) and metric_info("musiq") == (False, False)
    assert metric_info("fid") == (True, True) and infos["fid"].set_level
    with pytest.raises(KeyError, match="unknown metric 'psnrr'; valid choices: clipiqa, dists"):
        metric_info("psnrr")


def test_build_metric_labels_and_errors(image_pair):
    img, shifted = image_pair
    m = build_metric({"type": "psnr", "name": "psnr_y_crop4", "crop_border": 4})
    assert m.name == "psnr_y_crop4" and not m.lower_better and m.needs_reference and not m.set_level
    with pytest.raises(ConfigError, match=r"metrics.type: unknown metric 'psnrr'; valid choices: .*\bclipiqa, dists,"):
        build_metric("psnrr")  # (other test modules may have registered stand-ins sorted before 'clipiqa')
    with pytest.raises(ConfigError, match=r"color_space: invalid value 'lab'; valid choices: ycbcr, yiq"):
        build_metric({"type": "psnr", "color_space": "lab"})
    with pytest.raises(ValueError, match="metric 'psnr_y_crop4' is full-reference: it needs the HR image"):
        m(img, None)
    with pytest.raises(ValueError, match=r"SR \(2, 3, 24, 20\) and HR \(1, 3, 24, 20\) differ in shape"):
        m(img, img[:1])
    with pytest.raises(ValueError, match=r"sr values must be in \[0, 1\], got \[0.4[0-9]*, 1.25\]"):
        m(shifted + 0.3, img)
    assert m(img[0], img[0]).shape == (1,)  # (3, H, W) accepted as a batch of one
    bad = img.clone()
    bad[1, 2, 3, 4] = float("nan")
    with pytest.raises(ValueError, match=r"sr values must be in \[0, 1\], got \[nan, nan\]"):
        m(bad, img)


def test_metric_inputs_in_range_pass_uncopied_and_rounding_excursions_are_clamped(image_pair):
    img, _ = image_pair
    m = build_metric({"type": "psnr", "device": "cpu"})
    assert m._check(img, "sr") is img  # float32 in [0, 1] on the metric's device: no copy (metric-stage cost)
    nudged = img.clone()
    nudged[0, 0, 0, 0], nudged[0, 0, 0, 1] = -5e-5, 1 + 5e-5  # within the 1e-4 rounding allowance
    out = m._check(nudged, "sr")
    assert out is not nudged and float(out.min()) == 0.0 and float(out.max()) == 1.0
    assert torch.equal(out[0, 0, 1:], img[0, 0, 1:]) and float(nudged[0, 0, 0, 0]) < 0  # input untouched


# ------------------------------------------------------------------------------------------- offline weights
@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("ALIGNVAR_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def must_not_create(*args, **kwargs):
        raise AssertionError("pyiqa.create_metric must not be reached when weights are missing")

    monkeypatch.setattr(backend, "create", must_not_create)
    return home


def test_lpips_without_weights_raises_exact_message(empty_torch_home):
    with pytest.raises(MissingWeightsError) as err:
        build_metric("lpips")
    home = empty_torch_home
    assert str(err.value) == (
        "metric 'lpips' needs 2 weight file(s) that are not available locally (downloads are disabled):\n"
        "  alexnet-owt-7be5be79.pth  (torchvision AlexNet, ImageNet; "
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth)\n"
        f"    searched: {home}/hub/checkpoints\n"
        f"    fix: copy alexnet-owt-7be5be79.pth into {home}/hub/checkpoints\n"
        "  LPIPS_v0.1_alex-df73285e.pth  (LPIPS v0.1 linear layers (alex); "
        "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/LPIPS_v0.1_alex-df73285e.pth)\n"
        f"    searched: {home}/hub/pyiqa\n"
        f"    fix: copy LPIPS_v0.1_alex-df73285e.pth into {home}/hub/pyiqa\n"
        "or put all files in one folder and set ALIGNVAR_WEIGHTS_DIR=/that/folder "
        "(or pass --weights-dir, or the metric option weights_dir)\n"
        "or leave offline mode (--offline / ALIGNVAR_OFFLINE=1 / HF_HUB_OFFLINE=1): pyiqa then downloads them "
        "into these caches"
    )


def test_weights_dir_is_searched_first_and_clip_checksum_enforced(empty_torch_home, tmp_path):
    wdir = tmp_path / "w"
    wdir.mkdir()
    (wdir / "RN50.pt").write_bytes(b"not the OpenAI file")
    with pytest.raises(MissingWeightsError) as err:
        build_metric({"type": "clipiqa", "weights_dir": str(wdir)})
    msg = str(err.value)
    assert f"    searched: {wdir}, {empty_torch_home}/hub/clip\n" in msg
    assert f"    note: {wdir}/RN50.pt exists but its SHA256 is not afeb0e10f9e5a86da6080e35cf09123a" in msg
    assert f"    fix: copy RN50.pt into {wdir}\n" in msg
    for name, missing in [
        ("dists", "DISTS_weights-f5e65c96.pth"),
        ("fid", "pt_inception-2015-12-05-6726825d.pth"),
    ]:
        with pytest.raises(MissingWeightsError, match=re.escape(missing)):
            build_metric(name)
    with pytest.raises(MissingWeightsError, match="ckpt_koniq10k.pt"):
        build_metric("maniqa")
    with pytest.raises(MissingWeightsError, match="MANIQA_PIPAL-ae6d356b.pth"):
        build_metric({"type": "maniqa", "variant": "pipal"})
    with pytest.raises(MissingWeightsError, match="niqe_modelparameters.mat.*\n.*\n.*\n.*niqe_pris_params.npz"):
        build_metric("niqe")


class _CodeInPickle:
    def __reduce__(self):
        return (exec, ("import builtins; builtins._alignvar_pwned = True",))


def test_weights_load_offline_from_weights_dir_and_only_as_tensors(tmp_path, monkeypatch):
    """MUSIQ with *fake* (randomly initialised) weights: exercises staging, not scores. Never reported."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    backend.import_pyiqa()
    from pyiqa.archs.musiq_arch import MUSIQ

    fname = "musiq_koniq_ckpt-e95806b9.pth"
    (tmp_path / "w").mkdir()
    torch.save(MUSIQ(pretrained=False).state_dict(), tmp_path / "w" / fname)
    musiq = build_metric({"type": "musiq", "weights_dir": str(tmp_path / "w")})
    score = musiq(torch.rand(1, 3, 32, 32))
    assert score.shape == (1,) and torch.isfinite(score).all()
    assert torch.hub.get_dir() == str(tmp_path / "torch_home" / "hub")  # staging undone
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ
    assert not (tmp_path / "torch_home").exists()  # nothing downloaded or written into the cache

    (tmp_path / "evil").mkdir()
    torch.save({"x": _CodeInPickle()}, tmp_path / "evil" / fname)
    with pytest.raises(RuntimeError, match=r"refusing to load .*musiq_koniq_ckpt-e95806b9.pth: it is not a plain"):
        build_metric({"type": "musiq", "weights_dir": str(tmp_path / "evil")})
    assert not getattr(builtins, "_alignvar_pwned", False)
