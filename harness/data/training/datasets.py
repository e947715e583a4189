"""Training datasets: random HR crops of image files, or aligned LR/HR crops of pre-made pairs.

Every crop and flip is a pure function of (seed, epoch, index), whatever DataLoader worker loads it:
``dataset[(index, epoch)]``. ``stack_collate`` batches what they return.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harness.core.imageio import load_image
from harness.data.degradations.base import make_generator
from harness.data.pairing import DatasetError, check_pair_size, list_images, pair_by_stem, unpaired_message
from harness.data.training.config import PairedSourceConfig, SourceConfig
from harness.data.training.sampling import mix_seed
from harness.data.training.sources import resolve_sources


def _crop_origin(gen: torch.Generator, h: int, w: int, ch: int, cw: int) -> tuple[int, int]:
    top = int(torch.randint(0, h - ch + 1, (), generator=gen))
    left = int(torch.randint(0, w - cw + 1, (), generator=gen))
    return top, left


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
