"""Colour fixes (VARSR/StableSR post-processing): closed-form properties of AdaIN and the wavelet split."""

from __future__ import annotations

import pytest
import torch

from methods.alignvar.colorfix import (
    adain_color_fix,
    channel_mean_std,
    wavelet_blur,
    wavelet_color_fix,
    wavelet_decomposition,
)


def _rand(seed: int, shape=(2, 3, 24, 20), lo=0.0, hi=1.0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_adain_transfers_channel_mean_and_std():
    img = _rand(0, lo=0.3, hi=0.7)
    ref = _rand(1, shape=(2, 3, 10, 12), lo=0.2, hi=0.6)  # statistics only: sizes may differ
    out = adain_color_fix(img, ref)
    assert out.min() > 0 and out.max() < 1  # no clamping in this regime
    flat_out, flat_img, flat_ref = (x.double().flatten(2) for x in (out, img, ref))
    torch.testing.assert_close(flat_out.mean(2), flat_ref.mean(2), atol=1e-6, rtol=0)
    # std_out = std_img * sqrt(var_ref + 1e-5) / sqrt(var_img + 1e-5)   (official eps placement)
    v_img, v_ref = flat_img.var(2), flat_ref.var(2)
    expect = v_img.sqrt() * (v_ref + 1e-5).sqrt() / (v_img + 1e-5).sqrt()
    torch.testing.assert_close(flat_out.std(2), expect, atol=1e-6, rtol=0)
    _, std = channel_mean_std(ref)
    torch.testing.assert_close(std.flatten(1), (v_ref + 1e-5).sqrt(), atol=1e-12, rtol=0)


def test_adain_of_flat_image_is_reference_mean_and_clamps():
    img = torch.full((1, 3, 8, 8), 0.4)
    ref = _rand(2, shape=(1, 3, 8, 8)).float()
    out = adain_color_fix(img, ref)  # float32: (x - mean) is ~1e-8, amplified by 1/sqrt(1e-5)
    torch.testing.assert_close(out, ref.mean(dim=(2, 3), keepdim=True).expand_as(out), atol=1e-5, rtol=0)
    bright = adain_color_fix(_rand(3, shape=(1, 3, 8, 8)).float(), ref + 5.0)
    assert torch.equal(bright, torch.ones_like(bright))  # out-of-range results are clamped to [0, 1]
    assert adain_color_fix(img, ref + 5.0, clamp=False).min() > 5.0
    with pytest.raises(ValueError, match="equal B and C"):
        adain_color_fix(img, ref[:, :2])


def test_wavelet_kernel_and_dilation():
    x = torch.zeros(1, 3, 15, 15)
    x[:, :, 7, 7] = 1.0
    k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
    for radius in (1, 2, 4):
        out = wavelet_blur(x, radius)
        assert out.shape == x.shape
        taps = out[0, 0, 7 - radius :: radius, 7 - radius :: radius][:3, :3]
        torch.testing.assert_close(taps, k)
        assert float(out.sum()) == pytest.approx(3.0)  # mass preserved away from the border
    const = torch.full((1, 3, 6, 5), 0.25)
    torch.testing.assert_close(wavelet_blur(const, 16), const)  # replicate padding, even when radius > size


def test_wavelet_decomposition_and_fix_closed_forms():
    img, ref = _rand(4).float(), _rand(5).float()
    high, low = wavelet_decomposition(img)
    torch.testing.assert_close(high + low, img, atol=1e-6, rtol=0)
    torch.testing.assert_close(wavelet_color_fix(img, img, clamp=False), img, atol=1e-6, rtol=0)  # identity
    # a flat image has no high frequencies: the result is the reference's low-pass band
    flat = torch.full_like(img, 0.5)
    torch.testing.assert_close(wavelet_color_fix(flat, ref, clamp=False), wavelet_decomposition(ref)[1])
    with pytest.raises(ValueError, match="must have the same size"):
        wavelet_color_fix(img, ref[..., :10])
