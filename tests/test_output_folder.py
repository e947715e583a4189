"""Output-folder adapter: missing/extra/wrong-size files, templates, timings, OSEDiff's published scores."""

from __future__ import annotations

import re

import pytest
import torch

from harness.core.imageio import load_image, save_image
from harness.core.mapping import ConfigError
from harness.core.registry import create
from methods.adapters.output_files import MissingOutputError, OutputFolderError
from methods.adapters.output_folder import OutputFolderMethod


def _write(folder, name: str, h: int, w: int, value: float = 0.5) -> None:
    save_image(torch.full((3, h, w), value), folder / name)


@pytest.fixture
def folder(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    _write(out, "a.png", 32, 32, 0.2)
    _write(out, "b.jpg", 32, 32, 0.6)
    _write(out, "c.png", 32, 32, 0.8)
    return out


def _method(path, **options) -> OutputFolderMethod:
    return create("methods", "output_folder", {"path": str(path), **options})


def test_loads_outputs_by_key_any_extension(folder, caplog):
    method = _method(folder)
    assert method.precomputed and method.scale == 4
    sr = method.upscale(torch.zeros(2, 3, 8, 8), ["c", "b"])
    assert sr.shape == (2, 3, 32, 32)
    assert sr[0].mean().item() == pytest.approx(round(0.8 * 255) / 255, abs=1e-6)
    assert sr[1].mean().item() == pytest.approx(0.6, abs=0.02)  # JPEG
    assert method.check(["a", "b", "c"]) == []
    assert _warned(caplog) == []


def test_missing_outputs_strict_error(folder, caplog):
    method = _method(folder)
    keys = ["a", "x2", "x1"]
    assert method.check(keys) == [f"{folder}: no output for 2 of 3 images (<key>.<png|jpg|...>): x1, x2"]
    assert _warned(caplog) == [f"{folder}: 2 files match no LR image and are ignored: b.jpg, c.png"]
    with pytest.raises(MissingOutputError) as err:
        method.upscale(torch.zeros(3, 3, 8, 8), keys)
    assert str(err.value) == f"{folder}: no output for 2 of 3 images (<key>.<png|jpg|...>): x1, x2"
    assert err.value.keys == ["x2", "x1"]


def test_missing_outputs_not_strict_warns_and_skips(folder, caplog):
    method = _method(folder, strict=False)
    assert method.check(["a", "b", "c", "z"]) == []
    assert _warned(caplog) == [
        f"{folder}: no output for 1 of 4 images (<key>.<png|jpg|...>): z; skipping them (strict: false)"
    ]
    assert method.available(["a", "z", "c"]) == ["a", "c"]


def test_extra_files_warn_listing_them(folder, caplog):
    method = _method(folder)
    assert method.check(["b"]) == []
    assert _warned(caplog) == [f"{folder}: 2 files match no LR image and are ignored: a.png, c.png"]


def test_many_names_are_truncated(tmp_path):
    method = _method(tmp_path)
    keys = [f"k{i:02d}" for i in range(13)]
    assert method.check(keys) == [
        f"{tmp_path}: no output for 13 of 13 images (<key>.<png|jpg|...>): "
        "k00, k01, k02, k03, k04, k05, k06, k07, k08, k09, ... and 3 more"
    ]


def test_wrong_size_is_an_error_naming_file_and_sizes(folder):
    _write(folder, "d.png", 30, 32)
    method = _method(folder)
    with pytest.raises(OutputFolderError) as err:
        method.upscale(torch.zeros(2, 3, 8, 8), ["a", "d"])
    assert str(err.value) == f"{folder / 'd.png'}: size 32x30 but expected 32x32 (LR 8x8 x4)"
    assert method.output_size("d") == (32, 30)


def test_filename_template_and_suffix(tmp_path, caplog):
    _write(tmp_path, "out_a_x4_SR.png", 16, 24)
    method = _method(tmp_path, filename_tmpl="out_{}_x4", suffix="_SR", scale=2)
    assert method.upscale(torch.zeros(1, 3, 8, 12), ["a"]).shape == (1, 3, 16, 24)
    problems = method.check(["b"])
    assert _warned(caplog) == [f"{tmp_path}: 1 files match no LR image and are ignored: out_a_x4_SR.png"]
    assert problems == [f"{tmp_path}: no output for 1 of 1 images (out_<key>_x4_SR.<png|jpg|...>): b"]


def test_ambiguous_and_missing_folder(tmp_path):
    with pytest.raises(OutputFolderError) as err:
        _method(tmp_path / "nope")
    assert str(err.value) == f"{tmp_path / 'nope'}: output folder not found"
    _write(tmp_path, "a.png", 8, 8)
    _write(tmp_path, "a.jpg", 8, 8)
    with pytest.raises(OutputFolderError) as err:
        _method(tmp_path)
    assert str(err.value) == f"{tmp_path}: ambiguous outputs a.jpg and a.png for one image"


def test_config_validation(tmp_path):
    with pytest.raises(ConfigError) as err:
        create("methods", "output_folder", {"path": str(tmp_path), "filename_tmpl": "{}_{}"})
    assert str(err.value) == (
        "<config>: methods.output_folder: filename_tmpl must contain '{}' exactly once, got '{}_{}'"
    )


def test_reported_latency_from_timings_csv(folder, tmp_path):
    csv = tmp_path / "timings.csv"
    csv.write_text("image,seconds\na.png,0.25\nb,1.5\nc.png,0.5\n")
    method = _method(folder, timings_csv=str(csv))
    assert method.reported_latency("a") == 0.25
    assert method.reported_latency("b") == 1.5
    assert method.reported_latency("zz") is None
    assert method.reported_latencies() == {"a": 0.25, "b": 1.5, "c": 0.5}
    assert _method(folder).reported_latency("a") is None

    bad = tmp_path / "bad.csv"
    bad.write_text("image,seconds\na.png,fast\n")
    with pytest.raises(OutputFolderError) as err:
        _method(folder, timings_csv=str(bad))
    assert str(err.value) == f"{bad}: line 2: seconds 'fast' is not a number"
    bad.write_text("name,time\na.png,1\n")
    with pytest.raises(OutputFolderError) as err:
        _method(folder, timings_csv=str(bad))
    assert str(err.value) == f"{bad}: expected columns 'image' and 'seconds', found name, time"


# ----------------------------------------------------------------------------------------------- real data
def _published(log_text: str) -> dict[str, tuple[float, float]]:
    pattern = re.compile(r"results_osediff/(\S+)\.png \| PSNR: ([\d.]+); SSIM: ([\d.]+)")
    return {m[1]: (float(m[2]), float(m[3])) for m in pattern.finditer(log_text)}


def test_osediff_folder_reproduces_published_psnr_ssim(drealsr_dir, caplog):
    """OSEDiff's DRealSR outputs scored by the harness metrics (Y of YCbCr, no crop) match its own log."""
    published = _published((drealsr_dir / "osediff_metrics.log").read_text())
    assert len(published) == 93
    keys = sorted(published)[:10]
    method = _method(drealsr_dir / "results_osediff")
    assert method.check(keys) == []
    assert "83 files match no LR image and are ignored" in _warned(caplog)[0]
    lr = torch.stack([load_image(drealsr_dir / "test_LR" / f"{k}.png") for k in keys])
    hr = torch.stack([load_image(drealsr_dir / "test_HR" / f"{k}.png") for k in keys])
    sr = method.upscale(lr, keys)
    assert sr.shape == hr.shape == (10, 3, 512, 512)

    psnr = create("metrics", "psnr", {"y_channel": True, "crop_border": 0, "device": "cpu"})
    ssim = create("metrics", "ssim", {"y_channel": True, "crop_border": 0, "device": "cpu"})
    got_psnr, got_ssim = psnr(sr, hr).tolist(), ssim(sr, hr).tolist()
    for key, p, s in zip(keys, got_psnr, got_ssim):
        assert p == pytest.approx(published[key][0], abs=1e-3), key
        assert s == pytest.approx(published[key][1], abs=1e-3), key

    # Interpolation runs on the same LR batch. Measured on these 10 images: bicubic (MATLAB kernel) 32.08 dB
    # mean PSNR-Y vs OSEDiff 29.03 dB, the usual perception-distortion gap of a generative method.
    up = create("methods", "bicubic", {"scale": 4}).upscale(lr, keys)
    assert up.shape == sr.shape
    bicubic_psnr = psnr(up, hr).mean().item()
    assert bicubic_psnr > sum(got_psnr) / len(got_psnr) + 2.0


def _warned(caplog) -> list[str]:
    """The warnings logged in this test (logged, not Python warnings: no source line on the terminal)."""
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
