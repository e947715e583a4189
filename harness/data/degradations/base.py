"""The degradation interface: a seeded map from an HR batch to its LR batch.

Every degradation (``bicubic``, the Real-ESRGAN presets, ...) subclasses :class:`Degradation`. Randomness
comes only from the ``generator`` argument, never from the global torch RNG, so the same seed gives the same
LR images whatever else ran before (use :func:`make_generator`).
"""

from __future__ import annotations

import torch

from harness.core.imageio import quantize_8bit


class Degradation:
    """HR (B, 3, H, W) float in [0, 1] -> LR (B, 3, H // scale, W // scale) float in [0, 1].

    Subclasses implement :meth:`degrade`; :meth:`__call__` checks the input and, when ``quantize`` is true
    (the default), rounds the output to 8-bit levels, as if the LR image had been saved as a PNG. This is what
    the LR test images of real benchmarks are, so methods never see values a file could not hold.
    """

    scale: int = 4
    quantize: bool = True

    def degrade(self, hr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, hr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if hr.dim() != 4 or hr.shape[1] != 3:
            raise ValueError(f"{type(self).__name__}: expected HR of shape (B, 3, H, W), got {tuple(hr.shape)}")
        h, w = hr.shape[-2:]
        if h % self.scale or w % self.scale:
            raise ValueError(
                f"{type(self).__name__}: HR size {h}x{w} is not divisible by scale {self.scale}; "
                f"crop it to a multiple of {self.scale} first"
            )
        if generator is None:
            generator = make_generator(0)
        lr = self.degrade(hr.float(), generator).clamp(0.0, 1.0)
        if self.quantize:
            lr = quantize_8bit(lr)
        return lr


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh torch.Generator seeded with ``seed`` (degradations draw all their randomness from it)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator
