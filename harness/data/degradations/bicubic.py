"""Bicubic down-sampling (the classical SR degradation) and the separable resampling kernels behind it.

"Bicubic LR" in SR papers means MATLAB's ``imresize(hr, 1/s, 'bicubic')``, the BasicSR convention: the Keys
cubic with ``a = -0.5``, widened by ``s`` when down-sampling (antialiasing), weights renormalised per output
pixel, and *symmetric* (mirror) padding at the borders. :func:`imresize` reproduces that algorithm exactly as
a pair of dense resampling matrices (one per axis), so it is deterministic and fast for SR-sized images.

``kernel: torch`` uses ``F.interpolate(mode='bicubic', antialias=True)`` instead. It has the same ``a = -0.5``
antialiased kernel (PyTorch follows PIL here) and agrees with MATLAB in the interior to float precision; it
differs only within ~2*s pixels of the border, where PyTorch renormalises the truncated kernel instead of
mirroring the image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from harness.core.registry import register
from harness.data.degradations.base import Degradation

# --------------------------------------------------------------------------------------------- kernels


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB ``imresize``), support [-2, 2]."""
    ax = x.abs()
    ax2, ax3 = ax**2, ax**3
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def lanczos3(x: torch.Tensor) -> torch.Tensor:
    """Lanczos kernel with 3 lobes, ``sinc(x) * sinc(x / 3)``, support [-3, 3]."""
    return torch.sinc(x) * torch.sinc(x / 3.0) * (x.abs() < 3)


KERNELS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], float]] = {
    "cubic": (cubic, 4.0),  # (function, support width)
    "lanczos3": (lanczos3, 6.0),
}


def resize_matrix(in_len: int, out_len: int, kernel: str = "cubic", antialias: bool = True) -> torch.Tensor:
    """The (out_len, in_len) float64 matrix of MATLAB ``imresize`` along one axis.

    Output pixel ``x`` (1-based) sits at input position ``u = x / scale + (1 - 1 / scale) / 2``; its taps
    are the input pixels within half the kernel width of ``u``, weighted by the kernel (stretched by
    ``1 / scale`` when down-sampling with ``antialias``) and normalised to sum 1. Taps outside the image are
    mirrored back in (symmetric padding, ``[1..n, n..1]``), so a constant image stays exactly constant.
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown resampling kernel {kernel!r}; valid choices: {', '.join(KERNELS)}")
    if in_len < 1 or out_len < 1:
        raise ValueError(f"resize lengths must be positive, got {in_len} -> {out_len}")
    fn, width = KERNELS[kernel]
    scale = out_len / in_len
    shrink = antialias and scale < 1
    if shrink:
        width = width / scale
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = torch.floor(u - width / 2.0)
    taps = math.ceil(width) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]  # 1-based input positions
    dist = u[:, None] - idx
    weights = scale * fn(dist * scale) if shrink else fn(dist)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # mirror 1-based indices into [1, n]: MATLAB's aux = [1:n, n:-1:1]
    period = 2 * in_len
    k = (idx.long() - 1) % period
    k = torch.where(k >= in_len, period - 1 - k, k)
    mat = torch.zeros(out_len, in_len, dtype=torch.float64)
    mat.scatter_add_(1, k, weights)
    return mat


def imresize(img: torch.Tensor, size: tuple[int, int], kernel: str = "cubic", antialias: bool = True) -> torch.Tensor:
    """MATLAB-style ``imresize`` of (..., H, W) to ``size`` = (h, w); float in, float out (no clamping).

    Computed in float64 and cast back to the input dtype. Rows are resized before columns, as MATLAB does for
    equal scale factors.
    """
    h_in, w_in = img.shape[-2:]
    h_out, w_out = size
    mh = resize_matrix(h_in, h_out, kernel, antialias).to(img.device)
    mw = resize_matrix(w_in, w_out, kernel, antialias).to(img.device)
    out = torch.matmul(mh, img.to(torch.float64))  # (..., h_out, W)
    out = torch.matmul(out, mw.transpose(0, 1))  # (..., h_out, w_out)
    return out.to(img.dtype)


def downsample_bicubic(
    img: torch.Tensor, scale: int, kernel: Literal["matlab", "torch"] = "matlab", antialias: bool = True
) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H // scale, W // scale) bicubic, MATLAB convention or PyTorch's (module doc)."""
    h, w = img.shape[-2:]
    size = (h // scale, w // scale)
    if kernel == "matlab":
        return imresize(img, size, "cubic", antialias)
    if kernel == "torch":
        return F.interpolate(img, size=size, mode="bicubic", align_corners=False, antialias=antialias)
    raise ValueError(f"unknown bicubic kernel {kernel!r}; valid choices: matlab, torch")


# --------------------------------------------------------------------------------------------- degradation


@dataclass
class BicubicConfig:
    """Options of the ``bicubic`` degradation."""

    scale: int = 4
    antialias: bool = True  # False: MATLAB's imresize(..., 'Antialiasing', false) (aliased)
    quantize: bool = True  # round the LR to 8-bit levels, as if saved as PNG
    kernel: Literal["matlab", "torch"] = "matlab"

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")


@register("degradations", "bicubic", config=BicubicConfig)
class BicubicDegradation(Degradation):
    """Bicubic down-sampling (MATLAB imresize, antialiased; the BasicSR convention). Deterministic."""

    def __init__(self, cfg: BicubicConfig | None = None) -> None:
        self.cfg = cfg or BicubicConfig()
        self.scale = self.cfg.scale
        self.quantize = self.cfg.quantize

    def degrade(self, hr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return downsample_bicubic(hr, self.scale, self.cfg.kernel, self.cfg.antialias)
