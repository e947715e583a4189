"""Interpolation baselines: registered, exact sizes, [0, 1], closed-form behaviour, PIL cross-checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from harness.core.registry import create, list_entries
from methods.base import SRMethod

NAMES = ["nearest", "bilinear", "bicubic", "lanczos"]


def method(name: str, **options) -> SRMethod:
    return create("methods", name, options)


def test_registered():
    assert set(NAMES) <= set(list_entries("methods"))
    for name in NAMES:
        m = method(name)
        assert isinstance(m, SRMethod) and m.scale == 4 and m.modules() == {} and m.parameter_counts() == {}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_exact_size_and_range(name, scale):
    lr = torch.rand(2, 3, 13, 7, generator=torch.Generator().manual_seed(scale))
    sr = method(name, scale=scale).upscale(lr, ["a", "b"])
    assert sr.shape == (2, 3, 13 * scale, 7 * scale) and sr.dtype == torch.float32
    assert sr.min() >= 0 and sr.max() <= 1


@pytest.mark.parametrize("name, options", [("bicubic", {}), ("bicubic", {"kernel": "torch"}), ("lanczos", {})])
def test_constant_image_stays_constant(name, options):
    lr = torch.full((1, 3, 9, 11), 0.4)
    sr = method(name, **options).upscale(lr, ["c"])
    assert (sr - 0.4).abs().max() < 1e-6


def test_nearest_reproduces_blocks_of_a_nearest_downsampled_image():
    blocks = torch.rand(1, 3, 8, 6, generator=torch.Generator().manual_seed(0))
    hr = blocks.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)  # 4x4 constant blocks
    lr = F.interpolate(hr, scale_factor=0.25, mode="nearest")
    assert torch.equal(lr, blocks)
    assert torch.equal(method("nearest").upscale(lr, ["x"]), hr)


def test_batch_equals_single_images():
    lr = torch.rand(3, 3, 6, 5, generator=torch.Generator().manual_seed(1))
    for name in NAMES:
        m = method(name)
        batch = m.upscale(lr, list("abc"))
        for i in range(3):
            assert torch.allclose(batch[i : i + 1], m.upscale(lr[i : i + 1], ["x"]), atol=1e-6)


def test_linear_ramp_is_reproduced_in_the_interior():
    # bilinear (half-pixel centres) and Keys cubic with a = -0.5 (MATLAB) reproduce linear functions exactly:
    # output pixel j samples the LR at (j + 0.5) / s - 0.5. (Lanczos-3, a = -0.75 cubic: approximately.)
    ramp = (torch.arange(16, dtype=torch.float32) / 20 + 0.1).expand(1, 3, 4, 16).contiguous()
    expected = (((torch.arange(64) + 0.5) / 4 - 0.5) / 20 + 0.1)[12:-12]
    for name, options in [("bilinear", {}), ("bicubic", {})]:
        row = method(name, **options).upscale(ramp, ["r"])[0, 0, 8, 12:-12]
        assert torch.allclose(row, expected, atol=1e-6), name


@pytest.mark.parametrize("name, pil_filter", [("bicubic", Image.BICUBIC), ("lanczos", Image.LANCZOS)])
def test_matches_pil_float_resampling_away_from_borders(name, pil_filter):
    # PIL bicubic (a = -0.5) and Lanczos-3 on a float image: same kernels; PIL renormalises truncated kernels
    # at the border where MATLAB mirrors, so only the interior must agree
    img = np.random.default_rng(0).random((24, 20)).astype(np.float32)
    ref = np.asarray(Image.fromarray(img, mode="F").resize((80, 96), pil_filter))
    out = method(name).resize(torch.from_numpy(img)[None, None], (96, 80))[0, 0].numpy()
    assert np.abs(out - ref)[12:-12, 12:-12].max() < 1e-5


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"Bicubic: expected LR of shape \(B, 3, h, w\), got \(3, 8, 8\)"):
        method("bicubic").upscale(torch.rand(3, 8, 8), ["x"])
