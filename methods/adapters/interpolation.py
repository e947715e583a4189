"""Interpolation baselines: nearest, bilinear, bicubic and Lanczos upscaling (no learning, no weights).

- ``nearest``: ``F.interpolate(mode='nearest')``; for an integer scale every LR pixel becomes an exact
  ``scale x scale`` block.
- ``bilinear``: ``F.interpolate(mode='bilinear', align_corners=False)`` (half-pixel centres, edge clamp).
- ``bicubic``: ``kernel: matlab`` (default) is MATLAB ``imresize(lr, s, 'bicubic')``, the "Bicubic" row of SR
  papers (Keys a = -0.5, mirrored borders; :func:`harness.data.degradations.bicubic.imresize`);
  ``kernel: torch`` is ``F.interpolate(mode='bicubic')`` (a = -0.75, clamped borders, as OpenCV).
- ``lanczos``: Lanczos-3 computed in float with the same separable-matrix code as MATLAB
  ``imresize(lr, s, 'lanczos3')``, not through PIL: PIL would round the result to 8 bits and so change PSNR.

Outputs are clamped to [0, 1] (bicubic and Lanczos overshoot at edges).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from harness.core.registry import register
from harness.data.degradations.bicubic import imresize
from methods.base import SRMethod


@dataclass
class InterpolationConfig:
    scale: int = 4

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")


@dataclass
class BicubicConfig(InterpolationConfig):
    kernel: Literal["matlab", "torch"] = "matlab"


class Interpolation(SRMethod):
    """Base class: ``resize(lr, (H, W))`` on a (B, 3, h, w) batch; subclasses set ``mode``."""

    mode = "nearest"
    inference_steps = 1

    def __init__(self, cfg: InterpolationConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or InterpolationConfig()
        self.scale = self.cfg.scale

    def resize(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(lr, size=size, mode=self.mode)

    @torch.inference_mode()
    def upscale(self, lr: torch.Tensor, keys: Sequence[str] = ()) -> torch.Tensor:
        if lr.dim() != 4 or lr.shape[1] != 3:
            raise ValueError(f"{type(self).__name__}: expected LR of shape (B, 3, h, w), got {tuple(lr.shape)}")
        h, w = lr.shape[-2:]
        out = self.resize(lr.float(), (h * self.scale, w * self.scale))
        return out.clamp_(0.0, 1.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale})"


@register("methods", "nearest", config=InterpolationConfig, description="Nearest-neighbour upscaling")
class Nearest(Interpolation):
    mode = "nearest"


@register("methods", "bilinear", config=InterpolationConfig, description="Bilinear upscaling (PyTorch)")
class Bilinear(Interpolation):
    mode = "bilinear"

    def resize(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(lr, size=size, mode="bilinear", align_corners=False)


@register("methods", "bicubic", config=BicubicConfig, description="Bicubic upscaling (MATLAB imresize)")
class Bicubic(Interpolation):
    mode = "bicubic"

    def __init__(self, cfg: BicubicConfig | None = None) -> None:
        super().__init__(cfg or BicubicConfig())

    def resize(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.cfg.kernel == "matlab":
            return imresize(lr, size, "cubic")
        return F.interpolate(lr, size=size, mode="bicubic", align_corners=False)


@register("methods", "lanczos", config=InterpolationConfig, description="Lanczos-3 upscaling (float)")
class Lanczos(Interpolation):
    mode = "lanczos3"

    def resize(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return imresize(lr, size, "lanczos3")
