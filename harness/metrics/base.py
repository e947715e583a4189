"""The metric interface the runner uses: per-image scores for a batch, or one number for two folders (FID)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class MetricInfo:
    """Static facts about a metric, known without building it (reports use them for arrows and columns)."""

    lower_better: bool
    needs_reference: bool  # full-reference (needs HR); FID needs the HR *folder*
    set_level: bool = False  # one number per set (FID), not per image


class Metric:
    """A quality metric.

    ``metric(sr, hr)`` takes SR (B, 3, H, W) in [0, 1] (and HR of the same shape for full-reference metrics;
    ignored otherwise) and returns per-image scores, a (B,) float64 CPU tensor. Set-level metrics (FID) raise
    there and implement :meth:`compute_sets` instead.
    """

    name: str = "metric"
    lower_better: bool = False
    needs_reference: bool = False
    set_level: bool = False

    def __init__(self, name: str | None = None, device: torch.device | str = "cpu") -> None:
        if name is not None:
            self.name = name
        self.device = torch.device(device)

    @property
    def info(self) -> MetricInfo:
        return MetricInfo(self.lower_better, self.needs_reference, self.set_level)

    def __call__(self, sr: torch.Tensor, hr: torch.Tensor | None = None) -> torch.Tensor:
        if self.set_level:
            raise TypeError(f"metric {self.name!r} is computed per set: call compute_sets(sr_dir, hr_dir)")
        sr = self._check(sr, "sr")
        if self.needs_reference:
            if hr is None:
                raise ValueError(f"metric {self.name!r} is full-reference: it needs the HR image")
            hr = self._check(hr, "hr")
            if hr.shape != sr.shape:
                raise ValueError(
                    f"metric {self.name!r}: SR {tuple(sr.shape)} and HR {tuple(hr.shape)} differ in shape "
                    f"(crop HR to LR*scale: dataset option mod_crop)"
                )
        else:
            hr = None
        with torch.inference_mode():
            scores = self.score(sr, hr)
        scores = scores.detach().reshape(-1).double().cpu()
        if scores.numel() != sr.shape[0]:
            raise RuntimeError(f"metric {self.name!r} returned {scores.numel()} scores for {sr.shape[0]} images")
        return scores

    def score(self, sr: torch.Tensor, hr: torch.Tensor | None) -> torch.Tensor:
        """Per-image scores for validated inputs on ``self.device``; any shape with B elements."""
        raise NotImplementedError

    def compute_sets(self, sr_dir: Path, hr_dir: Path) -> float:
        raise TypeError(f"metric {self.name!r} is per-image: call it on image batches")

    def to(self, device: torch.device | str) -> Metric:
        self.device = torch.device(device)
        return self

    def close(self) -> None:
        """Release model memory (GPU)."""

    def _check(self, img: torch.Tensor, role: str) -> torch.Tensor:
        if not isinstance(img, torch.Tensor):
            raise TypeError(f"metric {self.name!r}: {role} must be a tensor, got {type(img).__name__}")
        if img.dim() == 3:
            img = img.unsqueeze(0)
        if img.dim() != 4 or img.shape[1] != 3:
            raise ValueError(f"metric {self.name!r}: {role} must be (B, 3, H, W), got {tuple(img.shape)}")
        img = img.to(self.device, torch.float32)
        lo, hi = (float(v) for v in torch.aminmax(img))  # one pass; NaN propagates into both
        if lo < -1e-4 or hi > 1 + 1e-4 or lo != lo or hi != hi:
            raise ValueError(f"metric {self.name!r}: {role} values must be in [0, 1], got [{lo:.4g}, {hi:.4g}]")
        # clamp only what needs it: an image already in [0, 1] (8-bit SR, HR files) is passed on without a copy
        return img if 0.0 <= lo and hi <= 1.0 else img.clamp(0.0, 1.0)
