"""Output-folder adapter over several test sets: the ``{dataset}`` placeholder, the ``datasets`` mapping,
``for_dataset`` views, per-dataset timings, their errors, Table 1's config and a bench through the runner."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness.bench import layout as R
from harness.bench.runner import run_bench
from harness.config.experiment import experiment_from_dict, load_experiment
from harness.core.imageio import save_image
from harness.core.mapping import ConfigError
from harness.core.registry import create, register
from methods.adapters.output_files import OutputFolderError
from methods.adapters.output_folder import OutputFolderConfig, OutputFolderMethod, dataset_paths
from methods.base import SRMethod

REPO = Path(__file__).resolve().parents[1]
TABLE1 = REPO / "experiments" / "table1_main.yaml"
ALLOWED = "the only placeholder is '{dataset}' (the dataset's name)"


def _write(folder: Path, name: str, value: float, size: int = 16) -> None:
    save_image(torch.full((3, size, size), value), folder / name)


def _level(value: float) -> float:
    """``value`` after the 8-bit round trip of a saved PNG (``save_image`` rounds half up)."""
    return math.floor(value * 255 + 0.5) / 255


def _method(**options) -> OutputFolderMethod:
    return create("methods", "output_folder", options)


@pytest.fixture
def sets(tmp_path) -> Path:
    """outputs/{A,B}: A has a (0.2) and s (0.3); B has b (0.6) and s (0.7): the stem 's' is in both."""
    root = tmp_path / "outputs"
    for name, files in {"A": {"a": 0.2, "s": 0.3}, "B": {"b": 0.6, "s": 0.7}}.items():
        (root / name).mkdir(parents=True)
        for stem, value in files.items():
            _write(root / name, f"{stem}.png", value)
    return root


def _levels(method: SRMethod, keys: list[str]) -> list[float]:
    sr = method.upscale(torch.zeros(len(keys), 3, 4, 4), keys)
    return [round(v, 6) for v in sr.mean(dim=(1, 2, 3)).tolist()]


# ----------------------------------------------------------------------------------------------- placeholder
def test_placeholder_view_per_dataset_reads_that_folder(sets, caplog):
    method = _method(path=f"{sets}/{{dataset}}")
    a, b = method.for_dataset("A"), method.for_dataset("B")
    assert (a.dataset, b.dataset, method.dataset) == ("A", "B", None)
    assert _levels(a, ["a", "s"]) == [round(_level(0.2), 6), round(_level(0.3), 6)]
    assert _levels(b, ["s", "b"]) == [round(_level(0.7), 6), round(_level(0.6), 6)]
    assert a.check(["a", "s"]) == [] and b.check(["b", "s"]) == []
    assert _warned(caplog) == []
    assert a.check(["a", "s", "x"]) == [f"{sets / 'A'}: no output for 1 of 3 images (<key>.<png|jpg|...>): x"]
    b.check(["s"])
    assert _warned(caplog) == [f"{sets / 'B'}: 1 files match no LR image and are ignored: b.png"]


def test_placeholder_without_a_dataset_is_an_error_naming_the_key(sets):
    method = _method(path=f"{sets}/{{dataset}}")
    with pytest.raises(OutputFolderError) as err:
        method.check(["a"])
    assert str(err.value) == (
        f"path '{sets}/{{dataset}}': the '{{dataset}}' placeholder needs the dataset being evaluated: use "
        f"for_dataset(name), or list the folders with 'datasets: {{name: folder}}'"
    )
    assert method.reported_latencies() == {} and method.reported_latency("a") is None


def test_missing_folder_for_one_dataset_names_path_and_dataset(sets):
    method = _method(path=f"{sets}/{{dataset}}")
    method.for_dataset("A")
    with pytest.raises(OutputFolderError) as err:
        method.for_dataset("RealSR")
    assert str(err.value) == f"{sets / 'RealSR'}: output folder not found for dataset 'RealSR'"


def test_plain_path_is_one_folder_for_every_dataset(sets):
    method = _method(path=str(sets / "A"))
    assert not method.per_dataset and method.for_dataset("anything") is method
    assert _levels(method, ["a"]) == [round(_level(0.2), 6)]
    base = SRMethod()
    assert base.for_dataset("DRealSR") is base


def test_braces_are_escaped_and_filled(tmp_path):
    folder = tmp_path / "run{1}" / "A"
    folder.mkdir(parents=True)
    _write(folder, "a.png", 0.5)
    method = _method(path=f"{tmp_path}/run{{{{1}}}}/{{dataset}}")
    assert method.for_dataset("A").output_file("a") == folder / "a.png"


# ----------------------------------------------------------------------------------------------- config errors
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"path": "o/{method}/{dataset}"},
            f"path: unknown placeholder '{{method}}' in 'o/{{method}}/{{dataset}}'; {ALLOWED}",
        ),
        ({"path": "out/{}"}, f"path: unknown placeholder '{{}}' in 'out/{{}}'; {ALLOWED}"),
        ({"path": "out/{dataset!r}"}, f"path: unknown placeholder '{{dataset!r}}' in 'out/{{dataset!r}}'; {ALLOWED}"),
        (
            {"path": "out", "timings_csv": "t/{Dataset}.csv"},
            f"timings_csv: unknown placeholder '{{Dataset}}' in 't/{{Dataset}}.csv'; {ALLOWED}",
        ),
        (
            {"path": "out/{dataset"},
            f"path: 'out/{{dataset': expected '}}' before end of string; {ALLOWED}, write '{{{{' and '}}}}' for braces",
        ),
        ({}, "give 'path' (one folder, or a folder per dataset with '{dataset}') or 'datasets' ({name: folder})"),
        (
            {"path": "out/{dataset}", "datasets": {"A": "a"}},
            "path: 'out/{dataset}' has a '{dataset}' placeholder and 'datasets' is given too; use one of them "
            "('datasets' folders are relative to 'path')",
        ),
        ({"datasets": {}}, "datasets: empty; map each dataset name to its folder, or leave 'datasets' out"),
        ({"datasets": {"A": ""}}, "datasets.A: empty folder"),
    ],
)
def test_config_errors_name_the_key(options, message):
    with pytest.raises(ValueError) as err:
        OutputFolderConfig(**options)
    assert str(err.value) == message


def test_unknown_placeholder_in_an_experiment_names_file_method_and_key():
    with pytest.raises(ConfigError) as err:
        experiment_from_dict(
            {"name": "x", "datasets": ["bundled"], "methods": [{"type": "output_folder", "path": "o/{name}"}]},
            source="exp.yaml",
        )
    message = f"unknown placeholder '{{name}}' in 'o/{{name}}'; {ALLOWED}"
    # harness.config.experiment reports a "KEY: message" check at the key path (older versions: after the block's path)
    assert str(err.value) in (f"exp.yaml: methods[0].path: {message}", f"exp.yaml: methods[0]: path: {message}")


# ----------------------------------------------------------------------------------------------- mapping
def test_mapping_folders_relative_to_path_or_absolute(sets):
    method = _method(path=str(sets), datasets={"A": "A", "B": str(sets / "B")})
    assert dataset_paths(method.config, "A") == (sets / "A", None)
    assert dataset_paths(method.config, "B") == (sets / "B", None)
    with pytest.raises(OutputFolderError) as err:
        method.for_dataset("RealSR")
    assert str(err.value) == "no output folder for dataset 'RealSR': 'datasets' lists A, B"


def test_mapping_without_for_dataset_looks_keys_up_in_every_folder(sets, caplog):
    method = _method(path=str(sets), datasets={"A": "A", "B": "B"})
    assert _levels(method, ["b", "a"]) == [round(_level(0.6), 6), round(_level(0.2), 6)]
    problems = method.check(["a", "x"])
    assert problems == [f"{sets / 'A'}, {sets / 'B'}: no output for 1 of 2 images (<key>.<png|jpg|...>): x"]
    # extra files only from folders holding some of the keys: B's b.png and s.png are another set's
    assert _warned(caplog) == [f"{sets / 'A'}: 1 files match no LR image and are ignored: s.png"]
    with pytest.raises(OutputFolderError) as err:
        method.output_file("s")
    assert str(err.value) == (
        f"s: an output in each of 2 dataset folders ({sets / 'A' / 's.png'}, {sets / 'B' / 's.png'}); the file "
        f"names of the datasets collide, so bind the method to one with for_dataset(name)"
    )
    assert _levels(method.for_dataset("B"), ["s"]) == [round(_level(0.7), 6)]  # bound: no ambiguity


def test_mapping_missing_folder_fails_when_built(sets):
    with pytest.raises(OutputFolderError) as err:
        _method(path=str(sets), datasets={"A": "A", "DRealSR": "DRealSR"})
    assert str(err.value) == f"{sets / 'DRealSR'}: output folder not found for dataset 'DRealSR'"


# ----------------------------------------------------------------------------------------------- timings
def test_timings_csv_per_dataset(sets, tmp_path):
    (tmp_path / "A.csv").write_text("image,seconds\na.png,0.5\ns.png,1.0\n")
    (tmp_path / "B.csv").write_text("image,seconds\nb.png,2.0\ns.png,3.0\n")
    method = _method(path=f"{sets}/{{dataset}}", timings_csv=f"{tmp_path}/{{dataset}}.csv")
    a, b = method.for_dataset("A"), method.for_dataset("B")
    assert (a.reported_latency("s"), b.reported_latency("s"), b.reported_latency("a")) == (1.0, 3.0, None)
    assert a.reported_latencies() == {"a": 0.5, "s": 1.0}
    # the unbound method (what an efficiency table sees): every file opened so far, keyed dataset/stem
    assert method.reported_latencies() == {"A/a": 0.5, "A/s": 1.0, "B/b": 2.0, "B/s": 3.0}

    with pytest.raises(OutputFolderError) as err:
        _method(path=str(sets), datasets={"A": "A", "B": "B"}, timings_csv=f"{tmp_path}/{{dataset}}_x.csv")
    assert str(err.value) == f"{tmp_path / 'A_x.csv'}: timings CSV not found"


def test_one_timings_csv_shared_by_the_datasets_counts_once(sets, tmp_path):
    csv = tmp_path / "all.csv"
    csv.write_text("image,seconds\na.png,0.5\nb.png,2.0\n")
    method = _method(path=str(sets), datasets={"A": "A", "B": "B"}, timings_csv=str(csv))
    assert method.reported_latencies() == {"a": 0.5, "b": 2.0}
    assert (method.reported_latency("b"), method.for_dataset("A").reported_latency("a")) == (2.0, 0.5)


# ----------------------------------------------------------------------------------------------- experiments
def test_table1_output_folders_have_one_folder_per_dataset():
    cfg = load_experiment(TABLE1)
    names = [d.name for d in cfg.datasets]
    folders = {m.name: m.options for m in cfg.methods if m.type == "output_folder"}
    assert list(folders) == ["StableSR", "DiffBIR", "PASD", "OSEDiff"]
    for method, opt in folders.items():
        assert opt.path == f"outputs/{method}/{{dataset}}", method
        assert [dataset_paths(opt, d)[0] for d in names] == [Path("outputs", method, d) for d in names]
    # one set's folders elsewhere, from the command line
    moved = load_experiment(TABLE1, ["methods.OSEDiff.path=/data/osediff/{dataset}/x4"])
    opt = next(m.options for m in moved.methods if m.name == "OSEDiff")
    assert [dataset_paths(opt, d)[0] for d in names] == [Path("/data/osediff", d, "x4") for d in names]


@register("metrics", "_t_outfolder_level")
class _Level:
    """No-reference: mean intensity, which tells which output file a row was computed from."""

    lower_better, needs_reference, set_level = False, False, False

    def __call__(self, sr, hr=None):
        return sr.double().mean(dim=(1, 2, 3))


def test_bench_reads_each_datasets_folder_through_the_current_runner(tmp_path):
    """Two paired test sets, one output folder each (``datasets`` mapping): no runner support needed."""
    for name, stems in {"setA": ["a0", "a1"], "setB": ["b0"]}.items():
        for sub, size in (("LR", 4), ("HR", 16)):
            (tmp_path / name / sub).mkdir(parents=True)
            for stem in stems:
                _write(tmp_path / name / sub, f"{stem}.png", 0.5, size)
    outputs = {"setA": {"a0": 0.2, "a1": 0.3}, "setB": {"b0": 0.9}}
    for name, files in outputs.items():
        (tmp_path / "out" / name).mkdir(parents=True)
        for stem, value in files.items():
            _write(tmp_path / "out" / name, f"{stem}.png", value)
    cfg = experiment_from_dict(
        {
            "name": "per_dataset",
            "output_root": str(tmp_path / "runs"),
            "datasets": [
                {"type": "paired", "name": n, "root": str(tmp_path / n), "lr_dir": "LR", "hr_dir": "HR"}
                for n in ("setA", "setB")
            ],
            "methods": [
                {
                    "type": "output_folder",
                    "name": "OSEDiff",
                    "path": str(tmp_path / "out"),
                    "datasets": {"setA": "setA", "setB": "setB"},
                },
            ],  # fmt: skip
            "metrics": [{"type": "_t_outfolder_level", "name": "level"}],
            "bench": {"device": "cpu", "bootstrap_samples": 100, "save_images": False},
        },
        source="test.yaml",
    )
    run_dir = run_bench(cfg, progress=False)
    for name, files in outputs.items():
        table = pd.read_csv(R.per_image_path(run_dir, name))
        got = dict(zip(table[R.IMAGE_COL], table["level"].round(6)))
        assert got == {stem: round(_level(v), 6) for stem, v in files.items()}, name


# ----------------------------------------------------------------------------------------------- real data
def test_osediff_drealsr_outputs_through_the_placeholder(drealsr_dir, tmp_path, caplog):
    """OSEDiff's real DRealSR outputs under outputs/OSEDiff/DRealSR (a link): the view loads those files."""
    (tmp_path / "OSEDiff").mkdir()
    (tmp_path / "OSEDiff" / "DRealSR").symlink_to(drealsr_dir / "results_osediff", target_is_directory=True)
    method = _method(path=f"{tmp_path}/OSEDiff/{{dataset}}", inference_steps=1)
    view = method.for_dataset("DRealSR")
    keys = sorted(p.stem for p in (drealsr_dir / "test_LR").glob("*.png"))
    assert len(keys) == 93
    assert view.check(keys) == []
    assert _warned(caplog) == []
    assert view.output_size(keys[0]) == (512, 512)
    assert view.output_file(keys[0]) == tmp_path / "OSEDiff" / "DRealSR" / f"{keys[0]}.png"
    with pytest.raises(OutputFolderError) as err:
        method.for_dataset("RealSR")
    assert str(err.value) == f"{tmp_path / 'OSEDiff' / 'RealSR'}: output folder not found for dataset 'RealSR'"


def _warned(caplog) -> list[str]:
    """The warnings logged in this test (logged, not Python warnings: no source line on the terminal)."""
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
