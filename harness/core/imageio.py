"""Image files <-> tensors. RGB float32 in [0, 1], shape (3, H, W). Modes are converted or refused clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from harness.core.atomic import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageError(ValueError):
    """An image file that cannot be used; the message names the file."""


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def pil_to_tensor(img: Image.Image, source: str = "<image>") -> torch.Tensor:
    """PIL image in any common mode -> (3, H, W) float32 in [0, 1].

    L/LA/P/RGBA/CMYK/YCbCr are converted to RGB (alpha is dropped: composited on black is *not* done, the
    colour channels are kept as stored); 16-bit grayscale ('I;16', 'I') is scaled from [0, 65535]; float
    images ('F') are refused because their range is unknown.
    """
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / peak, 0.0, 1.0).astype(np.float32)
        return torch.from_numpy(np.repeat(arr[None], 3, axis=0).copy())
    if mode == "F":
        raise ImageError(f"{source}: 32-bit float images (PIL mode 'F') are not supported; save as 8/16-bit PNG")
    if mode not in ("RGB",):
        if mode in ("1", "L", "LA", "P", "PA", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "RGBa", "La"):
            img = img.convert("RGB")
        else:
            raise ImageError(f"{source}: unsupported image mode {mode!r}; convert it to RGB PNG")
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def load_image(path: str | Path) -> torch.Tensor:
    """Read an image file -> (3, H, W) float32 in [0, 1]. Raises ImageError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: file not found")
    try:
        with Image.open(path) as img:
            if _is_16bit_colour(img):
                return _load_16bit_colour(path)
            img.load()
            return pil_to_tensor(img, str(path))
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from None


def _is_16bit_colour(img: Image.Image) -> bool:
    """True for 48/64-bit RGB(A) files, which PIL would silently reduce to 8 bits per channel."""
    if img.mode not in ("RGB", "RGBA"):
        return False
    for tile in getattr(img, "tile", None) or ():
        args = tile[3] if isinstance(tile, tuple) else getattr(tile, "args", None)
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
    return False


def _load_16bit_colour(path: Path) -> torch.Tensor:
    """Read a 16-bit RGB(A) PNG/TIFF at full precision with OpenCV (alpha dropped), scaled from [0, 65535]."""
    import cv2  # opencv-python-headless comes with pyiqa

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageError(f"{path}: cannot decode 16-bit colour image")
    rgb = arr[:, :, 2::-1].astype(np.float32) / (65535.0 if arr.dtype == np.uint16 else 255.0)
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).clamp_(0.0, 1.0).contiguous()


def quantize_8bit(img: torch.Tensor) -> torch.Tensor:
    """Round [0, 1] values to the nearest of the 256 levels of an 8-bit image, exactly as ``save_image`` does
    (half up), so that metrics on a quantised tensor equal those of the saved PNG."""
    return img.clamp(0.0, 1.0).mul(255.0).add(0.5).floor().div(255.0)


def tensor_to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounded half away from zero."""
    if img.dim() == 4:
        if img.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {img.shape[0]}")
        img = img[0]
    arr = img.detach().float().clamp(0, 1).mul(255.0).add(0.5).floor().to(torch.uint8)
    return arr.permute(1, 2, 0).cpu().numpy()


def save_image(img: torch.Tensor, path: str | Path) -> Path:
    """Write (3, H, W) in [0, 1] as an 8-bit image (format from the suffix, PNG by default), atomically."""
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    with atomic_path(path) as tmp:
        Image.fromarray(tensor_to_uint8(img)).save(tmp, format=Image.registered_extensions()[path.suffix.lower()])
    return path
