"""Image helpers for reports: crop choice, box drawing, thumbnails, base64 embedding. Pure numpy + PIL.

Images are (H, W, 3) uint8 arrays as stored in the run's PNGs.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

BOX_COLOUR = (255, 40, 40)


@dataclass(frozen=True)
class Box:
    """A square region in HR pixel coordinates."""

    y: int
    x: int
    size: int

    def scaled(self, factor: float) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) after scaling by ``factor`` (for drawing on a thumbnail)."""
        return (
            round(self.x * factor),
            round(self.y * factor),
            round((self.x + self.size) * factor) - 1,
            round((self.y + self.size) * factor) - 1,
        )


def read_rgb(path: str | Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def nearest_upscale(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize to (height, width): shows LR pixels as blocks, nothing invented."""
    rows = (np.arange(height) * img.shape[0] // height).clip(0, img.shape[0] - 1)
    cols = (np.arange(width) * img.shape[1] // width).clip(0, img.shape[1] - 1)
    return img[rows][:, cols]


def _best_window(score: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left (y, x) of the ``size``-square window with the largest sum of ``score`` (integral image)."""
    integral = np.pad(score.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y), int(x)


def gradient_energy(img: np.ndarray) -> np.ndarray:
    """Per-pixel gradient magnitude of the luma (forward differences), (H, W)."""
    luma = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    gy = np.zeros_like(luma)
    gx = np.zeros_like(luma)
    gy[:-1] = np.abs(np.diff(luma, axis=0))
    gx[:, :-1] = np.abs(np.diff(luma, axis=1))
    return gx + gy


def choose_crop(outputs: list[np.ndarray], reference: np.ndarray | None, size: int) -> Box:
    """The region to zoom: where the method outputs disagree most (per-pixel std across methods), or, with
    fewer than two outputs or identical ones, the reference's (else the first output's) highest-gradient
    patch.
    """
    images = [im for im in outputs if im is not None]
    base = reference if reference is not None else images[0]
    height, width = base.shape[:2]
    size = max(1, min(size, height, width))
    score = None
    same = [im for im in images if im.shape[:2] == (height, width)]
    if len(same) >= 2:
        stack = np.stack(same).astype(np.float64)
        score = stack.std(axis=0).mean(axis=-1)
        if not score.any():
            score = None
    if score is None:
        score = gradient_energy(base)
    y, x = _best_window(score, size)
    return Box(y, x, size)


def thumbnail(img: np.ndarray, max_side: int, box: Box | None = None) -> Image.Image:
    """Downscale (never upscale) so the longer side is at most ``max_side``; draw ``box`` if given."""
    height, width = img.shape[:2]
    factor = min(1.0, max_side / max(height, width))
    pil = Image.fromarray(img)
    if factor < 1.0:
        pil = pil.resize((max(1, round(width * factor)), max(1, round(height * factor))), Image.Resampling.BOX)
    if box is not None:
        ImageDraw.Draw(pil).rectangle(box.scaled(factor), outline=BOX_COLOUR, width=2)
    return pil


def zoomed_crop(img: np.ndarray, box: Box, display: int = 160) -> Image.Image:
    """The ``box`` region, enlarged by an integer factor (nearest) to about ``display`` pixels."""
    crop = img[box.y : box.y + box.size, box.x : box.x + box.size]
    zoom = max(1, display // box.size)
    return Image.fromarray(crop).resize((crop.shape[1] * zoom, crop.shape[0] * zoom), Image.Resampling.NEAREST)


def to_data_uri(img: Image.Image, fmt: str = "PNG") -> str:
    """Embed an image as a ``data:`` URI (PNG by default: exact pixels)."""
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    mime = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}[fmt.upper()]
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"
