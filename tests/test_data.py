"""Datasets (paired / single / bundled), image modes, and the bicubic degradation."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.core.imageio import ImageError, load_image, quantize_8bit
from harness.core.mapping import ConfigError
from harness.core.registry import create
from harness.data import bundled as bundled_mod
from harness.data.datasets import SRDataset
from harness.data.degradations.base import Degradation, make_generator
from harness.data.degradations.bicubic import BicubicConfig, BicubicDegradation, downsample_bicubic, imresize
from harness.data.pairing import DatasetError


# ----------------------------------------------------------------------------------------------- helpers
def _write(path: Path, h: int, w: int, seed: int = 0) -> np.ndarray:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def _pairs(root: Path, stems: list[str], lr_hw=(8, 8), hr_hw=(32, 32), lr="LR", hr="HR") -> None:
    for i, stem in enumerate(stems):
        _write(root / lr / f"{stem}.png", *lr_hw, seed=i)
        _write(root / hr / f"{stem}.png", *hr_hw, seed=100 + i)


def paired(**options) -> SRDataset:
    return create("datasets", "paired", options)


# ----------------------------------------------------------------------------------------------- paired
def test_paired_pairs_by_stem_and_loads_lazily(tmp_path):
    _pairs(tmp_path, ["b", "a", "c"])
    ds = paired(lr_dir=str(tmp_path / "LR"), hr_dir=str(tmp_path / "HR"))
    assert ds.keys == ["a", "b", "c"] and len(ds) == 3 and ds.has_reference and ds.scale == 4
    s = ds[1]
    assert s.key == "b" and s.lr.shape == (3, 8, 8) and s.hr.shape == (3, 32, 32)
    assert s.lr.dtype == torch.float32 and s.lr_path == tmp_path / "LR" / "b.png"
    expected = np.array(Image.open(tmp_path / "HR" / "b.png"))
    assert torch.equal(s.hr, torch.from_numpy(expected).permute(2, 0, 1).float() / 255)
    assert ds.path_of("c") == (tmp_path / "LR" / "c.png", tmp_path / "HR" / "c.png")


def test_paired_relative_to_root_and_filename_tmpl(tmp_path):
    _write(tmp_path / "X4" / "0801x4.png", 8, 8)
    _write(tmp_path / "GT" / "0801.png", 32, 32)
    ds = paired(root=str(tmp_path), lr_dir="X4", hr_dir="GT", filename_tmpl="{}x4")
    assert ds.keys == ["0801"] and ds.path_of("0801")[0].name == "0801x4.png"


def test_missing_partner_lists_unpaired_stems(tmp_path):
    _pairs(tmp_path, ["a", "b"])
    _write(tmp_path / "HR" / "only_hr.png", 32, 32)
    _write(tmp_path / "LR" / "only_lr.png", 8, 8)
    with pytest.raises(DatasetError) as err:
        paired(lr_dir=str(tmp_path / "LR"), hr_dir=str(tmp_path / "HR"))
    msg = str(err.value)
    assert "HR images without an LR partner: only_hr" in msg
    assert "LR images without an HR partner: only_lr" in msg
    assert "on_missing: skip" in msg


def test_missing_partner_skip_warns(tmp_path, caplog):
    _pairs(tmp_path, ["a", "b"])
    _write(tmp_path / "HR" / "only_hr.png", 32, 32)
    ds = paired(lr_dir=str(tmp_path / "LR"), hr_dir=str(tmp_path / "HR"), on_missing="skip")
    assert ds.keys == ["a", "b"]
    (record,) = caplog.records  # a logged warning, not a Python warning (no source line on the terminal)
    assert record.levelname == "WARNING" and "HR images without an LR partner: only_hr" in record.getMessage()


def test_size_not_divisible_names_both_files(tmp_path):
    _pairs(tmp_path, ["a"], lr_hw=(8, 8), hr_hw=(34, 33))
    with pytest.raises(DatasetError) as err:
        paired(lr_dir=str(tmp_path / "LR"), hr_dir=str(tmp_path / "HR"))
    msg = str(err.value)
    assert f"HR {tmp_path / 'HR' / 'a.png'} (33x34)" in msg
    assert f"LR {tmp_path / 'LR' / 'a.png'} (8x8) x4 = 32x32" in msg
    assert "not divisible by 4; set mod_crop: true" in msg


def test_wrong_scale_is_an_error_even_with_mod_crop(tmp_path):
    _pairs(tmp_path, ["a"], lr_hw=(8, 8), hr_hw=(16, 16))
    with pytest.raises(DatasetError, match=r"\(16x16\) does not match LR .* x4 = 32x32; check scale"):
        paired(lr_dir=str(tmp_path / "LR"), hr_dir=str(tmp_path / "HR"), mod_crop=True)


def test_mod_crop_crops_hr_top_left(tmp_path):
    _write(tmp_path / "LR" / "a.png", 8, 8)
    full = _write(tmp_path / "HR" / "a.png", 35, 33)
    ds = paired(lr_dir=str(tmp_path / "LR"), hr_dir=str(tmp_path / "HR"), mod_crop=True)
    hr = ds[0].hr
    assert hr.shape == (3, 32, 32)
    assert torch.equal(hr, torch.from_numpy(full[:32, :32].copy()).permute(2, 0, 1).float() / 255)


@pytest.mark.parametrize("lr, hr", [("test_LR", "test_HR"), ("lq", "gt"), ("LR", "HR")])
def test_layout_autodetect(tmp_path, lr, hr):
    _pairs(tmp_path / "MySet", ["x", "y"], lr=lr, hr=hr)
    ds = paired(root=str(tmp_path / "MySet"))
    assert ds.keys == ["x", "y"] and ds.name == "MySet"
    assert ds.path_of("x")[0].parent.name == lr


def test_layout_autodetect_failure_lists_layouts(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError) as err:
        paired(root=str(tmp_path))
    assert str(err.value) == (
        f"{tmp_path}: no known LR/HR subfolders (tried test_LR/test_HR, lq/gt, LR/HR; found images); "
        "set lr_dir and hr_dir explicitly"
    )


def test_missing_folder_says_where_to_put_images(tmp_path):
    (tmp_path / "HR").mkdir()
    with pytest.raises(DatasetError) as err:
        paired(lr_dir=str(tmp_path / "LR"), hr_dir=str(tmp_path / "HR"))
    assert str(err.value) == f"{tmp_path / 'LR'}: LR folder not found; put the LR images in {tmp_path / 'LR'}"


def test_paired_config_errors_are_config_errors():
    with pytest.raises(ConfigError, match="give root"):
        paired(lr_dir="x")
    with pytest.raises(ConfigError, match=r"filename_tmpl must contain '\{\}'"):
        paired(root="x", filename_tmpl="x4")
    with pytest.raises(ConfigError, match="on_missing: invalid value 'ignore'; valid choices: error, skip"):
        paired(root="x", on_missing="ignore")


def test_duplicate_stems_are_refused(tmp_path):
    _pairs(tmp_path, ["a"])
    _write(tmp_path / "LR" / "a.jpg", 8, 8)
    with pytest.raises(DatasetError, match="share a file stem: a.jpg / a.png"):
        paired(lr_dir=str(tmp_path / "LR"), hr_dir=str(tmp_path / "HR"))


def test_drealsr_real_layout(drealsr_dir):
    ds = paired(root=str(drealsr_dir))
    assert len(ds) == 93 and ds.name == "drealsr"
    s = ds[0]
    assert s.lr.shape == (3, 128, 128) and s.hr.shape == (3, 512, 512)


# ------------------------------------------------------------------------------------------ corrupt / single
def test_corrupt_file_raises_image_error_on_load_and_can_be_skipped(tmp_path, caplog):
    _pairs(tmp_path, ["a", "b"])
    (tmp_path / "LR" / "b.png").write_bytes(b"not a png at all")
    ds = paired(lr_dir=str(tmp_path / "LR"), hr_dir=str(tmp_path / "HR"))  # headers are not fatal here
    with pytest.raises(ImageError, match=re.escape(str(tmp_path / "LR" / "b.png"))):
        ds[1]
    keys = [s.key for s in ds.samples(on_corrupt="skip")]
    assert keys == ["a"]
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"][-1].startswith(
        f"dataset {tmp_path.name!r}: skipping b: {tmp_path / 'LR' / 'b.png'}: cannot decode image"
    )
    with pytest.raises(ImageError):
        list(ds.samples())


def test_single_dataset(tmp_path):
    _write(tmp_path / "in" / "p.png", 10, 12)
    _write(tmp_path / "in" / "q.jpg", 6, 6)
    (tmp_path / "in" / "notes.txt").write_text("ignored")
    ds = create("datasets", "single", {"lr_dir": str(tmp_path / "in"), "scale": 2})
    assert ds.keys == ["p", "q"] and not ds.has_reference and ds.scale == 2 and ds.name == "in"
    s = ds[0]
    assert s.hr is None and s.hr_path is None and s.lr.shape == (3, 10, 12)
    assert ds.path_of("q") == (tmp_path / "in" / "q.jpg", None)


# ----------------------------------------------------------------------------------------------- image modes
def test_image_modes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    gray = rgb[:, :, 0]
    Image.fromarray(gray, "L").save(tmp_path / "l.png")
    t = load_image(tmp_path / "l.png")
    assert t.shape == (3, 5, 7) and torch.equal(t[0], t[2]) and torch.equal(t[1] * 255, torch.from_numpy(gray).float())

    rgba = np.concatenate([rgb, np.full((5, 7, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert torch.equal(load_image(tmp_path / "rgba.png") * 255, torch.from_numpy(rgb).permute(2, 0, 1).float())

    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(tmp_path / "p.png")
    t = load_image(tmp_path / "p.png")
    assert t.shape == (3, 5, 7) and len(torch.unique(t.reshape(3, -1), dim=1).T) <= 4

    g16 = (np.arange(35, dtype=np.uint16).reshape(5, 7) * 1800).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    t = load_image(tmp_path / "g16.png")
    assert torch.allclose(t[1], torch.from_numpy(g16 / 65535.0).float(), atol=1e-7)

    import cv2

    c16 = np.random.default_rng(1).integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), c16)  # BGR on disk
    t = load_image(tmp_path / "rgb16.png")
    assert torch.allclose(t, torch.from_numpy(c16[:, :, ::-1] / 65535.0).permute(2, 0, 1).float(), atol=1e-7)

    Image.fromarray(np.zeros((4, 4), np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(ImageError, match=r"f\.tif: 32-bit float images \(PIL mode 'F'\) are not supported"):
        load_image(tmp_path / "f.tif")

    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageError, match=re.escape(f"{tmp_path / 'bad.png'}: cannot decode image")):
        load_image(tmp_path / "bad.png")


# ----------------------------------------------------------------------------------------------- bicubic
def test_bicubic_exact_size_quantised_and_deterministic():
    hr = torch.rand(2, 3, 48, 36, generator=make_generator(1))
    deg = create("degradations", "bicubic", {"scale": 4})
    assert isinstance(deg, Degradation)
    a, b = deg(hr, make_generator(5)), deg(hr, make_generator(6))
    assert a.shape == (2, 3, 12, 9) and torch.equal(a, b)  # deterministic, seed-independent
    assert torch.equal(a * 255, (a * 255).round()) and a.min() >= 0 and a.max() <= 1
    raw = BicubicDegradation(BicubicConfig(quantize=False))(hr, make_generator(0))
    assert torch.equal(quantize_8bit(raw), a)
    with pytest.raises(ValueError, match="HR size 50x36 is not divisible by scale 4"):
        deg(torch.rand(1, 3, 50, 36))


def test_bicubic_matlab_closed_form_and_torch_agreement():
    # a linear ramp is reproduced exactly away from the borders: output j sits at input 4j + 1.5
    ramp = torch.arange(64, dtype=torch.float64).expand(1, 1, 8, 64)
    out = imresize(ramp, (2, 16))[0, 0, 0]
    assert torch.allclose(out[2:-2], torch.arange(2, 14, dtype=torch.float64) * 4 + 1.5, atol=1e-12)
    # constant stays constant, mirrored borders included
    assert torch.equal(
        imresize(torch.full((1, 3, 40, 24), 0.25, dtype=torch.float64), (10, 6)),
        torch.full((1, 3, 10, 6), 0.25, dtype=torch.float64),
    )
    # PyTorch's antialiased bicubic is the same kernel; only the borders differ
    x = torch.rand(1, 3, 64, 64, generator=make_generator(0))
    m, t = downsample_bicubic(x, 4, "matlab"), downsample_bicubic(x, 4, "torch")
    assert (m - t)[..., 2:-2, 2:-2].abs().max() < 1e-5
    assert (m - t).abs().max() > 1e-3


# ----------------------------------------------------------------------------------------------- bundled
def test_bundled_generation_and_cache_reuse(tmp_path, monkeypatch):
    opts = {"cache_dir": str(tmp_path), "count": 2, "hr_size": 64, "images": ["astronaut", "tid2013_I04"]}
    ds = create("datasets", "bundled", opts)
    assert ds.generated and ds.keys == ["astronaut", "tid2013_I04"] and ds.has_reference
    s = ds[0]
    assert s.hr.shape == (3, 64, 64) and s.lr.shape == (3, 16, 16)
    expected_lr = quantize_8bit(downsample_bicubic(s.hr[None], 4, "matlab"))[0]
    assert torch.equal(s.lr, expected_lr)  # 8-bit values survive the PNG round trip exactly

    def no_generation(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr("harness.core.registry.create", no_generation)
    again = bundled_mod.ensure_bundled(
        bundled_mod.resolve_images(["astronaut", "tid2013_I04"], 2), 64, 4, "bicubic", {}, 0, tmp_path
    )
    assert not again.generated and again.root == ds.cache_path
    monkeypatch.undo()
    ds2 = create("datasets", "bundled", opts)
    assert not ds2.generated and torch.equal(ds2[1].lr, ds[1].lr)
    ds3 = create("datasets", "bundled", {**opts, "seed": 1, "degradation_options": {"kernel": "torch"}})
    assert ds3.generated and ds3.cache_path != ds.cache_path


def test_bundled_default_set_and_errors(tmp_path, monkeypatch):
    avail = bundled_mod.available_images()
    assert {"astronaut", "coffee", "chelsea", "rocket", "motorcycle"} <= set(avail)
    assert {f"tid2013_{r}" for r in ("I03", "I04", "I06", "I08", "I19")} <= set(avail)
    monkeypatch.setenv("ALIGNVAR_CACHE", str(tmp_path / "c"))
    assert bundled_mod.default_cache_root() == tmp_path / "c"
    with pytest.raises(bundled_mod.BundledError, match="bundled images not available: lena; valid choices"):
        bundled_mod.resolve_images(["lena"], None)
    with pytest.raises(ConfigError, match="hr_size=250 must be a positive multiple of scale=4"):
        create("datasets", "bundled", {"hr_size": 250})
    with pytest.raises(bundled_mod.BundledError, match="degradation_options.scale=2 disagrees with scale=4"):
        create(
            "datasets",
            "bundled",
            {"cache_dir": str(tmp_path), "count": 1, "degradation_options": {"scale": 2}},
        )
    with pytest.raises(bundled_mod.BundledError, match="is smaller than hr_size=1024"):
        bundled_mod.hr_tile(torch.zeros(3, 300, 451), 1024, "chelsea")


def test_hr_tile_resizes_short_side_then_centre_crops():
    img = torch.zeros(3, 200, 400)
    img[:, :, 150:250] = 1.0  # a bright vertical band in the middle
    tile = bundled_mod.hr_tile(img, 100)
    assert tile.shape == (3, 100, 100)
    # short side 200 -> 100, width 400 -> 200 (band 75..125); the centre crop keeps columns 50..150
    assert tile[0, 50, 10].item() == 0.0 and tile[0, 50, 50].item() == 1.0 and tile[0, 50, 90].item() == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(bundled_mod.hr_tile(torch.full((3, 64, 80), 0.5), 64), torch.full((3, 64, 64), 128 / 255))
