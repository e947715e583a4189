"""The tiny recipe's pieces: the tiny8 arch (downsampling-8 tokenizer under the 1/16 LR prefix), the bundled
train/eval split and tiles, GroupNorm groups of narrow tokenizers, the planted token perturbation, ``pkg://``
checkpoint references and the comparison rules the demo and the controls rely on."""

from __future__ import annotations

import pytest
import torch

from harness.core.mapping import ConfigError
from harness.core.registry import create
from harness.data import bundled as bundled_mod
from methods.alignvar.configs import AlignVARConfig, SCAConfig, get_arch
from methods.alignvar.model import AlignVAR
from methods.alignvar.rope import token_positions
from methods.alignvar.sampling import planted_token_hook
from methods.alignvar.vae_blocks import normalize


# ----------------------------------------------------------------------------------------------- split, tiles
def test_the_bundled_split_is_disjoint_and_covers_every_photograph():
    train, held_out = set(bundled_mod.SPLITS["train"]), set(bundled_mod.SPLITS["eval"])
    assert not train & held_out
    assert train | held_out == set(bundled_mod.DEFAULT_IMAGES)
    assert list(bundled_mod.resolve_images(None, None, "eval")) == list(bundled_mod.SPLITS["eval"])
    with pytest.raises(bundled_mod.BundledError, match="give either images or split='eval', not both"):
        bundled_mod.resolve_images(["astronaut"], None, "eval")
    with pytest.raises(bundled_mod.BundledError, match="unknown bundled split 'test'; valid choices: all, train"):
        bundled_mod.resolve_images(None, None, "test")


def test_training_sources_read_one_half_of_the_split():
    from harness.data.training.config import SourceConfig
    from harness.data.training.sources import resolve_sources

    files = resolve_sources([SourceConfig(bundled=True, split="train")])
    held_out = {p.name for p in bundled_mod.resolve_images(None, None, "eval").values()}
    assert len(files) == len(bundled_mod.SPLITS["train"]) and not {p.name for p in files} & held_out
    with pytest.raises(ValueError, match="split='train' applies to the bundled photographs only"):
        SourceConfig(path="x", split="train")


def test_tiles_cut_each_hr_square_row_major_and_degrade_each_tile(tmp_path):
    opts = {"cache_dir": str(tmp_path), "split": "eval", "count": 1, "hr_size": 128, "tile": 64}
    ds = create("datasets", "bundled", opts)
    assert ds.keys == ["chelsea_r0c0", "chelsea_r0c1", "chelsea_r1c0", "chelsea_r1c1"]
    whole = create("datasets", "bundled", {**opts, "tile": None, "cache_dir": str(tmp_path / "whole")})[0].hr
    for i, j, sample in [(0, 0, ds[0]), (0, 1, ds[1]), (1, 0, ds[2]), (1, 1, ds[3])]:
        assert sample.hr.shape == (3, 64, 64) and sample.lr.shape == (3, 16, 16)
        assert torch.equal(sample.hr, whole[:, 64 * i : 64 * (i + 1), 64 * j : 64 * (j + 1)])
    with pytest.raises(ConfigError, match="tile=48 must divide hr_size=128"):
        create("datasets", "bundled", {**opts, "tile": 48})


# ----------------------------------------------------------------------------------------------- tiny8
def test_groupnorm_groups_keep_32_for_official_widths_and_3_channels_for_tiny8():
    assert [normalize(c).num_groups for c in (32, 64, 160, 320, 640)] == [32, 32, 32, 32, 32]
    assert [normalize(c).num_groups for c in (12, 24, 48, 96)] == [4, 8, 16, 32]


def test_tiny8_has_an_8x8_latent_six_scales_and_a_coarser_prefix_on_the_latent_grid():
    arch = get_arch("tiny8")
    torch.manual_seed(0)
    model = AlignVAR(arch.transformer, arch.vqvae, AlignVARConfig(arch="tiny8", cfg=1.0)).eval()
    lr = torch.rand(2, 3, 64, 64) * 2 - 1
    schedule = model.transformer.schedule_for(lr)
    assert (model.vqvae.downsample, str(schedule), schedule.total_tokens) == (8, "1_2_3_5_6_8", 139)
    assert model.transformer.prefix_hw_for(schedule) == (4, 4)
    with torch.no_grad():
        out = model.generate(lr, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 64, 64)
    rows, cols = token_positions((4, 4), schedule.patch_nums, (8, 8))
    assert rows[:16].tolist() == [0.0] * 4 + [2.0] * 4 + [4.0] * 4 + [6.0] * 4  # prefix row i -> 2i
    assert cols[:4].tolist() == [0.0, 2.0, 4.0, 6.0]
    same_rows, _ = token_positions((8, 8), schedule.patch_nums, (8, 8))  # equal grids: integer positions
    assert same_rows[:64].tolist() == [float(i // 8) for i in range(64)]


# ----------------------------------------------------------------------------------------------- planted
def test_the_planted_hook_replaces_that_share_of_one_scale_the_same_in_every_image():
    hook = planted_token_hook(scale=2, fraction=0.5, vocab=1024, seed=3)
    idx = torch.zeros(3, 9, dtype=torch.long)
    assert torch.equal(hook(1, idx, None), idx)  # other scales untouched
    out = hook(2, idx, None)
    changed = (out != idx).any(0)
    assert 1 <= int(changed.sum()) <= round(0.5 * 9)  # a random code may equal the old one
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    assert torch.equal(out, hook(2, idx, None))  # deterministic
    assert (planted_token_hook(0, 1e-6, 8)(0, torch.full((1, 1), 99), None) < 8).all()  # at least one position
    with pytest.raises(ValueError, match=r"planted fraction must be in \(0, 1\], got 0"):
        planted_token_hook(1, 0.0, 8)


def test_plant_scale_is_a_method_option_checked_against_the_schedule(tmp_path):
    arch = get_arch("tiny8")
    torch.manual_seed(0)
    model = AlignVAR(
        arch.transformer, arch.vqvae, AlignVARConfig(arch="tiny8", cfg=1.0, sca=SCAConfig(mask_input="none"))
    )
    path = model.save(tmp_path / "m.safetensors")
    with pytest.raises(
        ValueError, match=r"alignvar: plant_scale=6 is outside the 6 scales \(0..5\) of the model's 64 px"
    ):
        create("methods", "alignvar", {"checkpoint": str(path), "plant_scale": 6})
    with pytest.raises(ConfigError, match="plant_fraction must be in"):
        create("methods", "alignvar", {"checkpoint": str(path), "plant_scale": 1, "plant_fraction": 2.0})
    clean = create("methods", "alignvar", {"checkpoint": str(path), "cfg": 1.0})
    planted = create("methods", "alignvar", {"checkpoint": str(path), "cfg": 1.0, "plant_scale": 1})
    assert clean.model.token_hook is None and planted.model.token_hook is not None
    lr = torch.rand(1, 3, 16, 16)
    assert not torch.equal(clean.upscale(lr, ["a"]), planted.upscale(lr, ["a"]))


# ----------------------------------------------------------------------------------------------- pkg://
def test_pkg_references_resolve_inside_installed_packages():
    from harness.core.fetch import FetchError, resolve_checkpoint

    path = resolve_checkpoint("pkg://experiments/demo.yaml")
    assert path.is_file() and path.name == "demo.yaml"
    with pytest.raises(FetchError, match="pkg://experiments/nope.bin: no file 'nope.bin' in package 'experiments'"):
        resolve_checkpoint("pkg://experiments/nope.bin")
    with pytest.raises(FetchError, match="package 'no_such_pkg' is not installed"):
        resolve_checkpoint("pkg://no_such_pkg/x")
    with pytest.raises(ValueError, match="expected pkg://PACKAGE/PATH"):
        resolve_checkpoint("pkg://experiments")


# ----------------------------------------------------------------------------------------------- comparison
def test_checkpoint_keys_do_not_separate_on_and_off_cells_and_the_controls_are_toggles():
    from reports.sweep.comparison import _toggle

    assert _toggle("methods.tiny.plant_scale")[0] == "planted degradation"
    assert _toggle("methods.tiny.seed")[0] == "seed" and _toggle("seed") is None  # the experiment's seed is no arm
    assert _toggle("methods.tiny.seed")[1](0) and not _toggle("methods.tiny.seed")[1](1)
    assert _toggle("methods.tiny.checkpoint") is None
