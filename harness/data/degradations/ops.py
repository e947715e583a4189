"""Batched image operations of the Real-ESRGAN pipeline: per-sample filtering, resizing, noise, JPEG, USM.

Images are float tensors (B, 3, H, W) in [0, 1] on any device. Per-sample parameters are given as sequences or
(B,) tensors. Random noise is drawn from the passed ``torch.Generator`` on the generator's device and moved to
the images' device (pass a CUDA generator when the images live on the GPU to avoid the copy).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

RESIZE_MODES = ("area", "bilinear", "bicubic")
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma


def _pad(img: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflect padding, or replicate when the image is too small to reflect ``pad`` pixels."""
    if pad == 0:
        return img
    mode = "reflect" if pad < min(img.shape[-2:]) else "replicate"
    return F.pad(img, (pad, pad, pad, pad), mode=mode)


def filter2d(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate every channel of image b with ``kernel[b]`` (or one shared (k, k) kernel), 'same' size.

    Borders are reflect-padded, as in BasicSR's ``filter2D``. ``kernel``: (k, k) or (B, k, k), k odd.
    """
    b, c, h, w = img.shape
    if kernel.dim() == 2:
        kernel = kernel.expand(b, *kernel.shape)
    if kernel.shape[0] != b or kernel.shape[-1] % 2 == 0 or kernel.shape[-1] != kernel.shape[-2]:
        raise ValueError(f"filter2d: kernel {tuple(kernel.shape)} does not fit images {tuple(img.shape)}")
    k = kernel.shape[-1]
    padded = _pad(img, k // 2)
    weight = kernel.to(img).repeat_interleave(c, dim=0).unsqueeze(1)  # (B*C, 1, k, k)
    out = F.conv2d(padded.reshape(1, b * c, *padded.shape[-2:]), weight, groups=b * c)
    return out.reshape(b, c, h, w)


def filter_fft(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``filter2d`` with one shared (k, k) kernel computed by FFT: the same result, far cheaper for large k.

    The image is reflect-padded by k // 2 first, so the circular FFT correlation never wraps into the output.
    """
    b, c, h, w = img.shape
    k = kernel.shape[-1]
    padded = _pad(img, k // 2)
    hp, wp = padded.shape[-2:]
    kern = torch.zeros(hp, wp, dtype=img.dtype, device=img.device)
    kern[:k, :k] = kernel.to(img)
    spectrum = torch.fft.rfft2(padded) * torch.conj(torch.fft.rfft2(kern))
    return torch.fft.irfft2(spectrum, s=(hp, wp))[..., :h, :w]


def resize(
    img: torch.Tensor, mode: str, *, size: tuple[int, int] | None = None, scale: float | None = None
) -> torch.Tensor:
    """``F.interpolate`` to ``size`` or by ``scale`` with ``mode`` in area/bilinear/bicubic (no antialias)."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; valid choices: {', '.join(RESIZE_MODES)}")
    if size is None:
        if scale is None:
            raise ValueError("resize: give size or scale")
        size = (max(1, int(img.shape[-2] * scale)), max(1, int(img.shape[-1] * scale)))
    size = (max(1, int(size[0])), max(1, int(size[1])))
    if tuple(img.shape[-2:]) == size:
        return img  # every mode is the identity at the same size (align_corners=False samples the pixels)
    extra = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(img, size=size, mode=mode, **extra)


def rgb_to_gray(img: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) BT.601 luma."""
    r, g, b = img.unbind(1)
    wr, wg, wb = _GRAY_WEIGHTS
    return (wr * r + wg * g + wb * b).unsqueeze(1)


def _as_column(values: Sequence[float] | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=like.dtype, device=like.device).reshape(-1, 1, 1, 1)


def gaussian_noise(
    img: torch.Tensor,
    sigma: Sequence[float] | torch.Tensor,
    gray: Sequence[bool] | torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Additive white Gaussian noise field for ``img``: std ``sigma[b]`` in [0, 1] units (sigma_255 / 255).

    Samples with ``gray[b]`` get the same noise on all three channels (luminance noise), others independent
    per-channel (colour) noise. Returns the noise, not the noisy image.
    """
    b, c, h, w = img.shape
    g = generator
    is_gray = torch.as_tensor(gray, dtype=torch.bool, device=img.device).reshape(-1, 1, 1, 1)
    noise = torch.zeros_like(img)
    if not bool(is_gray.all()):
        colour = torch.randn((b, c, h, w), generator=g, device=g.device, dtype=torch.float32).to(img)
        noise = torch.where(is_gray, noise, colour)
    if bool(is_gray.any()):
        mono = torch.randn((b, 1, h, w), generator=g, device=g.device, dtype=torch.float32).to(img)
        noise = torch.where(is_gray, mono.expand(b, c, h, w), noise)
    return noise * _as_column(sigma, img)


def _poisson_field(img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shot noise of an 8-bit-quantised image, photon count = level * 2^ceil(log2(#distinct levels)).

    The number of photon levels follows BasicSR: an image with n distinct 8-bit values is treated as having
    ``2 ** ceil(log2(n))`` levels, so the noise variance at intensity ``I`` is ``I / levels``.
    """
    g = generator
    quant = img.clamp(0, 1).mul(255.0).round().div(255.0)
    b = img.shape[0]
    codes = quant.mul(255.0).round().long().reshape(b, -1) + 256 * torch.arange(b, device=img.device)[:, None]
    distinct = (torch.bincount(codes.flatten(), minlength=256 * b).reshape(b, 256) > 0).sum(1)
    levels = torch.exp2(torch.ceil(torch.log2(distinct.to(torch.float64)))).to(img.dtype).reshape(-1, 1, 1, 1)
    rate = (quant * levels).to(g.device)
    counts = torch.poisson(rate, generator=g).to(img)
    return counts / levels - quant


def poisson_noise(
    img: torch.Tensor,
    scale: Sequence[float] | torch.Tensor,
    gray: Sequence[bool] | torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Poisson (shot) noise field for ``img`` times ``scale[b]``; signal-dependent: variance ~ scale^2 * I.

    Samples with ``gray[b]`` get the shot noise of the BT.601 luma on all channels. Returns the noise only.
    """
    b, c, h, w = img.shape
    is_gray = torch.as_tensor(gray, dtype=torch.bool, device=img.device).reshape(-1, 1, 1, 1)
    noise = torch.zeros_like(img)
    if not bool(is_gray.all()):
        noise = torch.where(is_gray, noise, _poisson_field(img, generator))
    if bool(is_gray.any()):
        noise = torch.where(is_gray, _poisson_field(rgb_to_gray(img), generator).expand(b, c, h, w), noise)
    return noise * _as_column(scale, img)


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> uint8 levels (round half up), same shape."""
    return img.clamp(0, 1).mul(255.0).add(0.5).floor().to(torch.uint8)


def jpeg_encode(img: torch.Tensor, quality: Sequence[int]) -> list[bytes]:
    """JPEG-encode image b at integer ``quality[b]`` (1..100) with libjpeg through Pillow.

    Returns the encoded files (``len`` is the file size in bytes). Standard IJG quantisation tables scaled by
    the quality, 4:2:0 chroma subsampling (libjpeg's default, as in Real-ESRGAN's DiffJPEG), baseline.
    """
    quality = [int(q) for q in quality]
    if len(quality) != img.shape[0]:
        raise ValueError(f"jpeg_encode: {len(quality)} qualities for a batch of {img.shape[0]}")
    bad = [q for q in quality if not 1 <= q <= 100]
    if bad:
        raise ValueError(f"jpeg_encode: quality must be in 1..100, got {bad}")
    arrays = to_uint8(img).permute(0, 2, 3, 1).cpu().numpy()
    files = []
    for arr, q in zip(arrays, quality):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=q, subsampling=2)
        files.append(buf.getvalue())
    return files


def jpeg_decode(files: Sequence[bytes]) -> torch.Tensor:
    """Decode same-sized JPEG files -> (B, 3, H, W) float32 in [0, 1] (CPU)."""
    arrays = []
    for data in files:
        with Image.open(io.BytesIO(data)) as im:
            arrays.append(np.asarray(im.convert("RGB")))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255.0)


def jpeg_compress(img: torch.Tensor, quality: Sequence[int]) -> torch.Tensor:
    """JPEG round trip (encode at ``quality[b]``, decode) of a [0, 1] batch; [0, 1] out, on img's device."""
    return jpeg_decode(jpeg_encode(img, quality)).to(device=img.device, dtype=img.dtype)


def opencv_gaussian_1d(size: int, sigma: float = 0.0) -> torch.Tensor:
    """1-D Gaussian taps, sum 1; ``sigma <= 0`` uses OpenCV's rule ``0.3 * ((size - 1) / 2 - 1) + 0.8``."""
    if sigma <= 0:
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    taps = torch.exp(-(x**2) / (2 * sigma**2))
    return (taps / taps.sum()).float()


def usm_sharpen(img: torch.Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10.0) -> torch.Tensor:
    """Unsharp masking as used to sharpen Real-ESRGAN's GT: ``img + weight * (img - blur)`` where edges are.

    blur = Gaussian of size ``2 * radius + 1`` (OpenCV sigma rule); the sharpened image is blended in through
    a soft mask (the same blur applied to ``|img - blur| * 255 > threshold``) and clipped to [0, 1].
    """
    taps = opencv_gaussian_1d(2 * radius + 1)
    kernel = torch.outer(taps, taps)
    blur = filter_fft(img, kernel)
    residual = img - blur
    mask = (residual.abs() * 255.0 > threshold).to(img.dtype)
    soft = filter_fft(mask, kernel)
    sharp = (img + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * img
