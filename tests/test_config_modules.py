"""``harness.config`` is split into ``config_mapping`` / ``config_yaml``; its names stay importable from it."""

from __future__ import annotations

import pytest

import harness.config
import harness.config_mapping
import harness.config_yaml


def test_config_reexports_the_split_modules_objects():
    homes = {
        "ConfigError": harness.config_mapping,
        "ComponentSpec": harness.config_mapping,
        "from_dict": harness.config_mapping,
        "to_dict": harness.config_mapping,
        "parse_component": harness.config_mapping,
        "load_yaml_tree": harness.config_yaml,
        "parse_override": harness.config_yaml,
        "set_by_path": harness.config_yaml,
        "dump_yaml": harness.config_yaml,
    }
    for name, home in homes.items():
        assert getattr(harness.config, name) is getattr(home, name), name
    own = {"BenchConfig", "EfficiencyConfig", "ExperimentConfig", "ReportConfig", "SweepConfig"}
    own |= {"experiment_from_dict", "load_experiment"}
    for name in own:
        assert getattr(harness.config, name).__module__ == "harness.config", name
    assert set(harness.config.__all__) == set(homes) | own
    for module in (harness.config_mapping, harness.config_yaml):
        assert set(module.__all__) <= set(harness.config.__all__), module.__name__


def test_yaml_errors_are_the_mapping_config_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(harness.config_mapping.ConfigError, match="invalid YAML"):
        harness.config.load_experiment(path)


def test_experiment_sections_resolve_their_annotations_in_harness_config():
    # from_dict resolves string annotations in the dataclass's module: the sections (and the ad-hoc dataclass that
    # experiment_from_dict builds from ExperimentConfig's fields) must find ComponentSpec / AnalysisOptions there.
    cfg = harness.config.experiment_from_dict(
        {"name": "x", "methods": ["bicubic"], "bench": {"efficiency": {"lr_size": 8}}, "analysis": {}}
    )
    assert isinstance(cfg.methods[0], harness.config_mapping.ComponentSpec)
    assert cfg.bench.efficiency == harness.config.EfficiencyConfig(lr_size=8)
    # to_dict writes a component back as its YAML block, not as the ComponentSpec's fields
    (block,) = harness.config.to_dict(cfg.methods)
    assert block["type"] == "bicubic" and "kind" not in block and "options" not in block
