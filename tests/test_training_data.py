"""Training data: sources (layouts, limit, lists, globs), crops, determinism, DDP shards, pairs, batches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from harness.core.imageio import quantize_8bit
from harness.core.mapping import ConfigError, from_dict
from harness.data.degradations.ops import usm_sharpen
from harness.data.pairing import DatasetError
from harness.data.training.config import PairedSourceConfig, SourceConfig, TrainDataConfig
from harness.data.training.datasets import HRFolderDataset, PairedTrainDataset
from harness.data.training.sampling import shard_indices
from harness.data.training.sources import resolve_sources
from harness.data.training.stream import TrainData, make_train_loader


def save_png(t: torch.Tensor, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(arr).save(path)


def coordinate_image(h: int, w: int) -> torch.Tensor:
    """R = column / 255, G = row / 255, B = 0.5: a crop reveals its origin and whether it was flipped."""
    cols = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w) / 255
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w) / 255
    return torch.stack([cols, rows, torch.full((h, w), 0.5)])


def crop_origin(crop: torch.Tensor) -> tuple[int, int, bool]:
    """(top, left, flipped) of a crop of ``coordinate_image``; asserts it is a true window of it."""
    cols = (crop[0, 0] * 255).round().long()
    rows = (crop[1, :, 0] * 255).round().long()
    flipped = bool(cols[0] > cols[-1])
    c = crop.shape[-1]
    left = int(cols.min())
    assert torch.equal(cols, torch.arange(left, left + c).flip(0) if flipped else torch.arange(left, left + c))
    assert torch.equal(rows, torch.arange(int(rows[0]), int(rows[0]) + crop.shape[-2]))
    assert torch.equal(crop[0], crop[0, :1].expand_as(crop[0]))  # R depends on the column only
    return int(rows[0]), left, flipped


@pytest.fixture(scope="module")
def hr_tree(tmp_path_factory, astronaut):
    """LSDIR-like nested folders (3 + 2 images) and an FFHQ-like tree (3 images), real photo content."""
    root = tmp_path_factory.mktemp("hr")
    small = F.interpolate(astronaut[None], size=(160, 160), mode="area")[0]
    lsdir = root / "LSDIR" / "HR" / "train"
    for i, name in enumerate(["0001000/0000003.png", "0001000/0000001.png", "0001000/0000002.png"]):
        save_png(small.roll(17 * i, dims=-1), lsdir / name)
    for i, name in enumerate(["0002000/0001001.png", "0002000/0001000.png"]):
        save_png(small.flip(-1).roll(9 * i, dims=-2), lsdir / name)
    ffhq = root / "ffhq" / "images1024x1024"
    for i in range(3):
        save_png(small.flip(-2).roll(5 * i, dims=-1), ffhq / "00000" / f"0000{i}.png")
    (lsdir / "notes.txt").write_text("not an image")
    return root


# ----------------------------------------------------------------------------------------------- sources
def test_folder_sources_are_recursive_sorted_and_limited(hr_tree):
    lsdir = hr_tree / "LSDIR" / "HR" / "train"
    files = resolve_sources([SourceConfig(path=str(lsdir))])
    assert [f.relative_to(lsdir).as_posix() for f in files] == [
        "0001000/0000001.png",
        "0001000/0000002.png",
        "0001000/0000003.png",
        "0002000/0001000.png",
        "0002000/0001001.png",
    ]
    both = resolve_sources([SourceConfig(path=str(lsdir), limit=2), SourceConfig(path=str(hr_tree / "ffhq"))])
    assert [f.name for f in both] == ["0000001.png", "0000002.png", "00000.png", "00001.png", "00002.png"]


def test_glob_and_list_file_sources(hr_tree, tmp_path):
    files = resolve_sources([SourceConfig(glob=str(hr_tree / "ffhq" / "**" / "*.png"), limit=2)])
    assert [f.name for f in files] == ["00000.png", "00001.png"]
    listing = hr_tree / "LSDIR" / "list.txt"
    listing.write_text("# train split\nHR/train/0002000/0001001.png\n\nHR/train/0001000/0000001.png\n")
    files = resolve_sources([SourceConfig(path=str(listing))])
    assert [f.name for f in files] == ["0001001.png", "0000001.png"]  # list order is kept
    (tmp_path / "bad.txt").write_text("missing.png\n")
    with pytest.raises(DatasetError, match="bad.txt: 1 listed files do not exist, e.g. .*missing.png"):
        resolve_sources([SourceConfig(path=str(tmp_path / "bad.txt"))])


def test_source_errors_are_clear(tmp_path):
    with pytest.raises(DatasetError, match="nowhere: no such folder or list file"):
        resolve_sources([SourceConfig(path=str(tmp_path / "nowhere"))])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty: no image files found"):
        resolve_sources([SourceConfig(path=str(tmp_path / "empty"))])
    with pytest.raises(ValueError, match="exactly one of path, glob, bundled: true; got \\['path', 'glob'\\]"):
        SourceConfig(path="a", glob="b/*.png")


def test_bundled_source_reads_the_shipped_photos():
    files = resolve_sources([SourceConfig(bundled=True, limit=3)])
    assert [f.name for f in files] == ["astronaut.png", "coffee.png", "chelsea.png"]


# ----------------------------------------------------------------------------------------------- crops
def test_crops_are_windows_deterministic_per_seed_epoch_index(tmp_path):
    save_png(coordinate_image(120, 200), tmp_path / "coords.png")
    ds = HRFolderDataset([tmp_path / "coords.png"], crop_size=48, flip=True, seed=3)
    a = ds[(0, 0)]
    assert a.shape == (3, 48, 48)
    assert torch.equal(a, ds[(0, 0)])
    assert torch.equal(a, HRFolderDataset([tmp_path / "coords.png"], crop_size=48, seed=3)[(0, 0)])
    origins = [crop_origin(ds[(0, epoch)]) for epoch in range(24)]
    assert len({o[:2] for o in origins}) > 20  # a new crop every epoch
    flips = sum(o[2] for o in origins)
    assert 4 <= flips <= 20  # both orientations occur
    assert all(0 <= top <= 120 - 48 and 0 <= left <= 200 - 48 for top, left, _ in origins)
    other_seed = HRFolderDataset([tmp_path / "coords.png"], crop_size=48, seed=4)
    assert crop_origin(other_seed[(0, 0)]) != origins[0]
    no_flip = HRFolderDataset([tmp_path / "coords.png"], crop_size=48, flip=False, seed=3)
    assert not any(crop_origin(no_flip[(0, e)])[2] for e in range(12))


def test_small_images_are_resized_up_to_the_crop(tmp_path, astronaut):
    small = F.interpolate(astronaut[None], size=(40, 60), mode="area")[0]
    save_png(small, tmp_path / "small.png")
    crop = HRFolderDataset([tmp_path / "small.png"], crop_size=64, flip=False)[0]
    assert crop.shape == (3, 64, 64) and 0 <= crop.min() and crop.max() <= 1
    # the short side fills the crop exactly: 40x60 -> 64x96, so the crop is a window of that resize
    up = F.interpolate(small[None], size=(64, 96), mode="bicubic", antialias=True, align_corners=False)[0]
    up = quantize_8bit(up)  # the file is 8-bit; compare at 8-bit precision
    windows = [(quantize_8bit(crop) - up[:, :, x : x + 64]).abs().max() for x in range(33)]
    assert min(windows) <= 1.5 / 255


# ----------------------------------------------------------------------------------------------- shards
def test_shards_are_disjoint_cover_everything_and_vary_by_epoch():
    r0, r1 = (shard_indices(10, seed=0, epoch=0, rank=r, world_size=2) for r in (0, 1))
    assert len(r0) == len(r1) == 5 and not set(r0) & set(r1) and set(r0) | set(r1) == set(range(10))
    assert r0 == shard_indices(10, 0, 0, 0, 2)
    assert r0 != shard_indices(10, 0, 1, 0, 2)
    p0, p1 = (shard_indices(11, 0, 0, r, 2) for r in (0, 1))  # padded by repeating the head of the order
    assert len(p0) == len(p1) == 6 and set(p0) | set(p1) == set(range(11))
    with pytest.raises(ValueError, match="rank 2 is outside world size 2"):
        shard_indices(10, 0, 0, 2, 2)


def _cfg(path, **kw) -> TrainDataConfig:
    base = {"sources": [{"path": str(path)}], "crop_size": 64, "batch_size": 2}
    return from_dict(TrainDataConfig, {**base, **kw}, path="data", source="exp.yaml")


def test_ranks_see_disjoint_images(hr_tree):
    data = TrainData(_cfg(hr_tree, flip=False, batch_size=2))  # 8 images -> 2 batches per rank
    assert data.batches_per_epoch(world_size=2) == 2
    seen = {0: [], 1: []}
    for rank in (0, 1):
        for step in range(2):
            seen[rank] += data.batch_indices(0, step, rank, world_size=2)
    assert not set(seen[0]) & set(seen[1]) and len(set(seen[0]) | set(seen[1])) == 8
    b0, b1 = data.batch_at(0, rank=0, world_size=2), data.batch_at(0, rank=1, world_size=2)
    assert not torch.equal(b0.hr, b1.hr)


# ----------------------------------------------------------------------------------------------- batches
def test_batches_shapes_and_lr_up(hr_tree):
    data = TrainData(_cfg(hr_tree))
    batch = data.batch_at(3)
    assert batch.hr.shape == batch.lr_up.shape == batch.target.shape == (2, 3, 64, 64)
    assert batch.lr.shape == (2, 3, 16, 16) and torch.equal(batch.lr * 255, (batch.lr * 255).round())
    expected = quantize_8bit(F.interpolate(batch.lr, size=(64, 64), mode="bicubic", antialias=True))
    assert torch.equal(batch.lr_up, expected)
    assert torch.equal(batch.target, batch.hr)  # stablesr_mild: no USM
    again = TrainData(_cfg(hr_tree)).batch_at(3)
    assert torch.equal(batch.lr, again.lr) and torch.equal(batch.hr, again.hr)


def test_x4plus_target_is_the_sharpened_hr_and_resize_back_is_used(hr_tree):
    cfg = _cfg(hr_tree, degradation={"name": "realesrgan_x4plus", "options": {"resize_back": True}})
    batch = TrainData(cfg).batch_at(0)
    assert torch.allclose(batch.target, usm_sharpen(batch.hr)) and not torch.equal(batch.target, batch.hr)
    assert batch.lr_up.shape == batch.hr.shape and batch.lr.shape[-1] == 16


def test_loader_matches_batch_at_and_resumes_mid_epoch(hr_tree):
    cfg = _cfg(hr_tree, num_workers=1)
    data = TrainData(cfg)
    per_epoch = data.batches_per_epoch()
    assert per_epoch == 4
    epoch1 = list(make_train_loader(cfg, None, epoch=1))
    assert len(epoch1) == 4
    for k, batch in enumerate(epoch1):
        ref = data.batch_at(per_epoch + k)
        assert torch.equal(batch.hr, ref.hr) and torch.equal(batch.lr, ref.lr)
    resumed = list(data.loader(epoch=1, start_batch=2))
    assert len(resumed) == 2
    assert torch.equal(resumed[0].lr, epoch1[2].lr) and torch.equal(resumed[1].hr, epoch1[3].hr)
    other_seed = list(make_train_loader(cfg, 7, epoch=1))
    assert not torch.equal(other_seed[0].hr, epoch1[0].hr)


def test_too_few_images_for_a_batch(hr_tree):
    data = TrainData(_cfg(hr_tree / "ffhq", batch_size=4))
    with pytest.raises(DatasetError, match="3 training images over 1 rank\\(s\\) give 3 per rank, fewer than"):
        data.batch_at(0)


# ----------------------------------------------------------------------------------------------- pairs
@pytest.fixture(scope="module")
def pair_dirs(tmp_path_factory, astronaut):
    root = tmp_path_factory.mktemp("pairs")
    for i, (top, left) in enumerate([(0, 0), (100, 180)]):
        hr = astronaut[:, top : top + 256, left : left + 192]
        lr = F.interpolate(hr[None], size=(64, 48), mode="bicubic", antialias=True)[0]
        save_png(hr, root / "HR" / f"img{i}.png")
        save_png(lr, root / "LR" / f"img{i}x4.png")
    return root


def test_paired_crops_are_aligned(pair_dirs):
    cfg = from_dict(
        TrainDataConfig,
        {
            "paired": [{"lr_dir": str(pair_dirs / "LR"), "hr_dir": str(pair_dirs / "HR"), "filename_tmpl": "{}x4"}],
            "crop_size": 96,
            "batch_size": 2,
        },
    )
    data = TrainData(cfg)
    assert isinstance(data.dataset, PairedTrainDataset) and len(data) == 2
    for step in range(3):
        batch = data.batch_at(step)
        assert batch.hr.shape == (2, 3, 96, 96) and batch.lr.shape == (2, 3, 24, 24)
        down = F.interpolate(batch.hr, size=(24, 24), mode="bicubic", antialias=True)
        inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))  # away from the crop borders
        err = (down - batch.lr)[inner].pow(2).mean()
        shifted = (down[..., :, 1:] - batch.lr[..., :, :-1])[inner].pow(2).mean()
        assert 10 * torch.log10(1 / err) > 35  # the HR crop downsampled is the LR crop
        assert shifted > 10 * err  # and a one-pixel misalignment would show
        assert torch.equal(
            batch.lr_up, quantize_8bit(F.interpolate(batch.lr, size=(96, 96), mode="bicubic", antialias=True))
        )


def test_paired_errors_name_the_files(pair_dirs, tmp_path):
    with pytest.raises(DatasetError, match="HR images without an LR partner: img0, img1"):
        PairedTrainDataset.from_folders([paired_source(pair_dirs, "{}")], scale=4, crop_size=64)
    bad = tmp_path / "bad"
    save_png(torch.rand(3, 40, 40), bad / "HR" / "a.png")
    save_png(torch.rand(3, 20, 20), bad / "LR" / "a.png")
    ds = PairedTrainDataset.from_folders([paired_source(bad, "{}")], scale=4, crop_size=16)
    with pytest.raises(DatasetError, match=r"HR .*a.png \(40x40\) does not match LR .*a.png \(20x20\) x4 = 80x80"):
        ds[0]


def paired_source(root, tmpl: str) -> PairedSourceConfig:
    return PairedSourceConfig(lr_dir=str(root / "LR"), hr_dir=str(root / "HR"), filename_tmpl=tmpl)


# ----------------------------------------------------------------------------------------------- config
def test_config_from_yaml_mapping_and_errors(hr_tree):
    cfg = _cfg(hr_tree, degradation={"name": "stablesr_mild", "options": {"jpeg_range2": [90, 100]}})
    assert cfg.sources[0].path == str(hr_tree) and cfg.degradation.options == {"jpeg_range2": [90, 100]}
    assert TrainData(cfg).degradation.cfg.jpeg_range2 == (90.0, 100.0)
    with pytest.raises(ConfigError, match="exp.yaml: data: degradation.name: unknown degradation 'foo'; valid"):
        _cfg(hr_tree, degradation={"name": "foo"})
    with pytest.raises(ConfigError, match="degradation.options.jpeg_rang: unknown key"):
        _cfg(hr_tree, degradation={"name": "stablesr_mild", "options": {"jpeg_rang": [1, 2]}})
    with pytest.raises(ConfigError, match="degradation.options.scale=2 disagrees with scale=4"):
        _cfg(hr_tree, degradation={"name": "stablesr_mild", "options": {"scale": 2}})
    with pytest.raises(ConfigError, match="crop_size=66 must be a positive multiple of scale=4"):
        _cfg(hr_tree, crop_size=66)
    assert TrainDataConfig().sources[0].bundled  # default: the bundled photos (CPU runs)
    assert TrainDataConfig().crop_size == 512
