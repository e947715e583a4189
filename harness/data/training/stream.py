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

The pieces live in their own modules and are re-exported here: the config (``harness.data.training.config``),
source listing (``harness.data.training.sources``), seeds and DDP shards (``harness.data.training.sampling``) and the
crop datasets (``harness.data.training.datasets``). This module turns them into device batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from harness.core.imageio import quantize_8bit
from harness.data.degradations.base import make_generator
from harness.data.pairing import DatasetError
from harness.data.training.config import (
    DegradationSpec,
    PairedSourceConfig,
    SourceConfig,
    TrainDataConfig,
    build_degradation,
)
from harness.data.training.datasets import HRFolderDataset, PairedTrainDataset, stack_collate
from harness.data.training.sampling import mix_seed, shard_indices
from harness.data.training.sources import resolve_sources

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
