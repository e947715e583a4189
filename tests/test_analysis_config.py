"""The ``analysis:`` block of an experiment: YAML -> AnalysisOptions, errors naming the key, ``a.b=c``
overrides, CLI flags over the YAML, and the sweep's analyze stage picking the block up."""

from __future__ import annotations

import argparse
import re

import pytest

from harness.config.experiment import AnalysisOptions, load_experiment
from harness.core.mapping import ConfigError

ANALYSIS_YAML = """\
analysis:
  max_images: 1
  query_sample: 2
  radius: 1
  alignment: topleft
  perturb_scales: [2, 3]
  perturb_fraction: 0.5
  sca_mask_images: 0
  figures: true
  device: cpu
"""


def write_experiment(tmp_path, body: str = "", name: str = "exp.yaml"):
    path = tmp_path / name
    path.write_text(f"name: e\noutput_root: {tmp_path / 'runs'}\n{body}")
    return path


def cli_args(*argv: str) -> argparse.Namespace:
    from harness.cli import analyze as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


# ------------------------------------------------------------------------------------------------- YAML
def test_yaml_block_maps_onto_the_options_dataclass(tmp_path):
    cfg = load_experiment(write_experiment(tmp_path, ANALYSIS_YAML))
    assert cfg.analysis == AnalysisOptions(
        max_images=1,
        query_sample=2,
        radius=1.0,
        alignment="topleft",
        perturb_scales=(2, 3),
        perturb_fraction=0.5,
        sca_mask_images=0,
        figures=True,
        device="cpu",
    )
    assert isinstance(cfg.analysis.radius, float) and cfg.analysis.perturb_scales == (2, 3)
    # written back (a sweep cell's config.yaml) as plain YAML that loads to the same options
    assert cfg.to_dict()["analysis"]["perturb_scales"] == [2, 3]
    assert load_experiment(write_experiment(tmp_path, "", "none.yaml")).analysis == AnalysisOptions()


@pytest.mark.parametrize(
    "block,message",
    [
        ("alignment: x", "analysis.alignment: must be 'center' or 'topleft', got 'x'"),
        ("max_images: 0", "analysis.max_images: must be >= 1, got 0"),
        ("perturb_fraction: 0", "analysis.perturb_fraction: must be in (0, 1], got 0.0"),
        ("perturb_scales: [1, -2]", "analysis.perturb_scales: 0-based scale indices must be >= 0, got [1, -2]"),
        ("query_sample: many", "analysis.query_sample: expected int, got 'many' (str)"),
        (
            "radiu: 0.2",
            "analysis.radiu: unknown key; valid keys: max_images, query_sample, radius, alignment, perturb_scales, "
            "perturb_fraction, sca_mask_images, figures, device",
        ),
    ],
)
def test_bad_values_name_the_key(tmp_path, block, message):
    path = write_experiment(tmp_path, f"analysis:\n  {block}\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert str(err.value) == f"{path}: {message}"


def test_override_sets_a_key_of_the_block(tmp_path):
    path = write_experiment(tmp_path, ANALYSIS_YAML)
    cfg = load_experiment(path, ["analysis.max_images=2", "analysis.perturb_scales=[0]"])
    assert (cfg.analysis.max_images, cfg.analysis.perturb_scales, cfg.analysis.query_sample) == (2, (0,), 2)
    # on a config without the block, too
    bare = write_experiment(tmp_path, "", "bare.yaml")
    assert load_experiment(bare, ["analysis.max_images=2"]).analysis == AnalysisOptions(max_images=2)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(bare))}: analysis.max_images: must be >= 1, got -1$"):
        load_experiment(bare, ["analysis.max_images=-1"])


# -------------------------------------------------------------------------------------------------- CLI
def test_cli_flags_given_explicitly_beat_the_yaml(tmp_path):
    from harness.cli.analyze import analysis_options

    path = write_experiment(tmp_path, ANALYSIS_YAML)
    cfg = load_experiment(path)
    # no flag: the YAML block as it is
    assert analysis_options(cfg, cli_args("attention", str(path))) == cfg.analysis
    flags = cli_args("attention", str(path), "--max-images", "3", "--radius", "0.25", "--alignment", "center")
    opts = analysis_options(cfg, flags)
    assert (opts.max_images, opts.radius, opts.alignment) == (3, 0.25, "center")
    assert (opts.query_sample, opts.perturb_scales, opts.device) == (2, (2, 3), "cpu")  # from the YAML
    acc = analysis_options(cfg, cli_args("accumulation", str(path), "--perturb-scales", "", "--device", "cuda"))
    assert (acc.perturb_scales, acc.perturb_fraction, acc.device) == ((), 0.5, "cuda")  # '' = no perturbation
    scales = analysis_options(cfg, cli_args("accumulation", str(path), "--perturb-scales", "4,1")).perturb_scales
    assert scales == (4, 1)
    with pytest.raises(ValueError, match=r"^max_images: must be >= 1, got 0$"):
        analysis_options(cfg, cli_args("sca-masks", str(path), "--max-images", "0"))


def test_run_py_analyze_uses_the_yaml_block(tmp_path, capsys):
    """Randomly initialised tiny model: plumbing only, no number from it is reported."""
    from test_accumulation import analyze, tiny_experiment

    from harness.analysis.attention.tables import read_attention_csv

    exp = tiny_experiment(tmp_path)  # 2 images
    exp.write_text(exp.read_text() + "analysis: {max_images: 1, query_sample: 2, radius: 0.3}\n")
    out = tmp_path / "out"
    assert analyze("attention", str(exp), "--radius", "0.45", "--output", str(out)) == 0
    assert "attention: 1 image(s) of 'toy'" in capsys.readouterr().out  # analysis.max_images
    df = read_attention_csv(out / "attention.csv")
    assert set(df["radius"]) == {0.45}  # the flag beats analysis.radius
    assert df.drop_duplicates("query_level")["n_queries"].max() == 2  # analysis.query_sample, one image


# ------------------------------------------------------------------------------------------------ sweep
def test_sweep_cells_analyse_with_their_analysis_block(tmp_path):
    """Stages [analyze] only, on the tiny model of a checkpoint (no training): each cell uses the YAML block
    with its own sweep value of ``analysis.radius``."""
    from test_accumulation import tiny_experiment

    from harness.analysis.accumulation import read_accumulation_csv
    from harness.analysis.attention.tables import read_attention_csv
    from harness.sweep.cells import train_and_bench
    from harness.sweep.expand import expand, load_sweep

    exp = tiny_experiment(tmp_path)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"base: {exp.name}\nname: s\n"
        "analysis: {max_images: 1, query_sample: 2, perturb_scales: [2]}\n"
        "sweep:\n  grid:\n    analysis.radius: [0.05, 0.3]\n  stages: [analyze]\n"
    )
    cells = expand(load_sweep(sweep))
    assert [c.config.analysis.radius for c in cells] == [0.05, 0.3] and cells[0].id != cells[1].id
    for cell in cells:
        result = train_and_bench(cell, cell.config.run_dir)
        assert set(result) == {"analyze"} and result["analyze"]["images"] == 1  # analysis.max_images
        folder = cell.config.run_dir / "analysis"
        att = read_attention_csv(folder / "attention.csv")
        assert set(att["radius"]) == {cell.config.analysis.radius}
        assert att.drop_duplicates("query_level")["n_queries"].max() == 2
        acc = read_accumulation_csv(folder / "accumulation.csv")
        perturbed = acc[acc["mode"] == "perturbation"]
        assert set(perturbed["injected_scale"]) == {2}  # analysis.perturb_scales
        assert not list(folder.glob("*.pdf"))  # analysis.figures: false (the default)
