"""Find image files, pair LR with HR by file stem, detect standard test-set layouts, check sizes.

Pure functions over paths (only image *headers* are read), so a dataset is fully validated before any
method runs: a missing partner or a wrong size is reported up front, naming the files, not after an hour of
inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from harness.core.imageio import is_image_file

# (lr, hr) subfolder names of the standard SR test sets, in the order they are tried:
# StableSR/OSEDiff RealSR & DRealSR, StableSR DIV2K_V2_val, VARSR testsets.
KNOWN_LAYOUTS: tuple[tuple[str, str], ...] = (("test_LR", "test_HR"), ("lq", "gt"), ("LR", "HR"))


class DatasetError(ValueError):
    """A dataset folder problem, phrased for the user (which path, what was expected, how to fix)."""


def _preview(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def list_images(folder: Path, role: str) -> dict[str, Path]:
    """Image files directly in ``folder`` by stem (hidden files skipped). ``role`` names it in errors."""
    if not folder.exists():
        raise DatasetError(f"{folder}: {role} folder not found; put the {role} images in {folder}")
    if not folder.is_dir():
        raise DatasetError(f"{folder}: expected a folder of {role} images, found a file")
    by_stem: dict[str, Path] = {}
    dupes: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or not is_image_file(path):
            continue
        if path.stem in by_stem:
            dupes.append(f"{by_stem[path.stem].name} / {path.name}")
        by_stem[path.stem] = path
    if dupes:
        raise DatasetError(f"{folder}: several {role} images share a file stem: {_preview(dupes)}")
    if not by_stem:
        raise DatasetError(f"{folder}: no {role} images found (looked for *.png, *.jpg, ...)")
    return by_stem


def detect_layout(root: Path) -> tuple[Path, Path]:
    """(lr_dir, hr_dir) under ``root``: the first known layout present (``test_LR/test_HR``, ``lq/gt``...)."""
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root folder not found")
    for lr_name, hr_name in KNOWN_LAYOUTS:
        if (root / lr_name).is_dir() and (root / hr_name).is_dir():
            return root / lr_name, root / hr_name
    tried = ", ".join(f"{lr}/{hr}" for lr, hr in KNOWN_LAYOUTS)
    found = sorted(p.name for p in root.iterdir() if p.is_dir()) or ["(no subfolders)"]
    raise DatasetError(
        f"{root}: no known LR/HR subfolders (tried {tried}; found {', '.join(found)}); set lr_dir and hr_dir explicitly"
    )


@dataclass(frozen=True)
class Pair:
    key: str  # HR file stem
    lr: Path
    hr: Path


def pair_by_stem(
    lr: dict[str, Path], hr: dict[str, Path], filename_tmpl: str = "{}"
) -> tuple[list[Pair], list[str], list[str]]:
    """Pair HR stem ``s`` with LR stem ``filename_tmpl.format(s)`` (BasicSR's convention, e.g. ``'{}x4'``).

    Returns (pairs sorted by key, HR stems without an LR partner, LR stems without an HR partner).
    """
    pairs: list[Pair] = []
    used: set[str] = set()
    hr_alone: list[str] = []
    for stem in sorted(hr):
        lr_stem = filename_tmpl.format(stem)
        if lr_stem in lr:
            pairs.append(Pair(stem, lr[lr_stem], hr[stem]))
            used.add(lr_stem)
        else:
            hr_alone.append(stem)
    lr_alone = sorted(set(lr) - used)
    return pairs, hr_alone, lr_alone


def unpaired_message(lr_dir: Path, hr_dir: Path, hr_alone: list[str], lr_alone: list[str], tmpl: str) -> str:
    parts = [f"LR {lr_dir} and HR {hr_dir} do not pair up by file stem"]
    if tmpl != "{}":
        parts[0] += f" (LR name = filename_tmpl {tmpl!r} applied to the HR stem)"
    if hr_alone:
        parts.append(f"HR images without an LR partner: {_preview(hr_alone)}")
    if lr_alone:
        parts.append(f"LR images without an HR partner: {_preview(lr_alone)}")
    parts.append("add the missing files, or set on_missing: skip to evaluate only the complete pairs")
    return "; ".join(parts)


def image_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from the file header, or None when the header cannot be read (reported on load)."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Exception:  # noqa: BLE001 - a corrupt file is reported by load_image when the sample is read
        return None
    return height, width


def check_pair_size(
    lr_path: Path, lr_hw: tuple[int, int], hr_path: Path, hr_hw: tuple[int, int], scale: int, mod_crop: bool
) -> tuple[int, int] | None:
    """Validate HR size against LR size x scale. Returns the HR crop (h, w) if one is needed, else None.

    With ``mod_crop`` an HR that is larger by less than ``scale`` pixels (not a multiple of it) is cropped to
    LR x scale from the top-left, as BasicSR's ``mod_crop`` does. Anything else raises, naming both files.
    """
    want = (lr_hw[0] * scale, lr_hw[1] * scale)
    if hr_hw == want:
        return None

    def fmt(hw: tuple[int, int]) -> str:
        return f"{hw[1]}x{hw[0]}"  # W x H, as image viewers print it

    base = f"HR {hr_path} ({fmt(hr_hw)}) does not match LR {lr_path} ({fmt(lr_hw)}) x{scale} = {fmt(want)}"
    over = (hr_hw[0] - want[0], hr_hw[1] - want[1])
    if 0 <= over[0] < scale and 0 <= over[1] < scale:
        if mod_crop:
            return want
        raise DatasetError(
            f"{base}: HR size is not divisible by {scale}; set mod_crop: true to crop HR to {fmt(want)} "
            f"(BasicSR convention)"
        )
    raise DatasetError(f"{base}; check scale (is it x{scale}?) and that the folders hold matching images")
