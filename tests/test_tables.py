"""Paper Tables 1-2 end to end: experiment files, the missing-paths pre-check, efficiency in bench and report.

The CPU stand-in (experiments/tables_bundled.yaml) runs every method family of Table 1 on bundled photographs:
tiny RRDBNet/SwinIR spandrel checkpoints and a tiny AlignVAR, all with RANDOM weights, and interpolation
outputs standing in for the diffusion baselines' output folders. Its numbers are structure checks only.

Run as a script to write the stand-ins where an experiment points (default: experiments/tables_bundled.yaml;
the output folders, one per method and dataset, as in table1_main.yaml)::

    python tests/test_tables.py [EXPERIMENT.yaml] [key=value ...]
"""

from __future__ import annotations

import csv
import json
import logging
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import torch
from bs4 import BeautifulSoup

from harness.config.experiment import ExperimentConfig, load_experiment
from harness.core.imageio import save_image
from harness.core.mapping import ConfigError
from harness.core.registry import create
from methods.adapters.output_folder import OutputFolderConfig, dataset_paths
from methods.base import SRMethod

REPO = Path(__file__).resolve().parents[1]
TABLE1 = REPO / "experiments" / "table1_main.yaml"
TABLE2 = REPO / "experiments" / "table2_efficiency.yaml"
STANDIN = REPO / "experiments" / "tables_bundled.yaml"
# interpolations standing in for the diffusion baselines, in the order their output folders appear
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")
DATASETS = ("bundled-realesrgan", "bundled-bicubic")
METHODS = ["BSRGAN", "Real-ESRGAN", "SwinIR", "StableSR", "DiffBIR", "PASD", "OSEDiff", "VARSR", "AlignVAR"]


# ----------------------------------------------------------------------------------------------- stand-ins
def _rrdb(seed: int) -> torch.nn.Module:
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    return ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4).eval()


def _swinir(seed: int) -> torch.nn.Module:
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(seed)
    return SwinIR(upscale=4, in_chans=3, img_size=32, window_size=8, img_range=1.0, depths=[2], embed_dim=12,
                  num_heads=[2], mlp_ratio=2, upsampler="pixelshuffle", resi_connection="1conv").eval()  # fmt: skip


def _alignvar(seed: int, sca: str) -> torch.nn.Module:
    from methods.alignvar.configs import AlignVARConfig, SCAConfig
    from methods.alignvar.model import AlignVAR

    torch.manual_seed(seed)
    return AlignVAR.from_config(AlignVARConfig(arch="tiny", sca=SCAConfig(mask_input=sca)))


@dataclass
class Standins:
    """The files ``make_standins`` wrote, with the paths the experiment gives (relative: to the working dir)."""

    checkpoints: dict[str, Path] = field(default_factory=dict)  # method -> checkpoint file
    folders: dict[str, dict[str, Path]] = field(default_factory=dict)  # method -> {dataset: output folder}
    timings: dict[str, dict[str, Path]] = field(default_factory=dict)  # method -> {dataset: timings CSV}

    def under(self, root: Path) -> Standins:
        """The same files with relative paths taken from ``root`` (absolute ones are kept)."""
        return Standins(
            {name: root / path for name, path in self.checkpoints.items()},
            {name: {ds: root / path for ds, path in per.items()} for name, per in self.folders.items()},
            {name: {ds: root / path for ds, path in per.items()} for name, per in self.timings.items()},
        )

    def lines(self) -> list[str]:
        """``method: checkpoint`` lines, then ``method on dataset: folder (timings: file)`` lines (script mode)."""
        lines = [f"{name}: {path}" for name, path in self.checkpoints.items()]
        for name, per in self.folders.items():
            for ds, folder in per.items():
                timings = self.timings.get(name, {}).get(ds)
                lines.append(f"{name} on {ds}: {folder}" + (f" (timings: {timings})" if timings else ""))
        return lines


def _write_outputs(
    cfg: ExperimentConfig, opt: OutputFolderConfig, interpolation: SRMethod
) -> tuple[dict[str, Path], dict[str, Path]]:
    """Upscale every image of every dataset of ``cfg`` into the folder ``opt`` gives that dataset
    (``dataset_paths``) and write each timings file once, with the measured seconds of all the images it covers
    (one file per dataset, or one shared by all). Returns ({dataset: folder}, {dataset: timings CSV})."""
    folders: dict[str, Path] = {}
    timings_files: dict[str, Path] = {}
    rows: dict[Path, list[tuple[str, float]]] = {}  # timings file -> (image, seconds) rows
    for ds_spec in cfg.datasets:
        folder, timings_csv = dataset_paths(opt, ds_spec.name)
        folders[ds_spec.name] = folder
        if timings_csv is not None:
            timings_files[ds_spec.name] = timings_csv
        for sample in ds_spec.create().samples():
            start = time.perf_counter()
            sr = interpolation.upscale(sample.lr[None], [sample.key])[0]
            seconds = time.perf_counter() - start
            save_image(sr, folder / f"{opt.filename_tmpl.format(sample.key)}{opt.suffix}.png")
            if timings_csv is not None:
                rows.setdefault(timings_csv, []).append((f"{sample.key}.png", seconds))
    for timings_csv, image_seconds in rows.items():
        timings_csv.parent.mkdir(parents=True, exist_ok=True)
        with open(timings_csv, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([("image", "seconds"), *image_seconds])
    return folders, timings_files


def make_standins(cfg: ExperimentConfig) -> Standins:
    """Write a random-weight checkpoint or interpolation output folders wherever ``cfg``'s methods point.

    An output-folder method gets, for each dataset of ``cfg``, that dataset's images in the folder its config
    gives it (``path``, e.g. ``outputs/StableSR/{dataset}``) and the measured seconds of the interpolation that
    made each image in its ``timings_csv``.
    """
    written = Standins()
    folders = 0
    for seed, spec in enumerate(cfg.methods):
        opt = spec.options
        if spec.type in ("bsrgan", "realesrgan", "spandrel", "swinir"):
            path = Path(opt.checkpoint)
            path.parent.mkdir(parents=True, exist_ok=True)
            net = _swinir(seed) if spec.type == "swinir" else _rrdb(seed)
            torch.save(net.state_dict(), path)
            written.checkpoints[spec.name] = path
        elif spec.type in ("varsr", "alignvar"):
            path = Path(opt.checkpoint)
            path.parent.mkdir(parents=True, exist_ok=True)
            _alignvar(seed, "none" if spec.type == "varsr" else opt.sca).save(path)
            written.checkpoints[spec.name] = path
        elif spec.type == "output_folder":
            interpolation = create("methods", INTERPOLATIONS[folders % len(INTERPOLATIONS)])
            folders += 1
            written.folders[spec.name], written.timings[spec.name] = _write_outputs(cfg, opt, interpolation)
    return written


# ----------------------------------------------------------------------------------------------- helpers
def _rows(table) -> list[list[str]]:
    return [[td.get_text(" ", strip=True) for td in tr.find_all("td")] for tr in table.find("tbody").find_all("tr")]


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _seconds(timings_csv: Path) -> dict[str, float]:
    """{image file name: seconds} of a stand-in timings file, in file order, floats exactly as written."""
    with open(timings_csv, newline="", encoding="utf-8") as fh:
        return {row["image"]: float(row["seconds"]) for row in csv.DictReader(fh)}


# ----------------------------------------------------------------------------------------------- end to end
@dataclass
class StandinRun:
    """What the ``standin_run`` fixture returns."""

    code: int  # exit code of run.py bench
    run_dir: Path
    standins: Standins  # absolute paths
    warnings: list[str]  # messages of the warnings the bench logged


@pytest.fixture(scope="module")
def standin_run(tmp_path_factory) -> StandinRun:
    """The stand-in bench through the CLI (cwd = a temp dir), PASD non-strict with one output removed."""
    from harness.cli.main import main

    root = tmp_path_factory.mktemp("tables")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread is fastest, and robust on a busy machine
    try:
        # 64 px HR (16 px LR) keeps the tiny VAR models fast on CPU
        overrides = [
            "methods.PASD.strict=false",
            "datasets.bundled-bicubic.images=[rocket, motorcycle]",
            *(f"datasets.{d}.hr_size=64" for d in DATASETS),
        ]
        standins = make_standins(load_experiment(STANDIN, overrides)).under(root)
        (standins.folders["PASD"]["bundled-realesrgan"] / "coffee.png").unlink()  # PASD "did not produce" it
        args = ["bench", str(STANDIN), *overrides, "--output-root", "out", "--efficiency",
                "--efficiency-lr-size", "16", "--efficiency-repeats", "2", "--efficiency-warmup", "0", "--no-progress",
                "--report"]  # fmt: skip
        record = _Warnings()
        logging.getLogger().addHandler(record)
        try:
            code = main(args)
        finally:
            logging.getLogger().removeHandler(record)
    finally:
        torch.set_num_threads(threads)
        mp.undo()
    assert any("skipping them (strict: false)" in m for m in record.messages)
    return StandinRun(code, root / "out" / "tables_bundled", standins, record.messages)


class _Warnings(logging.Handler):
    """The messages of the warnings logged while it is attached."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_standin_outputs_mirror_table1_folders_per_dataset():
    table1 = {m.name: m.options for m in load_experiment(TABLE1).methods if m.type == "output_folder"}
    standin = {m.name: m.options for m in load_experiment(STANDIN).methods if m.type == "output_folder"}
    assert list(standin) == list(table1) == ["StableSR", "DiffBIR", "PASD", "OSEDiff"]
    for name, opt in standin.items():
        assert opt.path == f"runs/tables_standins/{table1[name].path}"
        assert opt.path == f"runs/tables_standins/outputs/{name}/{{dataset}}"
        assert opt.timings_csv == f"{opt.path}/timings.csv" and opt.per_dataset
        assert opt.inference_steps == table1[name].inference_steps
        folder, timings = dataset_paths(opt, "bundled-bicubic")
        assert (folder, timings) == (Path(f"runs/tables_standins/outputs/{name}/bundled-bicubic"),
                                     folder / "timings.csv")  # fmt: skip


def test_make_standins_writes_each_dataset_where_its_config_points(tmp_path, monkeypatch):
    from harness.config.experiment import experiment_from_dict

    monkeypatch.chdir(tmp_path)
    cfg = experiment_from_dict({
        "name": "s",
        "datasets": [{"type": "bundled", "name": "A", "images": ["coffee"], "hr_size": 32},
                     {"type": "bundled", "name": "B", "images": ["rocket", "motorcycle"], "hr_size": 32}],
        "methods": [{"type": "output_folder", "name": "X", "path": "o/{dataset}", "timings_csv": "t/{dataset}.csv"},
                    {"type": "output_folder", "name": "Y", "path": "one", "timings_csv": "one/timings.csv"}],
    })  # fmt: skip
    standins = make_standins(cfg)
    assert standins.checkpoints == {}
    assert standins.folders == {"X": {"A": Path("o/A"), "B": Path("o/B")}, "Y": {"A": Path("one"), "B": Path("one")}}
    assert standins.timings == {"X": {"A": Path("t/A.csv"), "B": Path("t/B.csv")},
                                "Y": {"A": Path("one/timings.csv"), "B": Path("one/timings.csv")}}  # fmt: skip
    # one folder and timings file per dataset ...
    assert sorted(p.name for p in Path("o/A").iterdir()) == ["coffee.png"]
    assert sorted(p.name for p in Path("o/B").iterdir()) == ["motorcycle.png", "rocket.png"]
    assert list(_seconds(Path("t/A.csv"))) == ["coffee.png"]
    assert list(_seconds(Path("t/B.csv"))) == ["rocket.png", "motorcycle.png"]
    # ... or one of each shared by all datasets
    assert {p.name for p in Path("one").iterdir()} == {"coffee.png", "motorcycle.png", "rocket.png", "timings.csv"}
    assert list(_seconds(Path("one/timings.csv"))) == ["coffee.png", "rocket.png", "motorcycle.png"]
    assert all(seconds > 0 for seconds in _seconds(Path("one/timings.csv")).values())


@pytest.mark.slow
def test_standin_bench_report_shows_tables_1_and_2(standin_run):
    code, run_dir = standin_run.code, standin_run.run_dir
    assert code == 0
    soup = BeautifulSoup((run_dir / "report.html").read_text(encoding="utf-8"), "html.parser")
    methods = [
        "BSRGAN",
        "Real-ESRGAN",
        "SwinIR",
        "StableSR",
        "DiffBIR",
        "PASD",
        "OSEDiff",
        "VARSR",
        "AlignVAR",
    ]
    # Table 1: one quality table per dataset, one row per method, psnr_y/ssim_y/latency columns
    quality = soup.find("section", id="results").find_all("table", class_="quality")
    assert [t.find_previous("h3").get_text() for t in quality] == list(DATASETS)
    for table in quality:
        headers = [th.get_text(" ", strip=True) for th in table.find("thead").find_all("th")]
        assert headers == ["method", "psnr_y \u2191", "ssim_y \u2191", "latency (s/img) \u2193"]
        assert [r[0] for r in _rows(table)] == methods
    # Table 2: one row per method, in config order, after Table 1
    section = soup.find("section", id="efficiency")
    assert [s["id"] for s in soup.find_all("section")][:4] == ["overview", "results", "models", "efficiency"]
    # the models (methods with a VQ-VAE) next to their tokenizer ceiling and bicubic, per dataset
    models = [r[:2] for r in _rows(soup.find("section", id="models").find("table", class_="models"))]
    assert models == [[m, d] for m in ("VARSR", "AlignVAR") for d in DATASETS]
    table = section.find("table", class_="efficiency")
    headers = [th.get_text() for th in table.find("thead").find_all("th")]
    assert headers == ["Method", "Params (M)", "Steps", "Time (s)", "IQR (s)", "Peak memory (MiB)", "Device"]
    rows = {r[0]: r for r in _rows(table)}
    assert list(rows) == methods
    from reports.page import format_value

    assert rows["BSRGAN"][1] == format_value(_n_params(_rrdb(0)) / 1e6)
    assert rows["SwinIR"][1] == format_value(_n_params(_swinir(2)) / 1e6)
    for name in ("BSRGAN", "Real-ESRGAN", "SwinIR"):
        assert rows[name][2] == "1" and rows[name][6] == "cpu" and "\u2020" not in rows[name][3]
    for name, steps in (("StableSR", "200"), ("DiffBIR", "20"), ("PASD", "50"), ("OSEDiff", "1")):
        assert rows[name][1:3] == ["\u2013", steps] and rows[name][3].endswith("\u2020")
        assert rows[name][5:] == ["\u2013", "reported"]
    assert "reported: the median (IQR) of the per-image seconds" in section.get_text(" ", strip=True)
    banner = soup.find("div", class_="banner").get_text(" ", strip=True)
    assert "PASD on bundled-realesrgan: 1 image(s) without output skipped" in banner


def test_standin_bench_exports_tables_1_and_2_for_the_paper(standin_run):
    """``--report`` writes exports/: Table 1 with a column per (dataset, metric), Table 2 with a row per method
    (reported timings marked), as LaTeX that passes the checker and Markdown."""
    from reports.exports import latex_problems

    exports = standin_run.run_dir / "exports"
    assert sorted(p.name for p in exports.iterdir()) == ["efficiency.md", "efficiency.tex", "table.md", "table.tex"]
    for tex in ("table.tex", "efficiency.tex"):
        assert latex_problems((exports / tex).read_text(encoding="utf-8")) == [], tex
    table = (exports / "table.md").read_text(encoding="utf-8").splitlines()
    header = [c.strip() for c in table[2].strip("|").split("|")]
    assert header == ["Method"] + [
        f"{d} {m} \u2191".replace("_", "\\_") for d in DATASETS for m in ("psnr_y", "ssim_y")
    ]
    assert [r.split("|")[1].strip() for r in table[4:]] == ["BSRGAN", "Real-ESRGAN", "SwinIR", "StableSR", "DiffBIR",
                                                            "PASD", "OSEDiff", "VARSR", "AlignVAR"]  # fmt: skip
    efficiency = (exports / "efficiency.md").read_text(encoding="utf-8").splitlines()
    names = [r.split("|")[1].strip() for r in efficiency[4:]]
    assert names[:3] == ["BSRGAN", "Real-ESRGAN", "SwinIR"] and names[3:7] == [
        "StableSR\u2020", "DiffBIR\u2020", "PASD\u2020", "OSEDiff\u2020"
    ]  # fmt: skip


@pytest.mark.slow
def test_standin_efficiency_json_and_reported_latencies(standin_run):
    run_dir, timings_files = standin_run.run_dir, standin_run.standins.timings
    data = json.loads((run_dir / "efficiency.json").read_text())
    assert [data[k] for k in ("lr_size", "output_size", "repeats", "warmup")] == [[16, 16], [64, 64], 2, 0]
    entries = data["methods"]
    bsrgan = entries["BSRGAN"]
    assert bsrgan["time_source"] == "measured" and bsrgan["latency"]["n"] == 2 and bsrgan["error"] is None
    assert bsrgan["params"] == {"total": _n_params(_rrdb(0)), "components": {"net": _n_params(_rrdb(0))}}
    alignvar = entries["AlignVAR"]
    counts = _alignvar(8, "laplacian").parameter_counts()
    assert alignvar["params"]["components"] == counts and alignvar["params"]["total"] == sum(counts.values())
    assert entries["VARSR"]["params"]["components"]["sca"] == 0 and counts["sca"] > 0
    # reported timings: the median / IQR of the per-image seconds of every dataset's timings file together
    # (3 bundled-realesrgan + 2 bundled-bicubic rows), the IQR between linearly interpolated quartiles
    seconds = [s for d in DATASETS for s in _seconds(timings_files["StableSR"][d]).values()]
    stable = entries["StableSR"]
    assert stable["time_source"] == "reported" and stable["params"]["total"] is None
    assert stable["latency"]["n"] == len(seconds) == 5
    q1, _, q3 = statistics.quantiles(seconds, n=4, method="inclusive")  # with 5 values: the 2nd and 4th
    assert (q1, q3) == (sorted(seconds)[1], sorted(seconds)[3])
    assert stable["latency"]["median"] == statistics.median(seconds)
    assert stable["latency"]["iqr"] == q3 - q1
    assert stable["latency"]["mean"] == pytest.approx(statistics.fmean(seconds), rel=1e-12)
    # the per-image latency of a precomputed method is what it reports for that image in that dataset's file
    for dataset in DATASETS:
        table = pd.read_csv(run_dir / "metrics" / f"{dataset}.csv")
        reported = _seconds(timings_files["DiffBIR"][dataset])
        diffbir = table[table["method"] == "DiffBIR"].set_index("image")["latency_s"]
        assert [f"{k}.png" for k in diffbir.index] == list(reported)
        assert diffbir.to_dict() == pytest.approx({k: reported[f"{k}.png"] for k in diffbir.index}, abs=1e-12)
    meta = json.loads((run_dir / "summary.json").read_text())
    assert meta["methods"]["DiffBIR"]["latency_source"] == "reported"
    assert meta["methods"]["VARSR"]["latency_source"] == "measured"
    assert meta["methods"]["VARSR"]["weight_files"]["checkpoint"].endswith("checkpoints/VARSR_tiny.safetensors")
    assert meta["methods"]["DiffBIR"]["weight_files"] is None  # precomputed outputs: no weights


@pytest.mark.slow
def test_non_strict_output_folder_is_evaluated_on_the_images_it_has(standin_run):
    run_dir = standin_run.run_dir
    meta = json.loads((run_dir / "summary.json").read_text())
    assert meta["method_skipped"] == [{"dataset": "bundled-realesrgan", "method": "PASD", "image": "coffee",
                                       "error": "no precomputed output (strict: false)"}]  # fmt: skip
    assert meta["skipped"] == [] and meta["status"] == "ok"
    assert any(n.startswith("PASD on bundled-realesrgan: 1 image(s) without output skipped") for n in meta["notes"])
    table = pd.read_csv(run_dir / "metrics" / "bundled-realesrgan.csv")
    assert sorted(table[table["method"] == "PASD"]["image"]) == ["astronaut", "chelsea"]
    assert sorted(table[table["method"] == "StableSR"]["image"]) == ["astronaut", "chelsea", "coffee"]
    summary = pd.read_csv(run_dir / "summary.csv")
    n = summary[(summary["metric"] == "psnr_y") & (summary["dataset"] == "bundled-realesrgan")]
    assert n.set_index("method")["n"].to_dict() == {m: 2 if m == "PASD" else 3 for m in n["method"]}
    # references of the skipped image are still saved for the report grid and set-level metrics
    assert (run_dir / "references" / "bundled-realesrgan" / "hr" / "coffee.png").is_file()
    assert not (run_dir / "images" / "bundled-realesrgan" / "PASD" / "coffee.png").exists()


@pytest.mark.slow
def test_standin_output_folders_warn_only_about_the_removed_output(standin_run):
    # one folder per dataset: no "files match no LR image" warnings about the other dataset's outputs
    folder = Path("runs/tables_standins/outputs/PASD/bundled-realesrgan")
    from_folders = [m for m in standin_run.warnings if "runs/tables_standins/outputs" in m]
    assert from_folders == [f"{folder}: no output for 1 of 3 images (<key>.<png|jpg|...>): coffee; skipping them "
                            f"(strict: false)"]  # fmt: skip
    assert not any("match no LR image" in m for m in standin_run.warnings)


# ----------------------------------------------------------------------------------------------- missing paths
def test_table1_lists_every_missing_path_before_any_work(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants as hf_constants

    from harness.cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("ALIGNVAR_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # an empty Hugging Face cache
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "BSRGAN.pth").write_bytes(b"")  # present: only existence is checked here
    code = main(["bench", str(TABLE1), "metrics.lpips.net=vgg", "--output-root", "out", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "out").exists()
    lines = err.splitlines()
    assert lines[0] == f"config error: {TABLE1}: 20 required path(s) not found, nothing was run:"
    hub = tmp_path / "torch" / "hub"
    expected = [
        "  - datasets[2] (DRealSR): dataset folder not found: datasets/DRealSR (with test_LR/test_HR, lq/gt or "
        "LR/HR inside)",
        "  - methods[3] (StableSR): output folder not found: outputs/StableSR (the method's SR images, made with "
        "its own code)",
        # the official VARSR weights are Hub references: offline and not cached, named with the cache
        f"  - methods[7] (VARSR): vqvae hf://qyp2000/VARSR/VQVAE.pth is not cached (the Hugging Face cache "
        f"{tmp_path / 'hf'}) and downloads are off (--offline / ALIGNVAR_OFFLINE=1 / HF_HUB_OFFLINE=1)",
        "  - methods[8] (AlignVAR): checkpoint not found: checkpoints/AlignVAR.safetensors (ours from run.py "
        "train, or a VARSR release checkpoint: https://github.com/qyp2000/VARSR)",
        # one line for a file two metrics need (VGG16: lpips net vgg and dists)
        f"  - metrics[2] (lpips), metrics[3] (dists): weight file vgg16-397923af.pth not found: "
        f"{hub / 'checkpoints' / 'vgg16-397923af.pth'} (torchvision VGG16, ImageNet: "
        "https://download.pytorch.org/models/vgg16-397923af.pth)",
        f"  - metrics[8] (niqe): weight file niqe_modelparameters.mat not found: "
        f"{hub / 'pyiqa' / 'niqe_modelparameters.mat'} (NIQE pristine-image model: "
        "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/niqe_modelparameters.mat)",
    ]
    for line in expected:
        assert line in lines
    listed = [line for line in lines if line.startswith("  - ")]
    assert len(listed) == 20 and not any("BSRGAN.pth" in line for line in listed)
    assert sum("datasets[" in line for line in listed) == 3 and sum("output folder" in line for line in listed) == 4
    assert sum("metrics[" in line for line in listed) == 8  # lpips-vgg 1 + shared VGG16 + dists 1 + 5 others
    assert lines[-2].startswith("relative paths are resolved from the working directory")
    # offline (the tests' default): the weights are named; online they would be fetched first
    assert lines[-1] == (
        "without offline mode (--offline / ALIGNVAR_OFFLINE=1 / HF_HUB_OFFLINE=1) these are downloaded automatically"
    )


def test_requirements_skip_trained_placeholder_and_resolve_paired_subfolders(tmp_path):
    from harness.bench.prepare import experiment_requirements, missing_requirements
    from harness.config.experiment import experiment_from_dict

    cfg = experiment_from_dict({
        "name": "r", "datasets": [{"type": "paired", "root": str(tmp_path), "lr_dir": "LR", "hr_dir": "/abs/HR"}],
        "methods": [{"type": "alignvar", "checkpoint": "@trained"}, "bicubic"],
    })  # fmt: skip
    reqs = experiment_requirements(cfg)
    assert [(r.what, r.path, r.kind) for r in reqs] == [("LR folder", tmp_path / "LR", "dir"),
                                                        ("HR folder", Path("/abs/HR"), "dir")]  # fmt: skip
    (tmp_path / "LR").mkdir()
    assert [r.line() for r in missing_requirements(cfg)] == ["datasets[0] (paired): HR folder not found: /abs/HR"]


# ----------------------------------------------------------------------------------------------- configs
def test_table2_has_the_methods_of_table1_plus_timings():
    t1, t2 = load_experiment(TABLE1), load_experiment(TABLE2)
    assert [(m.name, m.type) for m in t1.methods] == [(m.name, m.type) for m in t2.methods]
    for a, b in zip(t1.methods, t2.methods):
        if a.type == "output_folder":
            assert (b.options.path, b.options.inference_steps) == (a.options.path, a.options.inference_steps)
            assert b.options.timings_csv == f"{a.options.path}/timings.csv"
        else:
            assert a.options == b.options
    assert [m.name for m in t1.metrics] == ["psnr_y", "ssim_y", "lpips", "dists", "fid", "maniqa", "musiq",
                                            "clipiqa", "niqe"]  # fmt: skip
    assert [d.name for d in t1.datasets] == ["DIV2K-Val", "RealSR", "DRealSR"] and t1.bench.efficiency is None
    eff = t2.bench.efficiency
    assert (eff.lr_size, eff.repeats, eff.warmup, eff.memory) == (128, 10, 3, True)


def test_efficiency_cli_flags_set_the_config(tmp_path):
    import argparse

    from harness.cli.bench import apply_efficiency_flags

    cfg = load_experiment(TABLE2)
    args = argparse.Namespace(efficiency=False, efficiency_lr_size=64, efficiency_repeats=None, efficiency_warmup=None)
    apply_efficiency_flags(cfg, args)  # a value implies --efficiency; the experiment's other values are kept
    assert (cfg.bench.efficiency.lr_size, cfg.bench.efficiency.repeats) == (64, 10)
    cfg = load_experiment(TABLE1)
    apply_efficiency_flags(cfg, argparse.Namespace(efficiency=False))
    assert cfg.bench.efficiency is None
    apply_efficiency_flags(cfg, argparse.Namespace(efficiency=True))
    assert cfg.bench.efficiency.lr_size == 128 and cfg.bench.efficiency.repeats == 5
    bad = argparse.Namespace(efficiency=True, efficiency_lr_size=None, efficiency_repeats=0, efficiency_warmup=None)
    with pytest.raises(ConfigError) as err:
        apply_efficiency_flags(cfg, bad)
    assert str(err.value) == (
        "--efficiency options: bench.efficiency needs lr_size >= 1, repeats >= 1, warmup >= 0; got lr_size=128, "
        "repeats=0, warmup=2"
    )


def test_efficiency_section_formats_reported_and_failed_entries():
    from reports.bench import efficiency_context, efficiency_rows

    data = {
        "lr_size": [128, 128], "output_size": [512, 512], "repeats": 5, "warmup": 2, "device": "cuda",
        "device_name": "GPU", "memory_basis": "cuda max_memory_allocated",
        "methods": {
            "VARSR": {"params": {"total": 1_102_900_000}, "inference_steps": 10, "time_source": "measured",
                      "latency": {"median": 0.52, "iqr": 0.01}, "peak_memory_bytes": 3 * 2**30, "device": "cuda"},
            "StableSR": {"params": {"total": None}, "inference_steps": 200, "time_source": "reported",
                         "latency": {"median": 15.32, "iqr": 0.5}, "device": "reported"},
            "Big": {"params": {"total": 10**9}, "inference_steps": 1, "time_source": "unknown", "latency": None,
                    "device": "cuda", "error": "OutOfMemoryError: CUDA out of memory"},
        },
    }  # fmt: skip
    rows = efficiency_rows(data)
    assert rows[0]["Params (M)"] == pytest.approx(1102.9) and rows[0]["Peak memory (MiB)"] == 3072
    ctx = efficiency_context(data)
    assert [(r["params"], r["steps"], r["time"], r["memory"], r["reported"]) for r in ctx["rows"]] == [
        ("1102.9", "10", "0.5200", "3072.0", False),
        ("\u2013", "200", "15.32", "\u2013", True),
        ("1000.0", "1", "\u2013", "\u2013", False),
    ]
    assert ctx["rows"][2]["error"] == "OutOfMemoryError: CUDA out of memory"
    assert ctx["caption"].startswith("Batch 1, LR 128\u00d7128 \u2192 512\u00d7512 (seeded random input), median")


if __name__ == "__main__":  # python tests/test_tables.py [EXPERIMENT.yaml] [key=value ...]
    experiment = sys.argv[1] if len(sys.argv) > 1 and "=" not in sys.argv[1] else str(STANDIN)
    overrides = [a for a in sys.argv[1:] if "=" in a]
    print("\n".join(make_standins(load_experiment(experiment, overrides)).lines()))
