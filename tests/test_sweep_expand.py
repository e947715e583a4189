"""Sweep expansion: grid x zip, cell names, up-front validation, identity hashes (no cells are run here)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import pytest

from harness.config.experiment import AnalysisOptions
from harness.core.mapping import ConfigError, to_dict
from harness.core.registry import register
from harness.sweep.cache import canonical_json, cell_identity
from harness.sweep.expand import SweepSpec, cell_name, combinations, expand, name_part, short_keys


# A stand-in model with the nested key layout of AlignVAR's config (model.hcc.lambda, model.sca.mask_input).
@dataclass
class _HCC:
    lambda_: float = field(default=1.0, metadata={"key": "lambda"})
    space: Literal["latent", "pixel"] = "latent"


@dataclass
class _SCA:
    mask_input: Literal["laplacian", "random", "none"] = "laplacian"


@dataclass
class _ToyModelConfig:
    hcc: _HCC = field(default_factory=_HCC)
    sca: _SCA = field(default_factory=_SCA)


@register("models", "_sweep_test_model", description="test stand-in", config=_ToyModelConfig)
def _toy_model(cfg: _ToyModelConfig):  # never built here
    raise AssertionError("not built in these tests")


def spec_of(data: dict, source: str = "exp.yaml") -> SweepSpec:
    return SweepSpec.from_raw({"name": "abl", "output_root": "runs", **data}, source=source)


def test_grid_2x3_gives_six_distinct_named_cells_with_their_overrides():
    spec = spec_of(
        {
            "model": {"type": "_sweep_test_model"},
            "sweep": {
                "grid": {
                    "model.hcc.lambda": [0, 0.5],
                    "model.sca.mask_input": ["none", "random", "laplacian"],
                }
            },
        }
    )
    cells = expand(spec)
    assert [c.name for c in cells] == [
        "hcc.lambda=0,sca.mask_input=none",
        "hcc.lambda=0,sca.mask_input=random",
        "hcc.lambda=0,sca.mask_input=laplacian",
        "hcc.lambda=0.5,sca.mask_input=none",
        "hcc.lambda=0.5,sca.mask_input=random",
        "hcc.lambda=0.5,sca.mask_input=laplacian",
    ]
    assert len({c.id for c in cells}) == 6 and len({c.dir_name for c in cells}) == 6
    assert cells[4].overrides == {"model.hcc.lambda": 0.5, "model.sca.mask_input": "random"}
    # the overrides reached the validated config (int 0 widened to float by the typed config)
    assert cells[4].config.model.options.hcc.lambda_ == 0.5
    assert cells[4].config.model.options.sca.mask_input == "random"
    assert cells[0].config.model.options.hcc.lambda_ == 0.0 and isinstance(
        cells[0].config.model.options.hcc.lambda_, float
    )
    # the cell's config points at its own folder, has no sweep block, and its raw form round-trips
    assert cells[4].dir_name == f"hcc.lambda=0.5,sca.mask_input=random-{cells[4].id[:8]}"
    assert cells[4].config.run_dir.name == cells[4].dir_name
    assert cells[4].config.run_dir.parent.parts[-3:] == ("runs", "abl", "cells")
    assert cells[4].config.sweep is None and cells[4].raw["model"]["hcc"]["lambda"] == 0.5
    assert [c.index for c in cells] == list(range(6))


def test_zip_pairs_lists_and_multiplies_with_grid():
    sweep = {
        "grid": {"bench.batch_size": [1, 2]},
        "zip": {"seed": [0, 1, 2], "report.crop_size": [32, 64, 96]},
    }
    cells = expand(spec_of({"sweep": sweep}))
    assert [tuple(c.overrides.values()) for c in cells] == [
        (1, 0, 32), (1, 1, 64), (1, 2, 96), (2, 0, 32), (2, 1, 64), (2, 2, 96)
    ]  # fmt: skip
    assert cells[5].config.seed == 2 and cells[5].config.report.crop_size == 96
    assert cells[5].config.bench.batch_size == 2


def test_zip_length_mismatch_names_keys_and_lengths():
    with pytest.raises(ConfigError) as err:
        expand(spec_of({"sweep": {"zip": {"seed": [0, 1, 2], "report.crop_size": [32, 64]}}}))
    assert str(err.value) == "exp.yaml: sweep.zip: lists must have equal lengths; got seed (3), report.crop_size (2)"


def test_invalid_value_in_one_cell_fails_up_front_naming_cell_and_key():
    spec = spec_of({"sweep": {"grid": {"bench.on_corrupt": ["fail", "ignore"], "seed": [0, 1]}}})
    with pytest.raises(ConfigError) as err:
        expand(spec)
    assert str(err.value) == (
        "exp.yaml [sweep cell bench.on_corrupt=ignore,seed=0]: bench.on_corrupt: invalid value 'ignore'; "
        "valid choices: fail, skip"
    )
    # a __post_init__ check and an unknown (typo) key are reported the same way
    with pytest.raises(
        ConfigError,
        match=r"^exp.yaml \[sweep cell bench.batch_size=0\]: bench.batch_size: must be >= 1, got 0$",
    ):
        expand(spec_of({"sweep": {"grid": {"bench.batch_size": [1, 0]}}}))
    with pytest.raises(ConfigError, match=r"\[sweep cell bench.batchsize=1\]: bench.batchsize: unknown key; valid"):
        expand(spec_of({"sweep": {"grid": {"bench.batchsize": [1]}}}))


def test_sweep_block_errors():
    with pytest.raises(ConfigError, match=r"^exp.yaml: sweep.grid.seed: empty list"):
        expand(spec_of({"sweep": {"grid": {"seed": []}}}))
    with pytest.raises(ConfigError, match=r"^exp.yaml: sweep: key 'seed' is in both 'grid' and 'zip'"):
        expand(spec_of({"sweep": {"grid": {"seed": [0]}, "zip": {"seed": [1]}}}))
    with pytest.raises(ConfigError, match=r"^exp.yaml: sweep.grid.output_root: 'output_root' cannot be swept"):
        expand(spec_of({"sweep": {"grid": {"output_root": ["a", "b"]}}}))
    with pytest.raises(ConfigError, match=r"^exp.yaml: sweep: missing; add a 'sweep:' block"):
        spec_of({})
    with pytest.raises(ConfigError, match=r"^exp.yaml: sweep.backend: invalid value 'slurm'; valid choices: local"):
        spec_of({"sweep": {"backend": "slurm"}})
    # 1 and 1.0 are the same value for a float field: two cells with one config
    with pytest.raises(ConfigError, match=r"cells 'hcc.lambda=1' and 'hcc.lambda=1.0' resolve to the same config"):
        expand(spec_of({"model": {"type": "_sweep_test_model"}, "sweep": {"grid": {"model.hcc.lambda": [1, 1.0]}}}))


def test_no_swept_keys_is_one_base_cell():
    cells = expand(spec_of({"seed": 7, "sweep": {"stages": ["bench"]}}))
    assert len(cells) == 1 and cells[0].name == "base" and cells[0].overrides == {}
    assert cells[0].config.seed == 7 and cells[0].stages == ("bench",)


def test_short_keys_and_names_are_readable_unique_and_filesystem_safe():
    assert short_keys(["model.hcc.lambda", "seed", "methods.0.checkpoint"]) == {
        "model.hcc.lambda": "hcc.lambda",
        "seed": "seed",
        "methods.0.checkpoint": "methods.0.checkpoint",
    }
    assert short_keys(["a.x.lr", "b.x.lr", "c.y.lr"]) == {
        "a.x.lr": "a.x.lr",
        "b.x.lr": "b.x.lr",
        "c.y.lr": "y.lr",
    }
    assert name_part(None) == "none" and name_part(True) == "true" and name_part(1e-4) == "0.0001"
    assert name_part("ckpts/run 3/step_1000.safetensors") == "step_1000"
    assert name_part([1, 2]) == "[1,2]"
    name = cell_name({"methods.alignvar.checkpoint": "a/b c*?.pt", "seed": 1})
    assert name == "alignvar.checkpoint=b_c_,seed=1"
    assert cell_name({"x.y": "z" * 300}) == "x.y=" + "z" * 92


def test_identity_hash_is_stable_and_sensitive():
    # The definition itself is pinned: changing it would silently invalidate every finished sweep cell.
    config = {"name": "ignored", "output_root": "ignored", "seed": 1, "bench": {"batch_size": 2}}
    payload = '{"config":{"bench":{"batch_size":2},"seed":1},"stages":["train","bench"]}'
    assert canonical_json({"config": {"seed": 1, "bench": {"batch_size": 2}}, "stages": ["train", "bench"]}) == payload
    assert cell_identity(config, ["train", "bench"]) == hashlib.sha256(payload.encode()).hexdigest()

    base = {"model": {"type": "_sweep_test_model"}, "sweep": {"grid": {"model.hcc.lambda": [0.5, 1.0]}}}
    a, b = expand(spec_of(base)), expand(spec_of(base, source="elsewhere.yaml"))
    assert [c.id for c in a] == [c.id for c in b]  # same config -> same id
    assert a[0].id != a[1].id  # changed value -> different id
    renamed = expand(SweepSpec.from_raw({**base, "name": "other", "output_root": "/x", "description": "d"}))
    assert [c.id for c in renamed] == [c.id for c in a]  # names and output paths are not part of the identity
    spelled = {"model": {"type": "_sweep_test_model", "hcc": {"lambda": 1}}, "sweep": {"grid": {"seed": [0]}}}
    plain = {"model": "_sweep_test_model", "sweep": {"grid": {"seed": [0]}}}
    assert expand(spec_of(spelled))[0].id == expand(spec_of(plain))[0].id  # 1 == 1.0 == the default; shorthand
    stages = expand(spec_of({**base, "sweep": {**base["sweep"], "stages": ["bench"]}}))
    assert stages[0].id != a[0].id  # stages are part of what a cell computes
    # the code version is recorded but only hashed with --strict-code-version
    v1, v2 = {"commit": "a" * 40, "dirty": False}, {"commit": "b" * 40, "dirty": False}
    assert expand(spec_of(base), code_version=v1)[0].id == a[0].id
    s1 = expand(spec_of(base), code_version=v1, strict_code_version=True)
    s2 = expand(spec_of(base), code_version=v2, strict_code_version=True)
    assert s1[0].id != a[0].id and s1[0].id != s2[0].id and s1[0].code_version == v1


def test_combinations_order_is_grid_major_then_zip():
    spec = spec_of({"sweep": {"grid": {"a": [1, 2]}, "zip": {"b": [3, 4]}}})
    assert combinations(spec.sweep) == [
        {"a": 1, "b": 3},
        {"a": 1, "b": 4},
        {"a": 2, "b": 3},
        {"a": 2, "b": 4},
    ]


def test_analysis_block_counts_only_for_analyzed_cells_and_when_not_default():
    """Cells written before the ``analysis:`` block existed keep their identity; analysis knobs re-run only
    cells that analyse."""
    config = {"seed": 1, "bench": {"batch_size": 2}}
    default = {**config, "analysis": to_dict(AnalysisOptions())}
    changed = {**config, "analysis": to_dict(AnalysisOptions(radius=0.2))}
    analysed, benched = ["train", "bench", "analyze"], ["train", "bench"]
    assert cell_identity(default, analysed) == cell_identity(config, analysed)
    assert cell_identity(changed, analysed) != cell_identity(default, analysed)
    assert cell_identity(changed, benched) == cell_identity(config, benched)


# --------------------------------------------------------------------------------------------- sweep.seeds
@dataclass
class _SeededMethodConfig:
    seed: int = 0
    cfg: float = 1.0


@register("methods", "_sweep_test_seeded", description="test stand-in with a sampling seed", config=_SeededMethodConfig)
def _seeded_method(cfg: _SeededMethodConfig):  # never built here
    raise AssertionError("not built in these tests")


def test_seeds_repeat_every_cell_and_reach_training_and_sampling_seeds():
    spec = spec_of(
        {
            "seed": 5,
            "methods": ["bicubic", {"type": "_sweep_test_seeded", "seed": 9}],
            "sweep": {"grid": {"bench.batch_size": [1, 2]}, "seeds": [0, 3]},
        }
    )
    cells = expand(spec)
    assert [c.name for c in cells] == [
        "bench.batch_size=1,seed=0",
        "bench.batch_size=1,seed=3",
        "bench.batch_size=2,seed=0",
        "bench.batch_size=2,seed=3",
    ]
    assert cells[1].overrides == {"bench.batch_size": 1, "seed": 3}
    assert len({c.id for c in cells}) == 4 and cells[1].dir_name == f"bench.batch_size=1,seed=3-{cells[1].id[:8]}"
    for cell in cells:
        seed = cell.overrides["seed"]
        assert cell.config.seed == seed  # training + bench seed
        assert cell.config.methods[1].options.seed == seed  # the sampling seed of a method with one
        assert cell.raw["seed"] == seed and cell.raw["methods"][1]["seed"] == seed  # what config.yaml records
        assert not hasattr(cell.config.methods[0].options, "seed")  # bicubic has no seed option: untouched
    # the seed is part of the identity: the same config at another seed is another cell
    assert cells[0].id != cells[1].id


def test_sweeps_without_seeds_keep_their_cell_hashes():
    # ids computed by the code before sweep.seeds existed (main at 4efa0f6): adding the axis must not move them
    spec = spec_of({"methods": ["bicubic"], "sweep": {"grid": {"bench.batch_size": [1, 2]}}})
    assert [(c.name, c.id) for c in expand(spec)] == [
        ("bench.batch_size=1", "f60413360ae0cf4720239779a18b230ddfd9a2cb0d423a5d8f30224033e66186"),
        ("bench.batch_size=2", "7ae546558f1ce45b1faef593d20f8ee36defc540ec016e42643a49961890c107"),
    ]
    seeded = expand(spec_of({"methods": ["bicubic"], "sweep": {"grid": {"bench.batch_size": [1, 2]}, "seeds": [0]}}))
    assert seeded[0].id == "f60413360ae0cf4720239779a18b230ddfd9a2cb0d423a5d8f30224033e66186"  # seed 0 = the default
    assert seeded[0].name == "bench.batch_size=1,seed=0"


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        ([], "exp.yaml: sweep.seeds: expected a non-empty list of integers such as [0, 1, 2], got []"),
        ([0, 1, 0], "exp.yaml: sweep.seeds: duplicate seeds [0]; give each seed once"),
        ([0, 1.5], "exp.yaml: sweep.seeds[1]: expected an integer seed, got 1.5 (float)"),
        (["a"], "exp.yaml: sweep.seeds[0]: expected an integer seed, got 'a' (str)"),
        ([True], "exp.yaml: sweep.seeds[0]: expected an integer seed, got True (bool)"),
        ([-1], "exp.yaml: sweep.seeds[0]: seeds must be >= 0, got -1"),
    ],
)
def test_bad_seeds_name_the_key_and_value(seeds, message):
    with pytest.raises(ConfigError) as err:
        expand(spec_of({"sweep": {"seeds": seeds}}))
    assert str(err.value) == message


def test_seeds_and_a_swept_seed_key_conflict():
    with pytest.raises(ConfigError) as err:
        expand(spec_of({"sweep": {"grid": {"seed": [0, 1]}, "seeds": [0, 1]}}))
    assert str(err.value) == (
        "exp.yaml: sweep.grid.seed: 'seed' is swept by sweep.seeds too; give the seeds in one place"
    )
    with pytest.raises(ConfigError) as err:
        expand(spec_of({"sweep": {"seeds": 3}}))
    assert "sweep.seeds" in str(err.value) and "3" in str(err.value)
