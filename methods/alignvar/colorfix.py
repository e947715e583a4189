"""Colour correction of SR outputs against the (upsampled) LR input, as in StableSR / VARSR.

VARSR's test script applies ``adain_color_fix`` (per-channel mean/std transfer) to its output against the LR
image resized to the output size; ``wavelet_color_fix`` (keep the output's high frequencies, take the
reference's low frequencies) is the alternative from the same file. Tensor versions: (B, 3, H, W) in [0, 1],
output clamped to [0, 1] like the official PIL round trip (which additionally rounds to 8 bit; we leave that
to image saving).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_EPS = 1e-5


def _float(x: Tensor) -> Tensor:
    """At least float32 (half inputs are promoted; float64 stays float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _check(img: Tensor, ref: Tensor, name: str) -> None:
    if img.ndim != 4 or ref.ndim != 4 or img.shape[:2] != ref.shape[:2]:
        raise ValueError(
            f"{name}: img and ref must be (B, C, H, W) with equal B and C; got "
            f"{tuple(img.shape)} and {tuple(ref.shape)}"
        )


def channel_mean_std(x: Tensor, eps: float = _EPS) -> tuple[Tensor, Tensor]:
    """Per-image, per-channel mean and sqrt(unbiased variance + eps), each (B, C, 1, 1) (official
    calc_mean_std)."""
    b, c = x.shape[:2]
    flat = x.reshape(b, c, -1)
    return flat.mean(dim=2).view(b, c, 1, 1), (flat.var(dim=2) + eps).sqrt().view(b, c, 1, 1)


def adain_color_fix(img: Tensor, ref: Tensor, clamp: bool = True) -> Tensor:
    """Give ``img`` the per-channel mean and standard deviation of ``ref`` (AdaIN; variance + 1e-5).

    ``ref`` may have a different spatial size (only its statistics are used).
    """
    _check(img, ref, "adain_color_fix")
    img_mean, img_std = channel_mean_std(_float(img))
    ref_mean, ref_std = channel_mean_std(_float(ref))
    out = (_float(img) - img_mean) / img_std * ref_std + ref_mean
    return out.clamp(0.0, 1.0) if clamp else out


def wavelet_blur(x: Tensor, radius: int) -> Tensor:
    """3x3 binomial blur [[1,2,1],[2,4,2],[1,2,1]]/16 with dilation ``radius``, replicate padding, per
    channel."""
    c = x.shape[1]
    k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=x.dtype, device=x.device) / 16
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    return F.conv2d(x, k.expand(c, 1, 3, 3), groups=c, dilation=radius)


def wavelet_decomposition(x: Tensor, levels: int = 5) -> tuple[Tensor, Tensor]:
    """(high, low) with high = sum of the band-pass layers at dilations 1, 2, ..., 2^(levels-1); x = high +
    low."""
    high = torch.zeros_like(x)
    low = x
    for i in range(levels):
        blurred = wavelet_blur(low, 2**i)
        high = high + (low - blurred)
        low = blurred
    return high, low


def wavelet_color_fix(img: Tensor, ref: Tensor, levels: int = 5, clamp: bool = True) -> Tensor:
    """``img``'s high frequencies + ``ref``'s low frequencies (5-level dilated wavelet split). Same sizes
    needed."""
    _check(img, ref, "wavelet_color_fix")
    if img.shape != ref.shape:
        raise ValueError(
            f"wavelet_color_fix: img {tuple(img.shape)} and ref {tuple(ref.shape)} must have the same size; "
            f"resize the reference first"
        )
    high, _ = wavelet_decomposition(_float(img), levels)
    _, low = wavelet_decomposition(_float(ref), levels)
    out = high + low
    return out.clamp(0.0, 1.0) if clamp else out
