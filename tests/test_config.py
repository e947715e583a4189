"""Registry and typed-config behaviour: build by name, strict validation with exact error messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from harness.config.experiment import experiment_from_dict, load_experiment
from harness.config.files import parse_override, set_by_path
from harness.core import registry
from harness.core.mapping import ConfigError, from_dict, to_dict


@dataclass
class _Inner:
    mask_input: Literal["laplacian", "random", "none"] = "laplacian"
    weight: float = field(default=1.0, metadata={"key": "lambda"})


@dataclass
class _ToyOptions:
    scale: int = 4
    sharpen: bool = False
    label: str | None = None
    inner: _Inner = field(default_factory=_Inner)
    sizes: list[int] = field(default_factory=list)


@registry.register("methods", "_toy_method", description="toy method for config tests", config=_ToyOptions)
class _ToyMethod:
    def __init__(self, options: _ToyOptions):
        self.options = options


@registry.register("datasets", "_toy_data", description="toy dataset for config tests")
def _toy_dataset():
    return ["a", "b"]


def test_register_and_build_by_name():
    method = registry.create("methods", "_toy_method", {"scale": 2, "inner": {"lambda": 0.5}})
    assert isinstance(method, _ToyMethod)
    assert method.options.scale == 2
    assert method.options.inner.weight == 0.5
    assert registry.create("datasets", "_toy_data") == ["a", "b"]
    assert registry.list_entries("methods")["_toy_method"].description == "toy method for config tests"
    listing = registry.describe().splitlines()
    assert any(line.split() == ["_toy_method", "toy", "method", "for", "config", "tests"] for line in listing)


def test_unknown_name_lists_choices():
    with pytest.raises(registry.RegistryError) as err:
        registry.get("methods", "_toy_methd")
    assert str(err.value).startswith("unknown method '_toy_methd'; valid choices: ")
    assert "_toy_method" in str(err.value)
    with pytest.raises(registry.RegistryError, match="unknown registry kind 'method'; valid kinds: methods"):
        registry.list_entries("method")


def test_duplicate_registration_rejected():
    with pytest.raises(ValueError, match="already registered"):

        @registry.register("methods", "_toy_method")
        class Other:  # noqa: F841
            pass


def test_from_dict_strict_types_and_keys():
    opts = from_dict(_ToyOptions, {"scale": 3, "sizes": [1, 2], "inner": {"mask_input": "none"}})
    assert opts == _ToyOptions(scale=3, sizes=[1, 2], inner=_Inner(mask_input="none"))
    with pytest.raises(ConfigError) as err:
        from_dict(_ToyOptions, {"scael": 3}, path="methods[0]", source="exp.yaml")
    assert str(err.value) == (
        "exp.yaml: methods[0].scael: unknown key; valid keys: scale, sharpen, label, inner, sizes"
    )
    with pytest.raises(ConfigError) as err:
        from_dict(_ToyOptions, {"scale": "4"}, source="exp.yaml")
    assert str(err.value) == "exp.yaml: scale: expected int, got '4' (str)"
    with pytest.raises(ConfigError) as err:
        from_dict(_ToyOptions, {"sharpen": 1}, source="exp.yaml")
    assert str(err.value) == "exp.yaml: sharpen: expected bool, got 1 (int)"
    with pytest.raises(ConfigError) as err:
        from_dict(_ToyOptions, {"inner": {"mask_input": "lapl"}}, source="exp.yaml")
    assert str(err.value) == "exp.yaml: inner.mask_input: invalid value 'lapl'; valid choices: laplacian, random, none"
    with pytest.raises(ConfigError, match=r"exp.yaml: sizes\[1\]: expected int, got 'x'"):
        from_dict(_ToyOptions, {"sizes": [1, "x"]}, source="exp.yaml")
    # ints widen to float; aliases round-trip through to_dict
    assert from_dict(_Inner, {"lambda": 2}).weight == 2.0
    assert to_dict(_Inner(weight=0.1)) == {"mask_input": "laplacian", "lambda": 0.1}


def test_experiment_components_validated_against_registry():
    data = {"name": "t", "datasets": ["_toy_data"], "methods": [{"type": "_toy_method", "scale": 2}]}
    cfg = experiment_from_dict(data, source="t.yaml")
    assert cfg.methods[0].name == "_toy_method" and cfg.methods[0].options.scale == 2
    assert cfg.to_dict()["methods"] == [{"type": "_toy_method", **to_dict(_ToyOptions(scale=2))}]

    with pytest.raises(ConfigError) as err:
        experiment_from_dict({"name": "t", "methods": [{"type": "_toy_method"}, {"type": "nope"}]}, "t.yaml")
    assert str(err.value).startswith("t.yaml: methods[1].type: unknown method 'nope'; valid choices: ")
    with pytest.raises(ConfigError, match=r"t.yaml: methods\[0\].inner.lambda: expected float, got 'big'"):
        experiment_from_dict({"name": "t", "methods": [{"type": "_toy_method", "inner": {"lambda": "big"}}]}, "t.yaml")
    with pytest.raises(ConfigError, match=r"t.yaml: datasets\[0\].root: unknown key; '_toy_data' takes no options"):
        experiment_from_dict({"name": "t", "datasets": [{"type": "_toy_data", "root": "x"}]}, "t.yaml")
    with pytest.raises(ConfigError, match=r"t.yaml: bench.batch_size: expected int, got 'two'"):
        experiment_from_dict({"name": "t", "bench": {"batch_size": "two"}}, "t.yaml")
    with pytest.raises(ConfigError, match=r"t.yaml: benchh: unknown key; valid keys: name, description"):
        experiment_from_dict({"name": "t", "benchh": {}}, "t.yaml")
    with pytest.raises(ConfigError, match=r"duplicate names \['_toy_method'\]"):
        experiment_from_dict({"name": "t", "methods": ["_toy_method", "_toy_method"]}, "t.yaml")


def test_yaml_base_inheritance_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "name: base\nseed: 1\nmethods:\n  - {type: _toy_method, name: m1, scale: 2}\nbench: {batch_size: 2}\n"
    )
    (tmp_path / "child.yaml").write_text("base: base.yaml\nname: child\nbench: {save_images: false}\n")
    cfg = load_experiment(tmp_path / "child.yaml", ["seed=7", "methods.m1.inner.lambda=0.25", "bench.batch_size=4"])
    assert cfg.name == "child" and cfg.seed == 7
    assert cfg.bench.batch_size == 4 and cfg.bench.save_images is False
    assert cfg.methods[0].options.inner.weight == 0.25
    with pytest.raises(ConfigError, match=r"child.yaml: bench.batch_size: expected int, got 'x'"):
        load_experiment(tmp_path / "child.yaml", ["bench.batch_size=x"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("seed")
    with pytest.raises(ConfigError, match=r"no list item 'm9'"):
        load_experiment(tmp_path / "child.yaml", ["methods.m9.scale=1"])
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="circular base"):
        load_experiment(tmp_path / "loop.yaml")
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_experiment(tmp_path / "missing.yaml")


def test_set_by_path_creates_nested_keys():
    data = {"model": {"type": "alignvar"}}
    set_by_path(data, ["model", "hcc", "lambda"], 0.5)
    assert data == {"model": {"type": "alignvar", "hcc": {"lambda": 0.5}}}
    assert parse_override("model.sca.mask_input=none") == (["model", "sca", "mask_input"], "none")
