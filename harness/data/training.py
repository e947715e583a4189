"""Training data: HR crops from image folders, degraded on the fly per batch, or pre-made LR/HR pairs.

Everything random is a pure function of the seed and the position in training, so a resumed run sees exactly
the batches it would have seen:

- the order of the images in an epoch: ``(seed, epoch)``; the DDP shard of a rank: every ``world_size``-th
  index of that order (``DistributedSampler`` semantics: the order is padded by repeating its head so that all
  ranks get the same number of images);
- the crop and flip of an image: ``(seed, epoch, index)``, whatever worker loads it;
- the degradation of a batch: ``(seed, step, rank)``, applied on the training device.

Use :class:`TrainData` (``batch_at(step, ...)`` for a step-indexed trainer, ``loader(epoch, ...)`` for a
DataLoader with workers) or :func:`make_train_loader`. Each batch is a :class:`TrainBatch`.

Sources (``TrainDataConfig.sources``): a folder (searched recursively: LSDIR's ``HR/train/0001000/*.png``
and FFHQ's ``images1024x1024/00000/*.png`` layouts alike), a ``.txt`` list file (one path per line, relative
to the list file), a glob pattern, or the bundled photographs (``bundled: true``, real photos shipped with
scikit-image/pyiqa, for CPU runs). Files are sorted by path, then ``limit`` keeps the first N ("the first 10k
FFHQ images").
"""

from __future__ import annotations

import glob as globlib
import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harness.data.degradations.base import Degradation, make_generator, quantize_8bit
from harness.data.imageio import is_image_file, load_image
from harness.data.pairing import DatasetError, check_pair_size, list_images, pair_by_stem, unpaired_message

__all__ = [
    "DegradationSpec",
    "HRFolderDataset",
    "PairedSourceConfig",
    "PairedTrainDataset",
    "SourceConfig",
    "TrainBatch",
    "TrainData",
    "TrainDataConfig",
    "build_degradation",
    "make_train_loader",
    "resolve_sources",
    "shard_indices",
]


# ----------------------------------------------------------------------------------------------- config
@dataclass
class SourceConfig:
    """One source of HR images: exactly one of ``path`` (folder or .txt list), ``glob`` or ``bundled``."""

    path: str | None = None
    glob: str | None = None
    bundled: bool = False
    limit: int | None = None  # keep the first N files (sorted by path)

    def __post_init__(self) -> None:
        given = [k for k in ("path", "glob", "bundled") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"a source needs exactly one of path, glob, bundled: true; got {given or 'none'}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")


@dataclass
class PairedSourceConfig:
    """Pre-made LR/HR pairs: images directly in ``lr_dir`` / ``hr_dir``, paired by file stem."""

    lr_dir: str
    hr_dir: str
    filename_tmpl: str = "{}"  # LR stem from the HR stem, e.g. '{}x4'
    limit: int | None = None


@dataclass
class DegradationSpec:
    """A registered degradation and its options (``scale`` comes from the data config)."""

    name: str = "stablesr_mild"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainDataConfig:
    """What a trainer embeds as its ``data:`` block."""

    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig(bundled=True)])
    paired: list[PairedSourceConfig] = field(default_factory=list)  # when given, used instead of sources
    scale: int = 4
    crop_size: int = 512  # HR crop; a smaller image has its short side resized up to it first
    flip: bool = True
    degradation: DegradationSpec = field(default_factory=DegradationSpec)
    batch_size: int = 4  # per rank
    num_workers: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scale < 1 or self.crop_size < self.scale or self.crop_size % self.scale:
            raise ValueError(f"crop_size={self.crop_size} must be a positive multiple of scale={self.scale}")
        if self.batch_size < 1 or self.num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {self.batch_size}, {self.num_workers}")
        if not self.paired and not self.sources:
            raise ValueError("give at least one entry in sources (HR images) or paired (LR/HR folders)")
        if not self.paired:
            build_degradation(self.degradation, self.scale, validate_only=True)


def build_degradation(spec: DegradationSpec, scale: int, validate_only: bool = False) -> Degradation | None:
    """Build the registered degradation ``spec.name`` with ``spec.options`` (``scale`` filled in, checked)."""
    from harness import registry
    from harness.config import ConfigError, from_dict

    options = dict(spec.options)
    if options.setdefault("scale", scale) != scale:
        raise ValueError(f"degradation.options.scale={options['scale']} disagrees with scale={scale}; set scale only")
    try:
        entry = registry.get("degradations", spec.name)
    except registry.RegistryError as exc:
        raise ValueError(f"degradation.name: {exc}") from None
    if entry.config is not None:
        try:
            options = from_dict(entry.config, options, path="degradation.options", source="data")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("data: ")) from None
    return None if validate_only else registry.build("degradations", spec.name, options)


# ----------------------------------------------------------------------------------------------- sources
def _sorted_images(paths: Sequence[Path], base: Path | None = None) -> list[Path]:
    keyed = [(p.relative_to(base).as_posix() if base else p.as_posix(), p) for p in paths]
    return [p for _, p in sorted(keyed)]


def _list_source(src: SourceConfig) -> list[Path]:
    if src.bundled:
        from harness.data import bundled

        return list(bundled.resolve_images(None, None).values())
    if src.glob is not None:
        found = [Path(p) for p in globlib.glob(str(Path(src.glob).expanduser()), recursive=True)]
        files = _sorted_images([p for p in found if p.is_file() and is_image_file(p)])
        if not files:
            raise DatasetError(f"glob {src.glob!r}: matched no image files")
        return files
    path = Path(src.path).expanduser()
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and is_image_file(p) and not p.name.startswith(".")]
        if not found:
            raise DatasetError(f"{path}: no image files found (searched recursively for *.png, *.jpg, ...)")
        return _sorted_images(found, path)
    if path.is_file() and is_image_file(path):
        return [path]
    if path.is_file():
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        files = [(path.parent / ln).expanduser() for ln in lines if ln and not ln.startswith("#")]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise DatasetError(f"{path}: {len(missing)} listed files do not exist, e.g. {missing[0]}")
        if not files:
            raise DatasetError(f"{path}: the list file names no images")
        return files
    raise DatasetError(f"{path}: no such folder or list file")


def resolve_sources(sources: Sequence[SourceConfig]) -> list[Path]:
    """All HR image files of ``sources``, each sorted by path and cut to its ``limit``, in source order."""
    files: list[Path] = []
    for src in sources:
        found = _list_source(src)
        files.extend(found[: src.limit] if src.limit is not None else found)
    return files


# ----------------------------------------------------------------------------------------------- randomness
def mix_seed(*parts: int | str) -> int:
    """A 63-bit seed from ``parts`` (stable across processes and Python versions, unlike ``hash``)."""
    text = ":".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)


def shard_indices(n: int, seed: int, epoch: int, rank: int, world_size: int, shuffle: bool = True) -> list[int]:
    """This rank's image indices for ``epoch`` (DistributedSampler semantics).

    A permutation seeded by (seed, epoch), padded to a multiple of ``world_size`` by repeating its head, then
    every ``world_size``-th element starting at ``rank``.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    if n < 1:
        raise DatasetError("the training set is empty")
    order = (
        torch.randperm(n, generator=make_generator(mix_seed(seed, "order", epoch))).tolist()
        if shuffle
        else list(range(n))
    )
    total = math.ceil(n / world_size) * world_size
    order = (order * math.ceil(total / n))[:total]
    return order[rank:total:world_size]


def _crop_origin(gen: torch.Generator, h: int, w: int, ch: int, cw: int) -> tuple[int, int]:
    top = int(torch.randint(0, h - ch + 1, (), generator=gen))
    left = int(torch.randint(0, w - cw + 1, (), generator=gen))
    return top, left


# ----------------------------------------------------------------------------------------------- datasets
class HRFolderDataset(torch.utils.data.Dataset):
    """HR images -> random ``crop_size`` crops (short side resized up when smaller), random h-flip.

    ``dataset[(index, epoch)]`` (or ``dataset[index]`` for epoch 0) is a (3, crop, crop) float tensor in
    [0, 1], a pure function of (seed, epoch, index).
    """

    def __init__(self, files: Sequence[Path], crop_size: int = 512, flip: bool = True, seed: int = 0) -> None:
        if not files:
            raise DatasetError("HRFolderDataset: no image files")
        self.files = [Path(f) for f in files]
        self.crop_size = crop_size
        self.flip = flip
        self.seed = seed

    @classmethod
    def from_sources(cls, sources: Sequence[SourceConfig], **kwargs: Any) -> HRFolderDataset:
        return cls(resolve_sources(sources), **kwargs)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: int | tuple[int, int]) -> torch.Tensor:
        index, epoch = item if isinstance(item, tuple) else (item, 0)
        gen = make_generator(mix_seed(self.seed, "crop", epoch, index))
        img = load_image(self.files[index])
        c = self.crop_size
        h, w = img.shape[-2:]
        if min(h, w) < c:  # resize the short side up to the crop size (bicubic, a = -0.5 as PIL)
            f = c / min(h, w)
            h, w = max(c, round(h * f)), max(c, round(w * f))
            img = F.interpolate(img[None], size=(h, w), mode="bicubic", antialias=True, align_corners=False)[0]
            img = img.clamp(0.0, 1.0)
        top, left = _crop_origin(gen, h, w, c, c)
        crop = img[:, top : top + c, left : left + c]
        if self.flip and bool(torch.rand((), generator=gen) < 0.5):
            crop = crop.flip(-1)
        return crop.contiguous()


class PairedTrainDataset(torch.utils.data.Dataset):
    """LR/HR pairs -> aligned random crops: HR ``crop_size`` at (y*s, x*s), LR ``crop_size/s`` at (y, x).

    ``dataset[(index, epoch)]`` is ``(hr, lr)``, a pure function of (seed, epoch, index); flips apply to both.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        scale: int = 4,
        crop_size: int = 512,
        flip: bool = True,
        seed: int = 0,
    ) -> None:
        if not pairs:
            raise DatasetError("PairedTrainDataset: no LR/HR pairs")
        if crop_size % scale:
            raise ValueError(f"crop_size={crop_size} must be a multiple of scale={scale}")
        self.pairs = [(Path(lr), Path(hr)) for lr, hr in pairs]
        self.scale, self.crop_size, self.flip, self.seed = scale, crop_size, flip, seed

    @classmethod
    def from_folders(cls, sources: Sequence[PairedSourceConfig], **kwargs: Any) -> PairedTrainDataset:
        pairs: list[tuple[Path, Path]] = []
        for src in sources:
            lr_dir, hr_dir = Path(src.lr_dir).expanduser(), Path(src.hr_dir).expanduser()
            found, hr_alone, lr_alone = pair_by_stem(
                list_images(lr_dir, "LR"), list_images(hr_dir, "HR"), src.filename_tmpl
            )
            if hr_alone or lr_alone:
                raise DatasetError(unpaired_message(lr_dir, hr_dir, hr_alone, lr_alone, src.filename_tmpl))
            found = found[: src.limit] if src.limit is not None else found
            pairs.extend((p.lr, p.hr) for p in found)
        return cls(pairs, **kwargs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, epoch = item if isinstance(item, tuple) else (item, 0)
        gen = make_generator(mix_seed(self.seed, "pair-crop", epoch, index))
        lr_path, hr_path = self.pairs[index]
        lr, hr = load_image(lr_path), load_image(hr_path)
        crop = check_pair_size(lr_path, tuple(lr.shape[-2:]), hr_path, tuple(hr.shape[-2:]), self.scale, True)
        s, c = self.scale, self.crop_size
        lc = c // s
        h, w = lr.shape[-2:]
        if min(h, w) < lc:
            raise DatasetError(f"{lr_path}: LR {w}x{h} is smaller than the LR crop {lc} (crop_size={c}/scale={s})")
        if crop is not None:
            hr = hr[:, : crop[0], : crop[1]]
        top, left = _crop_origin(gen, h, w, lc, lc)
        lr = lr[:, top : top + lc, left : left + lc]
        hr = hr[:, top * s : (top + lc) * s, left * s : (left + lc) * s]
        if self.flip and bool(torch.rand((), generator=gen) < 0.5):
            lr, hr = lr.flip(-1), hr.flip(-1)
        return hr.contiguous(), lr.contiguous()


def stack_collate(items: list) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Stack tensors (HR crops) or tuples of tensors ((hr, lr) pairs) into batches."""
    if isinstance(items[0], torch.Tensor):
        return torch.stack(items)
    return tuple(torch.stack(parts) for parts in zip(*items))


# ----------------------------------------------------------------------------------------------- batches
@dataclass
class TrainBatch:
    """One training batch on the device. All (B, 3, ., .) in [0, 1], 8-bit-valued LR.

    ``hr``: the HR crops; ``lr``: (H/s, W/s) LR; ``lr_up``: LR resized back to HR size (the model input of
    VARSR; bicubic a = -0.5 as PIL, or the degradation's random-mode resize when ``resize_back``);
    ``target``: the supervision target (the USM-sharpened HR for Real-ESRGAN ``use_usm``, else ``hr``).
    """

    hr: torch.Tensor
    lr: torch.Tensor
    lr_up: torch.Tensor
    target: torch.Tensor

    def __len__(self) -> int:
        return self.hr.shape[0]


def upsample_bicubic(lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """LR -> ``size`` bicubic (a = -0.5, PIL's kernel), clamped and rounded to 8-bit levels."""
    return quantize_8bit(F.interpolate(lr, size=size, mode="bicubic", antialias=True, align_corners=False))


class TrainData:
    """A training set built from a :class:`TrainDataConfig`: the dataset plus the on-the-fly degradation."""

    def __init__(self, cfg: TrainDataConfig, seed: int | None = None) -> None:
        self.cfg = cfg
        self.seed = cfg.seed if seed is None else seed
        common = {"crop_size": cfg.crop_size, "flip": cfg.flip, "seed": self.seed}
        if cfg.paired:
            self.dataset: torch.utils.data.Dataset = PairedTrainDataset.from_folders(
                cfg.paired, scale=cfg.scale, **common
            )
            self.degradation = None
        else:
            self.dataset = HRFolderDataset.from_sources(cfg.sources, **common)
            self.degradation = build_degradation(cfg.degradation, cfg.scale)

    def __len__(self) -> int:
        return len(self.dataset)

    def batches_per_epoch(self, world_size: int = 1) -> int:
        per_rank = math.ceil(len(self.dataset) / world_size)
        n = per_rank // self.cfg.batch_size
        if n == 0:
            raise DatasetError(
                f"{len(self.dataset)} training images over {world_size} rank(s) give {per_rank} per rank, "
                f"fewer than batch_size={self.cfg.batch_size}; add images or lower the batch size"
            )
        return n

    def batch_indices(self, epoch: int, position: int, rank: int = 0, world_size: int = 1) -> list[int]:
        bs = self.cfg.batch_size
        return shard_indices(len(self.dataset), self.seed, epoch, rank, world_size)[position * bs : (position + 1) * bs]

    def finish(self, raw: Any, step: int, rank: int, device: torch.device | str) -> TrainBatch:
        """Collated dataset output -> :class:`TrainBatch` on ``device`` (degradation seeded by step, rank)."""
        if self.degradation is None:
            hr, lr = (t.to(device, non_blocking=True) for t in raw)
            return TrainBatch(hr=hr, lr=lr, lr_up=upsample_bicubic(lr, tuple(hr.shape[-2:])), target=hr)
        hr = raw.to(device, non_blocking=True)
        gen = make_generator(mix_seed(self.seed, "degrade", step, rank), device=hr.device)
        if hasattr(self.degradation, "degrade_batch"):
            out = self.degradation.degrade_batch(hr, gen)
            lr, target, lr_up = out.lr, out.gt, out.lr_up
        else:
            lr, target, lr_up = self.degradation(hr, gen), hr, None
        if lr_up is None:
            lr_up = upsample_bicubic(lr, tuple(hr.shape[-2:]))
        return TrainBatch(hr=hr, lr=lr, lr_up=lr_up, target=target)

    def batch_at(self, step: int, rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu") -> TrainBatch:
        """The batch of global ``step`` for ``rank``, loaded in this process (what ``loader`` yields)."""
        epoch, position = divmod(step, self.batches_per_epoch(world_size))
        raw = stack_collate([self.dataset[(i, epoch)] for i in self.batch_indices(epoch, position, rank, world_size)])
        return self.finish(raw, step, rank, device)

    def loader(
        self,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
        start_batch: int = 0,
    ) -> TrainLoader:
        """The batches of ``epoch`` for ``rank``, from ``start_batch`` on (to resume mid-epoch)."""
        return TrainLoader(self, epoch, rank, world_size, torch.device(device), start_batch)


class TrainLoader:
    """The :class:`TrainBatch` es of one epoch of one rank; images are loaded by DataLoader workers."""

    def __init__(
        self, data: TrainData, epoch: int, rank: int, world_size: int, device: torch.device, start_batch: int
    ) -> None:
        self.data, self.epoch, self.rank, self.device = data, epoch, rank, device
        self.per_epoch = data.batches_per_epoch(world_size)
        self.start_batch = start_batch
        bs = data.cfg.batch_size
        shard = shard_indices(len(data.dataset), data.seed, epoch, rank, world_size)
        items = [(i, epoch) for i in shard[start_batch * bs : self.per_epoch * bs]]
        self._loader = torch.utils.data.DataLoader(
            data.dataset,
            batch_sampler=[items[k : k + bs] for k in range(0, len(items), bs)],
            num_workers=data.cfg.num_workers,
            collate_fn=stack_collate,
            pin_memory=device.type == "cuda",
        )

    def __len__(self) -> int:
        return max(0, self.per_epoch - self.start_batch)

    def __iter__(self) -> Iterator[TrainBatch]:
        for k, raw in enumerate(self._loader):
            step = self.epoch * self.per_epoch + self.start_batch + k
            yield self.data.finish(raw, step, self.rank, self.device)


def make_train_loader(
    cfg: TrainDataConfig,
    seed: int | None,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str = "cpu",
    start_batch: int = 0,
) -> TrainLoader:
    """The :class:`TrainLoader` of ``epoch`` for ``rank`` of ``world_size`` (``seed`` None: ``cfg.seed``)."""
    return TrainData(cfg, seed).loader(epoch, rank, world_size, device, start_batch)
