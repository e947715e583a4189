"""Real-ESRGAN's second-order degradation (Wang et al., ICCVW 2021), batched and seeded; presets registered.

HR -> [blur -> resize -> noise -> JPEG] -> [blur? -> resize -> noise] -> final, where the final stage is,
with probability 1/2 each, ``[resize to H/scale + sinc] -> JPEG`` or ``JPEG -> [resize to H/scale + sinc]``;
the result is clamped and rounded to 8-bit levels. Real-ESRGAN sharpens the GT (USM) before degrading it and
trains against the sharpened GT; VARSR skips the sharpening and resizes the LR back to HR size
(``resize_back``).

Registered presets (kind ``degradations``; every key of the config overridable from YAML):

- ``realesrgan_x4plus``: Real-ESRGAN's ``train_realesrgan_x4plus.yml`` (:class:`RealESRGANConfig`), USM on;
- ``stablesr_mild``: StableSR / PASD / SeeSR / VARSR ``params_realesrgan.yml`` (:class:`StableSRMildConfig`).

Each image of a batch draws its own parameters (kernels, resize scale and mode, noise type/level/colour,
JPEG qualities, final order) from the one ``torch.Generator`` passed in, in batch order, so the same seed
reproduces the batch exactly. Images whose intermediate sizes differ are processed one by one;
``batch_shared: true`` draws the size-changing choices once per batch instead (as Real-ESRGAN's GPU
``feed_data`` does) and runs every operation on the whole batch at once.

Differences from the reference implementation, by design: JPEG is libjpeg (through Pillow) at an
integer quality drawn uniformly from ``jpeg_range`` (Real-ESRGAN's DiffJPEG takes a real-valued quality);
borders are reflect-padded unless an image is smaller than the kernel radius (then replicate); no training
pair pool.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from harness.core.imageio import quantize_8bit
from harness.core.registry import register
from harness.data.degradations import ops
from harness.data.degradations.base import Degradation
from harness.data.degradations.kernels import Sampler, draw_blur_kernel, draw_final_sinc
from harness.data.degradations.realesrgan_config import RealESRGANConfig, StableSRMildConfig

__all__ = [
    "DegradedBatch",
    "RealESRGANConfig",
    "RealESRGANDegradation",
    "SampleDraw",
    "StableSRMildConfig",
    "StageDraw",
    "draw_sample",
]


@dataclass(frozen=True)
class DegradedBatch:
    """Output of :meth:`RealESRGANDegradation.degrade_batch`.

    ``lr``: (B, 3, H/s, W/s) 8-bit-valued LR; ``gt``: the training target (USM-sharpened HR when ``use_usm``,
    else the HR itself); ``lr_up``: LR resized back to (H, W) with a random mode and re-quantised when
    ``resize_back`` (VARSR), else None.
    """

    lr: torch.Tensor
    gt: torch.Tensor
    lr_up: torch.Tensor | None = None


@dataclass(frozen=True)
class StageDraw:
    """The random choices of one degradation stage for one image."""

    blur: bool  # apply ``kernel`` (always true in stage 1; ``second_blur_prob`` in stage 2)
    kernel: torch.Tensor  # (k, k), sums to 1
    resize_scale: float  # stage 1: relative to the input; stage 2: relative to H / scale
    resize_mode: str
    gaussian: bool  # Gaussian noise, else Poisson
    sigma: float  # Gaussian sigma in [0, 1] units (sigma_255 / 255)
    poisson_scale: float
    gray_noise: bool
    jpeg_quality: int  # stage 1: the first JPEG; stage 2: the final-stage JPEG


@dataclass(frozen=True)
class SampleDraw:
    first: StageDraw
    second: StageDraw
    final_kernel: torch.Tensor  # sinc (prob ``final_sinc_prob``) or a pulse
    final_mode: str  # resize mode to H / scale
    sinc_then_jpeg: bool  # final order: [resize + sinc] -> JPEG, else JPEG -> [resize + sinc]
    back_mode: str  # resize_back mode


def _draw_stage(s: Sampler, cfg: RealESRGANConfig, stage: int) -> StageDraw:
    sfx = "" if stage == 1 else "2"
    blur = True if stage == 1 else s.bernoulli(cfg.second_blur_prob)
    kernel = draw_blur_kernel(s, cfg.kernel_spec(stage))
    direction = s.choice(("up", "down", "keep"), getattr(cfg, f"resize_prob{sfx}"))
    lo, hi = getattr(cfg, f"resize_range{sfx}")
    scale = {"up": lambda: s.uniform(1.0, hi), "down": lambda: s.uniform(lo, 1.0), "keep": lambda: 1.0}[direction]()
    mode = s.choice(cfg.resize_modes)
    gaussian = s.bernoulli(getattr(cfg, f"gaussian_noise_prob{sfx}"))
    sigma = s.uniform(*getattr(cfg, f"noise_range{sfx}")) / 255.0  # both drawn, so batch_shared can pick either
    poisson_scale = s.uniform(*getattr(cfg, f"poisson_scale_range{sfx}"))
    gray = s.bernoulli(getattr(cfg, f"gray_noise_prob{sfx}"))
    q_lo, q_hi = getattr(cfg, f"jpeg_range{sfx}")
    quality = s.randint(math.ceil(q_lo), math.floor(q_hi))
    return StageDraw(blur, kernel, scale, mode, gaussian, sigma, poisson_scale, gray, quality)


def draw_sample(s: Sampler, cfg: RealESRGANConfig) -> SampleDraw:
    """All random choices for one image, in a fixed order."""
    first = _draw_stage(s, cfg, 1)
    second = _draw_stage(s, cfg, 2)
    final_kernel = draw_final_sinc(s, cfg.final_sinc_prob, cfg.kernel_range, cfg.kernel_range[1])
    return SampleDraw(
        first=first,
        second=second,
        final_kernel=final_kernel,
        final_mode=s.choice(cfg.resize_modes),
        sinc_then_jpeg=s.bernoulli(0.5),
        back_mode=s.choice(cfg.resize_modes),
    )


def _share(draws: list[SampleDraw]) -> list[SampleDraw]:
    """Copy the batch-level choices of image 0 to every image (Real-ESRGAN's per-batch GPU behaviour)."""
    ref = draws[0]
    shared_stage = ("blur", "resize_scale", "resize_mode", "gaussian")
    out = []
    for d in draws:
        first = dataclasses.replace(d.first, **{k: getattr(ref.first, k) for k in shared_stage})
        second = dataclasses.replace(d.second, **{k: getattr(ref.second, k) for k in shared_stage})
        out.append(
            dataclasses.replace(
                d,
                first=first,
                second=second,
                final_mode=ref.final_mode,
                sinc_then_jpeg=ref.sinc_then_jpeg,
                back_mode=ref.back_mode,
            )
        )
    return out


class RealESRGANDegradation(Degradation):
    """The Real-ESRGAN second-order pipeline; ``cfg`` holds every option (see :class:`RealESRGANConfig`)."""

    def __init__(self, cfg: RealESRGANConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else RealESRGANConfig()
        self.scale = self.cfg.scale

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cfg!r})"

    # -- the Degradation interface: the LR (HR-sized when resize_back) only
    def degrade(self, hr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        out = self.degrade_batch(hr, generator)
        return out.lr_up if out.lr_up is not None else out.lr

    def draw(self, batch_size: int, generator: torch.Generator) -> list[SampleDraw]:
        """The random choices for a batch (per image, or batch-shared when ``cfg.batch_shared``)."""
        sampler = Sampler(generator)
        draws = [draw_sample(sampler, self.cfg) for _ in range(batch_size)]
        return _share(draws) if self.cfg.batch_shared else draws

    def degrade_batch(self, hr: torch.Tensor, generator: torch.Generator) -> DegradedBatch:
        """HR in [0, 1] -> :class:`DegradedBatch` (LR, training target, LR resized back or None)."""
        if hr.dim() != 4 or hr.shape[1] != 3:
            raise ValueError(f"{type(self).__name__}: expected HR of shape (B, 3, H, W), got {tuple(hr.shape)}")
        h, w = hr.shape[-2:]
        if h % self.scale or w % self.scale:
            raise ValueError(
                f"{type(self).__name__}: HR size {h}x{w} is not divisible by scale {self.scale}; "
                f"crop it to a multiple of {self.scale} first"
            )
        hr = hr.float()
        cfg = self.cfg
        gt = ops.usm_sharpen(hr, cfg.usm_weight, cfg.usm_radius, cfg.usm_threshold) if cfg.use_usm else hr
        draws = self.draw(hr.shape[0], generator)
        if cfg.batch_shared:
            groups = [list(range(hr.shape[0]))]
        else:
            groups = [[i] for i in range(hr.shape[0])]
        lrs = [self._degrade_group(gt[idx], [draws[i] for i in idx], generator) for idx in groups]
        lr = torch.cat(lrs) if len(lrs) > 1 else lrs[0]
        lr_up = None
        if cfg.resize_back:
            ups = [ops.resize(lr[idx], draws[idx[0]].back_mode, size=(h, w)) for idx in groups]
            lr_up = quantize_8bit(torch.cat(ups))
        return DegradedBatch(lr=lr, gt=gt, lr_up=lr_up)

    # -- the pipeline on images that share the size-changing choices
    def _noise(self, img: torch.Tensor, stages: list[StageDraw], generator: torch.Generator) -> torch.Tensor:
        gray = [d.gray_noise for d in stages]
        if stages[0].gaussian:
            noise = ops.gaussian_noise(img, [d.sigma for d in stages], gray, generator)
        else:
            noise = ops.poisson_noise(img, [d.poisson_scale for d in stages], gray, generator)
        return (img + noise).clamp(0.0, 1.0)

    def _degrade_group(self, gt: torch.Tensor, draws: list[SampleDraw], generator: torch.Generator) -> torch.Tensor:
        h, w = gt.shape[-2:]
        s = self.scale
        lr_size = (h // s, w // s)
        first = [d.first for d in draws]
        second = [d.second for d in draws]

        out = ops.filter2d(gt, torch.stack([d.kernel for d in first]))
        out = ops.resize(out, first[0].resize_mode, scale=first[0].resize_scale)
        out = self._noise(out, first, generator)
        out = ops.jpeg_compress(out.clamp(0, 1), [d.jpeg_quality for d in first])

        if second[0].blur:
            out = ops.filter2d(out, torch.stack([d.kernel for d in second]))
        scale2 = second[0].resize_scale
        out = ops.resize(out, second[0].resize_mode, size=(int(h / s * scale2), int(w / s * scale2)))
        out = self._noise(out, second, generator)

        sinc = torch.stack([d.final_kernel for d in draws])
        quality = [d.jpeg_quality for d in second]
        if draws[0].sinc_then_jpeg:
            out = ops.filter2d(ops.resize(out, draws[0].final_mode, size=lr_size), sinc)
            out = ops.jpeg_compress(out.clamp(0, 1), quality)
        else:
            out = ops.jpeg_compress(out.clamp(0, 1), quality)
            out = ops.filter2d(ops.resize(out, draws[0].final_mode, size=lr_size), sinc)
        return quantize_8bit(out)


@register(
    "degradations",
    "realesrgan_x4plus",
    description="Real-ESRGAN second-order degradation, x4plus defaults (GT USM on)",
    config=RealESRGANConfig,
)
def realesrgan_x4plus(cfg: RealESRGANConfig) -> RealESRGANDegradation:
    return RealESRGANDegradation(cfg)


@register(
    "degradations",
    "stablesr_mild",
    description="Real-ESRGAN pipeline, mild StableSR/PASD/SeeSR/VARSR parameters (no GT USM)",
    config=StableSRMildConfig,
)
def stablesr_mild(cfg: StableSRMildConfig) -> RealESRGANDegradation:
    return RealESRGANDegradation(cfg)
