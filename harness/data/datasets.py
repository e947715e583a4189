"""SR test datasets: ``paired`` (LR/HR folders), ``single`` (LR only, no GT), ``bundled`` (embedded photos).

Every dataset is an :class:`SRDataset`: a sequence of :class:`Sample` loaded lazily from files, with keys
(file stems) known and pairs validated at construction (only image headers are read). Loading a sample that
cannot be decoded raises :class:`~harness.core.imageio.ImageError` naming the file; the runner decides whether
that fails the run or skips the image (``bench.on_corrupt``), see :meth:`SRDataset.samples`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from harness.core.imageio import ImageError, load_image
from harness.core.registry import register
from harness.data import bundled, pairing
from harness.data.pairing import DatasetError

log = logging.getLogger(__name__)

__all__ = [
    "Sample",
    "SRDataset",
    "DatasetError",
    "ImageError",
    "PairedConfig",
    "SingleConfig",
    "BundledConfig",
]


@dataclass
class Sample:
    key: str  # file stem, unique in the dataset
    lr: torch.Tensor  # (3, h, w) float32 in [0, 1]
    hr: torch.Tensor | None  # (3, h*scale, w*scale), or None for datasets without ground truth
    lr_path: Path | None = None
    hr_path: Path | None = None


@dataclass(frozen=True)
class _Item:
    key: str
    lr: Path
    hr: Path | None


class SRDataset:
    """A sequence of :class:`Sample`, loaded lazily from image files.

    ``__getitem__`` raises ImageError (naming the file) for a file that cannot be decoded and DatasetError for
    a pair whose sizes do not match (checked again on load, in case the header could not be read earlier).
    """

    def __init__(self, name: str, scale: int, items: list[_Item], mod_crop: bool = False) -> None:
        if scale < 1:
            raise DatasetError(f"dataset {name!r}: scale must be >= 1, got {scale}")
        self.name = name
        self.scale = scale
        self.mod_crop = mod_crop  # crop HR to LR*scale when a few pixels larger (checked on every load)
        self._items = list(items)
        self._index = {item.key: i for i, item in enumerate(self._items)}
        self.has_reference = bool(self._items) and all(item.hr is not None for item in self._items)

    @property
    def keys(self) -> list[str]:
        return [item.key for item in self._items]

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> Sample:
        if not -len(self) <= i < len(self):
            raise IndexError(f"dataset {self.name!r} has {len(self)} samples, index {i} is out of range")
        item = self._items[i]
        lr = load_image(item.lr)
        hr = None
        if item.hr is not None:
            hr = load_image(item.hr)
            crop = pairing.check_pair_size(
                item.lr, tuple(lr.shape[-2:]), item.hr, tuple(hr.shape[-2:]), self.scale, self.mod_crop
            )
            if crop is not None:
                hr = hr[:, : crop[0], : crop[1]].contiguous()
        return Sample(item.key, lr, hr, item.lr, item.hr)

    def path_of(self, key: str) -> tuple[Path | None, Path | None]:
        """(LR path, HR path or None) of the sample ``key``."""
        if key not in self._index:
            raise KeyError(f"dataset {self.name!r} has no image {key!r}")
        item = self._items[self._index[key]]
        return item.lr, item.hr

    def samples(self, on_corrupt: Literal["fail", "skip"] = "fail") -> Iterator[Sample]:
        """Iterate samples; with ``on_corrupt='skip'`` an undecodable file is warned about and skipped."""
        for i in range(len(self)):
            try:
                yield self[i]
            except ImageError as exc:
                if on_corrupt != "skip":
                    raise
                log.warning(f"dataset {self.name!r}: skipping {self._items[i].key}: {exc}")

    def __repr__(self) -> str:
        ref = "with GT" if self.has_reference else "no GT"
        return f"{type(self).__name__}(name={self.name!r}, n={len(self)}, scale={self.scale}, {ref})"


# --------------------------------------------------------------------------------------------- paired
@dataclass
class PairedConfig:
    """LR and HR folders paired by file stem (BasicSR PairedImageDataset semantics, validated up front)."""

    root: str | None = None  # lr_dir / hr_dir are relative to it; alone: auto-detect test_LR/test_HR, lq/gt
    lr_dir: str | None = None
    hr_dir: str | None = None
    scale: int = 4
    filename_tmpl: str = "{}"  # LR stem from the HR stem, e.g. '{}x4' for DIV2K_valid_LR_bicubic/X4
    on_missing: Literal["error", "skip"] = "error"
    mod_crop: bool = False  # crop HR to LR*scale when it is a few pixels larger (BasicSR mod_crop)

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        if "{}" not in self.filename_tmpl:
            raise ValueError(f"filename_tmpl must contain '{{}}' (the HR stem), got {self.filename_tmpl!r}")
        if self.root is None and (self.lr_dir is None or self.hr_dir is None):
            raise ValueError("give root (auto-detects test_LR/test_HR or lq/gt), or both lr_dir and hr_dir")
        if (self.lr_dir is None) != (self.hr_dir is None):
            raise ValueError("give both lr_dir and hr_dir, or neither (with root: auto-detect the layout)")


def _resolve(root: str | None, sub: str) -> Path:
    path = Path(sub).expanduser()
    return path if root is None or path.is_absolute() else Path(root).expanduser() / path


def paired_dataset(cfg: PairedConfig) -> SRDataset:
    if cfg.lr_dir is None:
        lr_dir, hr_dir = pairing.detect_layout(Path(cfg.root).expanduser())
    else:
        lr_dir, hr_dir = _resolve(cfg.root, cfg.lr_dir), _resolve(cfg.root, cfg.hr_dir)
    lr_files = pairing.list_images(lr_dir, "LR")
    hr_files = pairing.list_images(hr_dir, "HR")
    pairs, hr_alone, lr_alone = pairing.pair_by_stem(lr_files, hr_files, cfg.filename_tmpl)
    if hr_alone or lr_alone:
        message = pairing.unpaired_message(lr_dir, hr_dir, hr_alone, lr_alone, cfg.filename_tmpl)
        if cfg.on_missing == "error" or not pairs:
            raise DatasetError(message)
        log.warning(f"skipping unpaired images: {message}")
    items = []
    for pair in pairs:
        lr_hw, hr_hw = pairing.image_size(pair.lr), pairing.image_size(pair.hr)
        if lr_hw is not None and hr_hw is not None:  # unreadable headers: reported by load_image later
            pairing.check_pair_size(pair.lr, lr_hw, pair.hr, hr_hw, cfg.scale, cfg.mod_crop)
        items.append(_Item(pair.key, pair.lr, pair.hr))
    name = Path(cfg.root).name if cfg.root else hr_dir.parent.name or hr_dir.name
    return SRDataset(name, cfg.scale, items, mod_crop=cfg.mod_crop)


register("datasets", "paired", config=PairedConfig, description="LR/HR folders paired by file stem")(paired_dataset)


# --------------------------------------------------------------------------------------------- single
@dataclass
class SingleConfig:
    """A folder of LR images without ground truth (no-reference metrics only)."""

    lr_dir: str
    scale: int = 4

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")


def single_dataset(cfg: SingleConfig) -> SRDataset:
    lr_dir = Path(cfg.lr_dir).expanduser()
    files = pairing.list_images(lr_dir, "LR")
    items = [_Item(stem, path, None) for stem, path in sorted(files.items())]
    return SRDataset(lr_dir.name, cfg.scale, items)


register("datasets", "single", config=SingleConfig, description="LR folder only (no ground truth)")(single_dataset)


# --------------------------------------------------------------------------------------------- bundled
@dataclass
class BundledConfig:
    """Real photos shipped with scikit-image and pyiqa, degraded once and cached (harness.data.bundled)."""

    images: list[str] | None = None  # default: all installed of bundled.DEFAULT_IMAGES (or of split)
    split: str = "all"  # all | train | eval: the disjoint halves of bundled.SPLITS
    hr_size: int = 256
    tile: int | None = None  # cut each hr_size square into tile x tile HR tiles (each its own image)
    count: int | None = None
    degradation: str = "bicubic"
    degradation_options: dict = field(default_factory=dict)
    seed: int = 0
    scale: int = 4
    cache_dir: str | None = None  # default: $ALIGNVAR_CACHE/bundled or ~/.cache/alignvar-bench/bundled

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        if self.hr_size < self.scale or self.hr_size % self.scale:
            raise ValueError(f"hr_size={self.hr_size} must be a positive multiple of scale={self.scale}")
        if self.count is not None and self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        if self.split not in bundled.SPLIT_CHOICES:
            raise ValueError(f"unknown split {self.split!r}; valid choices: {', '.join(bundled.SPLIT_CHOICES)}")
        if self.images is not None and self.split != "all":
            raise ValueError(f"give either images or split={self.split!r}, not both")
        if self.tile is not None and (self.tile < self.scale or self.tile % self.scale or self.hr_size % self.tile):
            raise ValueError(
                f"tile={self.tile} must divide hr_size={self.hr_size} and be a multiple of scale={self.scale}"
            )


def bundled_dataset(cfg: BundledConfig) -> SRDataset:
    cache_root = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else bundled.default_cache_root() / "bundled"
    images = bundled.resolve_images(cfg.images, cfg.count, cfg.split)
    files = bundled.ensure_bundled(
        images, cfg.hr_size, cfg.scale, cfg.degradation, cfg.degradation_options, cfg.seed, cache_root, cfg.tile
    )
    items = [_Item(k, files.lr_dir / f"{k}.png", files.hr_dir / f"{k}.png") for k in files.keys]
    dataset = SRDataset("bundled", cfg.scale, items)
    dataset.cache_path = files.root  # where the PNGs are (for reports / debugging)
    dataset.generated = files.generated  # False when read from the cache
    dataset.digests = files.digests  # sha256 of every PNG, checked against the cache manifest
    return dataset


register(
    "datasets",
    "bundled",
    config=BundledConfig,
    description="real photos shipped with scikit-image/pyiqa, degraded and cached (no download)",
)(bundled_dataset)
