"""Spandrel adapter + tiling: tiny checkpoints with the real key layouts and random weights (no downloads).

Random weights: these tests check loading, shapes and tiled/untiled equivalence only, never quality.
"""

from __future__ import annotations

import re
import warnings
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.SwinIR import SwinIR

from harness.core.mapping import ConfigError
from harness.core.registry import create
from harness.core.tiling import blend_profile, tile_starts, tiled_upscale
from methods.adapters.spandrel import PRESETS, CheckpointError, SpandrelMethod

NUM_FEAT, NUM_BLOCK = 8, 1
# LR receptive-field radius of that RRDBNet: conv_first 1 + 3 RDBs x 5 convs + trunk conv 1 = 17 LR px, plus
# the four 3x3 convs at 2x/4x resolution (1/2 + 3 x 1/4 px, rounded up) = 19.
RRDB_RADIUS = 19


# ----------------------------------------------------------------------------------------------- fixtures
def _rrdb(scale: int = 4) -> ESRGAN:
    torch.manual_seed(0)
    return ESRGAN(in_nc=3, out_nc=3, num_filters=NUM_FEAT, num_blocks=NUM_BLOCK, scale=scale).eval()


def _old_to_new(sd: dict, layout: str) -> OrderedDict:
    """spandrel's old-arch RRDBNet keys -> Real-ESRGAN (BasicSR) or BSRGAN (KAIR) key layout."""
    body, rdb, trunk, up, hr = (
        ("body", "rdb", "conv_body", "conv_up", "conv_hr")
        if layout == "realesrgan"
        else ("RRDB_trunk", "RDB", "trunk_conv", "upconv", "HRconv")
    )
    last = max(int(k.split(".")[1]) for k in sd)
    out = OrderedDict()
    for key, value in sd.items():
        parts = key.split(".")
        idx = int(parts[1])
        kind = parts[-1]
        if idx == 0:
            out[f"conv_first.{kind}"] = value
        elif idx == 1:
            m = re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)", key)
            if m:
                b, r, c, kind = m.groups()
                out[f"{body}.{b}.{rdb}{r}.conv{c}.{kind}"] = value
            else:
                out[f"{trunk}.{kind}"] = value
        elif idx == last:
            out[f"conv_last.{kind}"] = value
        elif idx == last - 2:
            out[f"{hr}.{kind}"] = value
        else:
            out[f"{up}{idx // 3}.{kind}"] = value
    assert len(out) == len(sd)
    return out


@pytest.fixture(scope="module")
def rrdb() -> ESRGAN:
    return _rrdb()


@pytest.fixture(scope="module")
def realesrgan_files(tmp_path_factory, rrdb):
    """Real-ESRGAN x4plus layout: BasicSR keys inside 'params_ema' (.pth), and flat (.safetensors)."""
    folder = tmp_path_factory.mktemp("realesrgan")
    sd = _old_to_new(rrdb.state_dict(), "realesrgan")
    assert "body.0.rdb1.conv1.weight" in sd and "conv_up2.weight" in sd and "conv_hr.weight" in sd
    pth, st = folder / "RealESRGAN_tiny_x4.pth", folder / "RealESRGAN_tiny_x4.safetensors"
    torch.save({"params_ema": sd}, pth)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(st))
    return pth, st


@pytest.fixture(scope="module")
def swinir_model() -> SwinIR:
    torch.manual_seed(0)
    return SwinIR(
        upscale=4,
        in_chans=3,
        img_size=32,
        window_size=8,
        img_range=1.0,
        depths=[2],
        embed_dim=12,
        num_heads=[2],
        mlp_ratio=2,
        upsampler="pixelshuffle",
        resi_connection="1conv",
    ).eval()


@pytest.fixture(scope="module")
def swinir_file(tmp_path_factory, swinir_model):
    path = tmp_path_factory.mktemp("swinir") / "SwinIR_tiny_x4.pth"
    torch.save({"params_ema": swinir_model.state_dict()}, path)  # official SwinIR release layout
    return path


def _lr(h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------- loading
def test_realesrgan_pth_and_safetensors_load_the_same_weights(realesrgan_files, rrdb):
    pth, st = realesrgan_files
    lr = _lr(24, 20)
    with torch.no_grad():
        reference = rrdb(lr).clamp(0, 1)
    outs = []
    for path in (pth, st):
        method = create("methods", "realesrgan", {"checkpoint": str(path)})
        assert isinstance(method, SpandrelMethod)
        assert (method.architecture, method.scale, method.inference_steps) == ("ESRGAN", 4, 1)
        assert method.info()["tags"] == ["8nf", "1nb"]
        out = method.upscale(lr, ["a"])
        assert out.shape == (1, 3, 96, 80) and out.dtype == torch.float32
        outs.append(out)
    torch.testing.assert_close(outs[0], reference, rtol=0, atol=1e-6)
    torch.testing.assert_close(outs[1], reference, rtol=0, atol=1e-6)


def test_bsrgan_layout_x2_and_expected_scale(tmp_path):
    model = _rrdb(scale=2)
    sd = _old_to_new(model.state_dict(), "bsrgan")
    assert "RRDB_trunk.0.RDB1.conv1.weight" in sd and "HRconv.weight" in sd and "upconv1.weight" in sd
    path = tmp_path / "BSRGANx2_tiny.pth"
    torch.save(sd, path)
    method = create("methods", "bsrgan", {"checkpoint": str(path), "expected_scale": 2})
    assert method.scale == 2
    lr = _lr(10, 14)
    with torch.no_grad():
        torch.testing.assert_close(method.upscale(lr, ["a"]), model(lr).clamp(0, 1), rtol=0, atol=1e-6)
    with pytest.raises(CheckpointError) as err:
        create("methods", "bsrgan", {"checkpoint": str(path), "expected_scale": 4})
    assert str(err.value) == f"{path}: expected a x4 model, but the checkpoint is x2 (ESRGAN)"


def test_pixel_unshuffle_x2_pads_to_multiple_of_4(tmp_path):
    """Real-ESRGAN x2plus layout (pixel-unshuffle, 12 input channels): spandrel says x2, multiple_of 4."""
    torch.manual_seed(0)
    model = ESRGAN(in_nc=12, out_nc=3, num_filters=NUM_FEAT, num_blocks=NUM_BLOCK, scale=4, shuffle_factor=2)
    path = tmp_path / "RealESRGAN_tiny_x2plus.pth"
    torch.save({"params_ema": _old_to_new(model.eval().state_dict(), "realesrgan")}, path)
    method = create(
        "methods", "realesrgan", {"checkpoint": str(path), "expected_scale": 2, "tile": 30, "tile_overlap": 8}
    )
    assert method.scale == 2 and "unshuffle" in method.info()["tags"]
    assert method.info()["size_requirements"] == {"minimum": 4, "multiple_of": 4, "square": False}
    assert method.tile == 28  # rounded down to the multiple
    lr = _lr(10, 13)
    padded = F.pad(lr, (0, 3, 0, 2), mode="reflect")  # to 12 x 16, as spandrel pads
    with torch.no_grad():
        reference = model(padded)[..., :20, :26].clamp(0, 1)
    torch.testing.assert_close(method.upscale(lr, ["a"]), reference, rtol=0, atol=1e-6)


@pytest.mark.filterwarnings("ignore:torch.meshgrid")
def test_swinir_odd_and_tiny_inputs(swinir_file, swinir_model):
    method = create("methods", "swinir", {"checkpoint": str(swinir_file)})
    assert (method.architecture, method.scale) == ("SwinIR", 4)
    assert method.info()["size_requirements"] == {"minimum": 16, "multiple_of": 1, "square": False}
    lr = _lr(21, 19)  # not a multiple of the window (8): SwinIR pads internally, output cropped
    with torch.no_grad():
        torch.testing.assert_close(method.upscale(lr, ["a"]), swinir_model(lr).clamp(0, 1), rtol=0, atol=1e-5)
    small = method.upscale(_lr(13, 11), ["a"])  # below spandrel's minimum 16: padded, then cropped
    assert small.shape == (1, 3, 52, 44)
    batch = method.upscale(torch.cat([_lr(17, 23, 2), _lr(17, 23, 3)]), ["a", "b"])
    assert batch.shape == (2, 3, 68, 92)


def test_wrong_preset_is_an_exact_error(realesrgan_files, swinir_file):
    pth, _ = realesrgan_files
    with pytest.raises(CheckpointError) as err:
        create("methods", "swinir", {"checkpoint": str(pth)})
    assert str(err.value) == (
        f"{pth}: method 'swinir' expects a SwinIR checkpoint, but spandrel detected ESRGAN; use the method "
        "type matching the file, or 'spandrel' for any supported architecture"
    )
    with pytest.raises(CheckpointError, match=r"method 'realesrgan' expects a RRDBNet checkpoint, but spandrel"):
        create("methods", "realesrgan", {"checkpoint": str(swinir_file)})
    # the generic method takes either
    assert create("methods", "spandrel", {"checkpoint": str(swinir_file)}).architecture == "SwinIR"


def test_missing_checkpoint_names_path_and_download(tmp_path):
    path = tmp_path / "RealESRGAN_x4plus.pth"
    with pytest.raises(CheckpointError) as err:
        create("methods", "realesrgan", {"checkpoint": str(path)})
    assert str(err.value) == (
        f"{path}: checkpoint not found; download {PRESETS['realesrgan'].weights} and set 'checkpoint' to its path"
    )
    with pytest.raises(CheckpointError, match=r"not found; download any checkpoint of an architecture spandrel"):
        create("methods", "spandrel", {"checkpoint": str(path)})


class _NotATensor:
    pass


def test_unsafe_and_unsupported_files_are_refused(tmp_path):
    pickled = tmp_path / "code.pth"
    torch.save({"params": {"w": torch.zeros(1)}, "opt": _NotATensor()}, pickled)
    with pytest.raises(CheckpointError) as err:
        create("methods", "spandrel", {"checkpoint": str(pickled)})
    assert str(err.value).startswith(f"{pickled}: cannot be loaded safely with torch.load(weights_only=True): ")
    assert str(err.value).endswith("if you trust the file, convert it to .safetensors first")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script deprecation
        scripted = torch.jit.script(torch.nn.Conv2d(3, 3, 1))
    ts = tmp_path / "model.pt"
    scripted.save(str(ts))
    with pytest.raises(CheckpointError) as err:
        create("methods", "spandrel", {"checkpoint": str(ts)})
    assert str(err.value) == (
        f"{ts}: is a TorchScript archive (contains code), which is never loaded; "
        "export its state_dict to .safetensors instead"
    )

    unknown = tmp_path / "unknown.safetensors"
    save_file({"foo.weight": torch.zeros(2, 2)}, str(unknown))
    with pytest.raises(CheckpointError, match=r"does not recognise this architecture \(first keys: foo.weight\)"):
        create("methods", "spandrel", {"checkpoint": str(unknown)})

    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"unsupported checkpoint extension '.onnx'"):
        create("methods", "spandrel", {"checkpoint": str(onnx)})


def test_config_validation_names_the_key(realesrgan_files):
    pth, _ = realesrgan_files
    with pytest.raises(ConfigError) as err:
        create("methods", "realesrgan", {"checkpoint": str(pth), "tile": 32, "tile_overlap": 32})
    assert str(err.value) == "<config>: methods.realesrgan: tile_overlap (32) must be smaller than tile (32)"
    with pytest.raises(ConfigError, match=r"methods.spandrel.half: expected bool"):
        create("methods", "spandrel", {"checkpoint": str(pth), "half": "yes"})


def test_half_only_on_cuda(realesrgan_files):
    method = create("methods", "realesrgan", {"checkpoint": str(realesrgan_files[0]), "half": True}).to("cpu")
    assert method.dtype == torch.float32  # fp16 is used on CUDA only (spandrel: supports_half for RRDBNet)
    assert method.descriptor.supports_half and method.info()["dtype"] == "float32"


# ----------------------------------------------------------------------------------------------- tiling
def test_tiled_equals_untiled_for_rrdbnet(realesrgan_files):
    """Overlap 80, ramp 0.5 -> margin 20 LR px >= receptive-field radius 19: equal up to float rounding.

    Measured: max |tiled - untiled| = 7e-8 (margin 20), 4e-8 (margin 10: the effective field decays fast);
    overlap 4 (margin 1) gives 1.8e-3, which the negative control below checks.
    """
    pth, _ = realesrgan_files
    lr = _lr(100, 90)  # larger than the tile in both dimensions (2 x 2 tiles)
    whole = create("methods", "realesrgan", {"checkpoint": str(pth)}).upscale(lr, ["a"])
    tiled_method = create("methods", "realesrgan", {"checkpoint": str(pth), "tile": 88, "tile_overlap": 80})
    assert tiled_method.info()["tile"] == 88 and 80 * 0.5 / 2 >= RRDB_RADIUS
    tiled = tiled_method.upscale(lr, ["a"])
    assert tiled.shape == whole.shape == (1, 3, 400, 360)
    assert (tiled - whole).abs().max().item() < 1e-6
    seamy = create("methods", "realesrgan", {"checkpoint": str(pth), "tile": 88, "tile_overlap": 4}).upscale(lr, ["a"])
    assert (seamy - whole).abs().max().item() > 1e-4  # the comparison above can fail


def test_swinir_tiling_warns_discouraged(swinir_file, caplog):
    method = create("methods", "swinir", {"checkpoint": str(swinir_file), "tile": 24, "tile_overlap": 8})
    assert [r.getMessage() for r in caplog.records if r.name == "methods.adapters.spandrel"] == [
        "spandrel discourages tiling for SwinIR (expect seams); tiling anyway"
    ]
    assert method.upscale(_lr(40, 33), ["a"]).shape == (1, 3, 160, 132)


def test_tile_starts_closed_form():
    assert tile_starts(10, 16, 4) == [0]
    assert tile_starts(16, 16, 4) == [0]
    assert tile_starts(40, 16, 4) == [0, 12, 24]
    assert tile_starts(41, 16, 4) == [0, 12, 24, 25]
    with pytest.raises(ValueError, match=r"0 <= overlap < tile \(16\), got 16"):
        tile_starts(40, 16, 16)


@pytest.mark.parametrize("ramp", [0.0, 0.5, 1.0])
def test_blend_profiles_partition_unity(ramp):
    tile, overlap, scale = 16, 8, 2
    left = blend_profile(tile, scale, overlap, ramp, ramp_start=False, ramp_end=True)
    right = blend_profile(tile, scale, overlap, ramp, ramp_start=True, ramp_end=False)
    shared = (tile - overlap) * scale
    total = torch.cat([left[:shared], left[shared:] + right[: overlap * scale], right[overlap * scale :]])
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-6)
    margin = int(overlap * (1 - ramp) / 2) * scale
    assert (right[:margin] == 0).all() and (right[margin:] > 0).all() and (left[:shared] == 1).all()


def test_tiled_upscale_is_exact_for_pointwise_functions():
    def nearest(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=3, mode="nearest")

    lr = _lr(37, 29).expand(2, 3, 37, 29).contiguous()
    for tile, overlap, ramp in [(8, 3, 0.5), (16, 5, 1.0), (10, 0, 0.0), (64, 8, 0.5)]:
        out = tiled_upscale(nearest, lr, 3, tile, overlap, ramp=ramp)
        assert out.shape == (2, 3, 111, 87)
        torch.testing.assert_close(out, nearest(lr), rtol=0, atol=1e-6)


def test_tiled_upscale_rejects_wrong_output_size():
    with pytest.raises(ValueError) as err:
        tiled_upscale(lambda x: F.interpolate(x, scale_factor=2), _lr(20, 20), 4, 8, 2)
    assert str(err.value) == (
        "upscale function returned shape (1, 3, 16, 16) for input (1, 3, 8, 8); expected (B=1, C, 32, 32) at scale 4"
    )
