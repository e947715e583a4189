"""Runner and results files (the statistics themselves: tests/test_stats.py).

Tiny stand-in components (names prefixed ``_t_runner_``) are registered here so the runner is tested on
closed-form cases; ``test_bench_real_components`` runs the real bundled dataset + bicubic + PSNR/SSIM.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from harness.bench.evaluate import quantize_8bit
from harness.bench.layout import RunNotFoundError, load_run, safe_name
from harness.bench.prepare import BenchValidationError
from harness.bench.runner import BenchFailedError, RunExistsError, run_bench
from harness.config.experiment import experiment_from_dict
from harness.core import registry
from harness.core.imageio import ImageError, load_image
from harness.core.registry import register
from harness.data.datasets import Sample
from methods.base import SRMethod


# ----------------------------------------------------------------------------------------------- stand-ins
@dataclass
class TinyConfig:
    n: int = 2
    size: int = 8  # LR side
    sizes: list[int] = field(default_factory=list)  # per-image LR sides (overrides size/n)
    corrupt: list[str] = field(default_factory=list)  # keys whose "file" cannot be decoded
    reference: bool = True
    scale: int = 4


class TinyDataset:
    """Deterministic random LR/HR pairs; HR = a fixed function of the key, LR = its 4x4 mean-pool."""

    def __init__(self, cfg: TinyConfig):
        self.name, self.scale, self.has_reference = "tiny", cfg.scale, cfg.reference
        sizes = cfg.sizes or [cfg.size] * cfg.n
        self._sizes = dict(zip([f"img{i}" for i in range(len(sizes))], sizes))
        self.keys = list(self._sizes)
        self.corrupt = set(cfg.corrupt)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> Sample:
        key = self.keys[i]
        if key in self.corrupt:
            raise ImageError(f"/data/tiny/{key}.png: cannot decode image (OSError: truncated)")
        side = self._sizes[key] * self.scale
        gen = torch.Generator().manual_seed(i)
        hr = (torch.rand(3, side, side, generator=gen) * 255).round() / 255
        lr = quantize_8bit(torch.nn.functional.avg_pool2d(hr[None], self.scale)[0])
        return Sample(key, lr, hr if self.has_reference else None)


class BoxUpscale(SRMethod):
    """Nearest upscaling by pixel repetition; records the batch shapes it saw."""

    def __init__(self):
        super().__init__()
        self.batches: list[tuple[int, ...]] = []

    def upscale(self, lr, keys):
        self.batches.append(tuple(lr.shape))
        assert len(keys) == lr.shape[0]
        return lr.repeat_interleave(4, -1).repeat_interleave(4, -2)


class Boom(SRMethod):
    def upscale(self, lr, keys):
        raise RuntimeError("boom: simulated method crash")


class Scale2(SRMethod):
    scale = 2

    def upscale(self, lr, keys):  # pragma: no cover - never runs (validation fails first)
        return lr


class BadBuild(SRMethod):
    def __init__(self):
        raise FileNotFoundError("weights/missing.safetensors: checkpoint not found")


class MAE:
    """Mean absolute error per image (closed form, lower is better)."""

    name, lower_better, needs_reference, set_level = "mae", True, True, False

    def __call__(self, sr, hr):
        return (sr.double() - hr.double()).abs().mean(dim=(1, 2, 3))


class MeanLevel:
    """No-reference: mean intensity."""

    name, lower_better, needs_reference, set_level = "mean", False, False, False

    def __call__(self, sr, hr=None):
        return sr.double().mean(dim=(1, 2, 3))


class FolderMAE:
    """Set-level: mean absolute error over all files of two folders (same stems)."""

    name, lower_better, needs_reference, set_level = "folder_mae", True, True, True

    def __call__(self, sr, hr):  # pragma: no cover - set-level metrics are not called per image
        raise AssertionError("set-level metric called per image")

    def compute_sets(self, sr_dir, hr_dir):
        files = sorted(Path(sr_dir).glob("*.png"))
        diffs = [(load_image(f).double() - load_image(Path(hr_dir) / f.name).double()).abs().mean() for f in files]
        return float(np.mean(diffs))


class Picky(BoxUpscale):
    """Box upscaling that runs out of memory above 8x8 LR pixels and fails on the key ``img2``."""

    def upscale(self, lr, keys):
        if lr.shape[-1] > 8:
            raise MemoryError("cannot allocate 4 GiB")  # what a too-large image does, without the 4 GiB
        if "img2" in keys:
            raise RuntimeError("cannot handle img2")
        return super().upscale(lr, keys)


class FakeClock:
    """``time`` for harness.bench.evaluate: a clock that only the methods below move."""

    now = 0.0

    @classmethod
    def perf_counter(cls) -> float:
        return cls.now


class SlowFirstCall(BoxUpscale):
    """Its first call takes 100 s (lazy initialisation, as a real first call on a CPU), each later call 1 s per
    image, on ``FakeClock``."""

    def upscale(self, lr, keys):
        FakeClock.now += 100.0 if not self.batches else float(lr.shape[0])
        return super().upscale(lr, keys)


register("datasets", "_t_runner_tiny", config=TinyConfig)(TinyDataset)
register("methods", "_t_runner_slow_first")(SlowFirstCall)
register("methods", "_t_runner_picky")(Picky)
register("methods", "_t_runner_box")(BoxUpscale)
register("methods", "_t_runner_boom")(Boom)
register("methods", "_t_runner_x2")(Scale2)
register("methods", "_t_runner_badbuild")(BadBuild)
register("metrics", "_t_runner_mae")(MAE)
register("metrics", "_t_runner_mean")(MeanLevel)
register("metrics", "_t_runner_folder_mae")(FolderMAE)


def make_cfg(tmp_path: Path, **over) -> object:
    data = {
        "name": "exp",
        "output_root": str(tmp_path / "runs"),
        "datasets": [{"type": "_t_runner_tiny", "name": "tiny"}],
        "methods": [{"type": "_t_runner_box", "name": "box"}],
        "metrics": [{"type": "_t_runner_mae", "name": "mae"}, {"type": "_t_runner_mean", "name": "level"}],
        "bench": {"device": "cpu", "bootstrap_samples": 200},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return experiment_from_dict(data, source="test.yaml")


def run(cfg, **kw):
    return run_bench(cfg, progress=False, **kw)


# ----------------------------------------------------------------------------------------------- bench
def test_full_bench_outputs_and_values(tmp_path):
    run_dir = run(make_cfg(tmp_path))
    assert run_dir == tmp_path / "runs" / "exp"
    for name in ("config.yaml", "env.json", "metrics/tiny.csv", "summary.json", "summary.csv"):
        assert (run_dir / name).is_file(), name
    for key in ("img0", "img1"):
        assert (run_dir / "images/tiny/box" / f"{key}.png").is_file()
        assert (run_dir / "references/tiny/lr" / f"{key}.png").is_file()
        assert (run_dir / "references/tiny/hr" / f"{key}.png").is_file()
    # atomic writes: no temporary files left anywhere
    assert sorted(p.name for p in run_dir.rglob(".*")) == [".harness-files.json", ".lock"]  # lock, file manifest

    table = pd.read_csv(run_dir / "metrics/tiny.csv")
    assert list(table.columns) == ["dataset", "method", "image", "mae", "level", "latency_s"]
    assert list(table["image"]) == ["img0", "img1"]
    ds = TinyDataset(TinyConfig())
    for i, row in table.iterrows():
        sample = ds[i]
        saved = load_image(run_dir / "images/tiny/box" / f"{row['image']}.png")
        assert torch.equal(saved, sample.lr.repeat_interleave(4, -1).repeat_interleave(4, -2))
        assert row["mae"] == pytest.approx(float((saved.double() - sample.hr.double()).abs().mean()), abs=1e-12)
        assert row["level"] == pytest.approx(float(saved.double().mean()), abs=1e-12)
        assert row["latency_s"] > 0

    summary = pd.read_csv(run_dir / "summary.csv")
    assert list(summary.columns) == [
        "dataset", "method", "metric", "mean", "std", "ci_low", "ci_high", "ci_method", "n", "lower_better",
    ]  # fmt: skip
    assert list(summary["metric"]) == ["mae", "level", "latency_s"]
    mae = summary.set_index("metric").loc["mae"]
    assert mae["mean"] == pytest.approx(table["mae"].mean())
    assert mae["std"] == pytest.approx(table["mae"].std(ddof=1))
    assert mae["ci_low"] <= mae["mean"] <= mae["ci_high"] and mae["n"] == 2 and bool(mae["lower_better"])
    assert mae["ci_method"] == "percentile"  # BCa needs >= 3 values
    assert not bool(summary.set_index("metric").loc["level", "lower_better"])

    meta = json.loads((run_dir / "summary.json").read_text())
    assert meta["status"] == "ok" and meta["failures"] == [] and meta["skipped"] == []
    assert meta["metrics"]["mae"] == {
        "lower_better": True,
        "needs_reference": True,
        "set_level": False,
        "type": "_t_runner_mae",
    }
    assert meta["datasets"]["tiny"]["n_images"] == 2
    env = json.loads((run_dir / "env.json").read_text())
    assert {"python", "packages", "git", "device_name", "cpu", "hostname", "command", "time"} <= set(env)
    assert set(env["packages"]) >= {"torch", "torchvision", "pyiqa"}
    cfg_back = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg_back["name"] == "exp" and cfg_back["methods"] == [{"type": "_t_runner_box", "name": "box"}]

    loaded = load_run(run_dir)
    assert loaded.methods == ["box"] and loaded.metrics == ["mae", "level"] and loaded.datasets == ["tiny"]
    assert loaded.lower_better("mae") and not loaded.lower_better("level")
    assert loaded.images("tiny")["mae"].tolist() == table["mae"].tolist()


def test_existing_run_needs_force(tmp_path):
    cfg = make_cfg(tmp_path)
    two = make_cfg(
        tmp_path, methods=[{"type": "_t_runner_box", "name": "box"}, {"type": "_t_runner_box", "name": "old"}]
    )
    run_dir = run(two)
    stale = run_dir / "images/tiny/old"  # the harness's own outputs of a method no longer in the config
    assert stale.is_dir()
    with pytest.raises(
        RunExistsError, match="already holds a finished run from a different config or code:\n  config.methods"
    ):
        run(cfg)
    run(cfg, force=True)
    assert not stale.exists()  # a forced run leaves exactly the new run's outputs
    with pytest.raises(
        RunExistsError, match="already holds a finished run from the same config and code; pass --force"
    ):
        run(cfg)


def test_failing_method_is_recorded_and_others_finish(tmp_path):
    methods = [{"type": "_t_runner_box", "name": "first"}, {"type": "_t_runner_boom", "name": "boom"},
               {"type": "_t_runner_box", "name": "last"}]  # fmt: skip
    with pytest.raises(BenchFailedError, match="boom on tiny: RuntimeError: boom: simulated method crash"):
        run(make_cfg(tmp_path, methods=methods))
    run_dir = tmp_path / "runs/exp"
    table = pd.read_csv(run_dir / "metrics/tiny.csv")
    assert sorted(set(table["method"])) == ["first", "last"] and len(table) == 4
    error = (run_dir / "errors/tiny__boom.txt").read_text()
    assert "Traceback (most recent call last)" in error and "RuntimeError: boom: simulated method crash" in error
    meta = json.loads((run_dir / "summary.json").read_text())
    assert meta["status"] == "failed"
    assert meta["failures"] == [{"dataset": "tiny", "method": "boom", "traceback": "errors/tiny__boom.txt",
                                 "error": "RuntimeError: boom: simulated method crash"}]  # fmt: skip


def test_validation_reports_every_problem_before_running(tmp_path):
    methods = [{"type": "_t_runner_x2", "name": "x2"}, {"type": "_t_runner_badbuild", "name": "bad"}]
    metrics = [{"type": "_t_runner_folder_mae", "name": "fmae"}]
    cfg = make_cfg(tmp_path, methods=methods, metrics=metrics, bench={"save_images": False})
    with pytest.raises(BenchValidationError) as info:
        run(cfg)
    assert str(info.value) == (
        "test.yaml: 3 problem(s), nothing was run:\n"
        "  - methods[1] (bad): FileNotFoundError: weights/missing.safetensors: checkpoint not found\n"
        "  - methods (x2): scale x2 does not match dataset 'tiny' (x4)\n"
        "  - metrics (fmae): a set-level metric is computed from the saved images; "
        "set bench.save_images: true"
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("mode", ["skip", "fail"])
def test_corrupt_images(tmp_path, mode, caplog):
    datasets = [{"type": "_t_runner_tiny", "name": "tiny", "n": 3, "corrupt": ["img1"]}]
    cfg = make_cfg(
        tmp_path,
        datasets=datasets,
        bench={"on_corrupt": mode},
        methods=[{"type": "_t_runner_box", "name": "a"}, {"type": "_t_runner_box", "name": "b"}],
    )
    action = "skipping" if mode == "skip" else "cannot evaluate"
    if mode == "fail":  # the other images are evaluated and written; the run then fails
        with pytest.raises(BenchFailedError, match=r"tiny/img1 \(input, load\): /data/tiny/img1.png: cannot"):
            run(cfg)
        run_dir = tmp_path / "runs/exp"
    else:
        run_dir = run(cfg)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    error = "/data/tiny/img1.png: cannot decode image (OSError: truncated)"
    assert [m for m in warned if "img1" in m] == [f"{action} tiny/img1: {error}"]  # once, not once per method
    table = pd.read_csv(run_dir / "metrics/tiny.csv")
    assert list(table["image"]) == ["img0", "img2", "img0", "img2"]
    meta = json.loads((run_dir / "summary.json").read_text())
    assert meta["status"] == ("ok" if mode == "skip" else "failed") and meta["datasets"]["tiny"]["n_skipped"] == 1
    assert meta["evaluation"] == [{"dataset": "tiny", "method": m, "n_images": 3, "n_evaluated": 2, "n_failed": 1}
                                  for m in ("a", "b")]  # fmt: skip
    error = "/data/tiny/img1.png: cannot decode image (OSError: truncated)"
    assert meta["skipped"] == [{"dataset": "tiny", "image": "img1", "error": error}]
    assert load_run(run_dir).skipped[0]["image"] == "img1"


def test_batches_only_group_same_size_images(tmp_path, monkeypatch):
    import harness.bench.runner as runner_mod

    datasets = [{"type": "_t_runner_tiny", "name": "tiny", "sizes": [4, 4, 4, 6, 6, 4]}]
    cfg = make_cfg(tmp_path, datasets=datasets, bench={"batch_size": 2})
    calls = []
    orig = runner_mod.prepare

    def spy(cfg, device, **kwargs):
        prepared = orig(cfg, device, **kwargs)
        calls.append(prepared.methods["box"])
        return prepared

    monkeypatch.setattr(runner_mod, "prepare", spy)
    run_dir = run(cfg)
    # the first batch twice: an untimed warm-up call, then the timed one (harness.bench.evaluate.WARMUP_CALLS)
    assert calls[0].batches == [(2, 3, 4, 4), (2, 3, 4, 4), (1, 3, 4, 4), (2, 3, 6, 6), (1, 3, 4, 4)]
    table = pd.read_csv(run_dir / "metrics/tiny.csv")
    assert list(table["image"]) == [f"img{i}" for i in range(6)]
    # per-image latency = batch time / batch size: both images of a batch carry the same value
    assert table["latency_s"].iloc[0] == table["latency_s"].iloc[1]


def test_no_reference_dataset_skips_fr_metrics_and_parquet(tmp_path):
    datasets = [{"type": "_t_runner_tiny", "name": "lr only", "reference": False}]
    cfg = make_cfg(tmp_path, datasets=datasets, bench={"results_format": "parquet"})
    run_dir = run(cfg)
    table = pd.read_parquet(run_dir / f"metrics/{safe_name('lr only')}.parquet")
    assert list(table.columns) == ["dataset", "method", "image", "level", "latency_s"]
    meta = json.loads((run_dir / "summary.json").read_text())
    assert meta["notes"] == ["mae needs HR references; not computed on lr only (no HR images)"]
    assert not (run_dir / "references" / safe_name("lr only") / "hr").exists()
    assert load_run(run_dir).images("lr only")["level"].notna().all()


def test_set_level_metric_from_saved_folders(tmp_path):
    metrics = [{"type": "_t_runner_mae", "name": "mae"}, {"type": "_t_runner_folder_mae", "name": "fmae"}]
    datasets = [{"type": "_t_runner_tiny", "n": 3}]
    run_dir = run(make_cfg(tmp_path, metrics=metrics, datasets=datasets, report={"max_images_in_grid": 1}))
    summary = pd.read_csv(run_dir / "summary.csv").set_index("metric")
    # same-size images: the folder-level MAE equals the mean of the per-image MAEs
    assert summary.loc["fmae", "mean"] == pytest.approx(summary.loc["mae", "mean"], abs=1e-9)
    assert summary.loc["fmae", "n"] == 3 and math.isnan(summary.loc["fmae", "ci_low"])
    assert len(list((run_dir / "references/_t_runner_tiny/hr").glob("*.png"))) == 3


def test_safe_names_and_load_errors(tmp_path):
    assert safe_name("bicubic") == "bicubic"
    assert safe_name("a/b") != safe_name("a_b") and "/" not in safe_name("a/b")
    assert safe_name("<script>").startswith("script-")
    with pytest.raises(RunNotFoundError, match="run directory not found"):
        load_run(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    with pytest.raises(RunNotFoundError, match=r"half/summary.json: not found \(is .* a finished bench run"):
        load_run(tmp_path / "half")


def test_cli_bench_exit_codes(tmp_path, capsys):
    from harness.cli.main import main

    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "cli", "datasets": [{"type": "_t_runner_tiny"}], "methods": ["_t_runner_box"],
        "metrics": ["_t_runner_mae"], "bench": {"device": "cpu", "bootstrap_samples": 100},
    }))  # fmt: skip
    root = tmp_path / "out"
    assert main(["bench", str(exp), "--output-root", str(root), "--no-progress"]) == 0
    assert (root / "cli/summary.json").is_file()
    assert f"results: {root / 'cli'}" in capsys.readouterr().out
    assert main(["bench", str(exp), "--output-root", str(root), "--no-progress"]) == 3
    assert "already holds a finished run" in capsys.readouterr().err
    code = main(["bench", str(exp), "methods.0=_t_runner_boom", "--output-root", str(root), "--force",
                 "--no-progress", "--report"])  # fmt: skip
    assert code == 1 and (root / "cli/errors/_t_runner_tiny___t_runner_boom.txt").is_file()
    assert (root / "cli/report.html").is_file()
    assert main(["bench", str(exp), "bench.batch_size=0", "--output-root", str(root)]) == 2
    assert "bench.batch_size: must be >= 1, got 0" in capsys.readouterr().err


def _real_components_available() -> bool:
    names = {"datasets": ["bundled"], "methods": ["bicubic"], "metrics": ["psnr", "ssim"]}
    return all(n in registry.list_entries(kind) for kind, ns in names.items() for n in ns)


@pytest.mark.slow
def test_bench_real_components(tmp_path):
    """Bundled photographs + bicubic + PSNR/SSIM: CSV values equal a direct metric computation on the PNGs."""
    if not _real_components_available():
        pytest.skip("the bundled dataset, bicubic method or psnr/ssim metrics are not registered yet")
    cfg = experiment_from_dict({
        "name": "real", "output_root": str(tmp_path),
        "datasets": [{"type": "bundled", "hr_size": 64, "count": 2, "cache_dir": str(tmp_path / "cache")}],
        "methods": ["bicubic"], "metrics": ["psnr", "ssim"],
        "bench": {"device": "cpu", "bootstrap_samples": 100},
    })  # fmt: skip
    run_dir = run(cfg)
    table = pd.read_csv(run_dir / "metrics/bundled.csv")
    assert len(table) == 2 and table["psnr"].between(10, 60).all()
    ds = cfg.datasets[0].create()
    psnr, ssim = cfg.metrics[0].create(), cfg.metrics[1].create()
    for i, row in table.iterrows():
        sample = ds[i]
        assert row["image"] == sample.key
        sr = load_image(run_dir / "images/bundled/bicubic" / f"{sample.key}.png")[None]
        assert row["psnr"] == pytest.approx(float(psnr(sr, sample.hr[None])[0]), abs=1e-6)
        assert row["ssim"] == pytest.approx(float(ssim(sr, sample.hr[None])[0]), abs=1e-6)


def test_failing_images_are_isolated_and_the_others_evaluated(tmp_path):
    """A batch with one failing image is retried image by image; an out-of-memory image fails alone."""
    datasets = [{"type": "_t_runner_tiny", "name": "tiny", "sizes": [8, 8, 8, 8, 16]}]
    cfg = make_cfg(tmp_path, datasets=datasets, methods=[{"type": "_t_runner_picky", "name": "picky"}],
                   bench={"batch_size": 4})  # fmt: skip
    run_dir = run(cfg)  # not strict: recorded, the run succeeds
    table = pd.read_csv(run_dir / "metrics/tiny.csv")
    assert list(table["image"]) == ["img0", "img1", "img3"]
    meta = json.loads((run_dir / "summary.json").read_text())
    assert meta["image_failures"] == [
        {"dataset": "tiny", "method": "picky", "image": "img2", "stage": "upscale",
         "error": "RuntimeError: cannot handle img2"},
        {"dataset": "tiny", "method": "picky", "image": "img4", "stage": "memory",
         "error": "out of memory (MemoryError: cannot allocate 4 GiB)"},
    ]  # fmt: skip
    assert meta["evaluation"] == [
        {"dataset": "tiny", "method": "picky", "n_images": 5, "n_evaluated": 3, "n_failed": 2}
    ]
    assert "picky on tiny: 3 of 5 image(s) evaluated, 2 failed (errors/images.csv)" in " ".join(meta["notes"])
    assert [r["n"] for r in meta["results"] if r["metric"] == "mae"] == [3]
    assert (run_dir / "errors/images.csv").read_text().splitlines()[1:] == [
        "tiny,picky,img2,upscale,RuntimeError: cannot handle img2",
        "tiny,picky,img4,memory,out of memory (MemoryError: cannot allocate 4 GiB)",
    ]
    strict = make_cfg(tmp_path, datasets=datasets, methods=[{"type": "_t_runner_picky", "name": "picky"}],
                      bench={"batch_size": 4, "strict": True})  # fmt: skip
    with pytest.raises(BenchFailedError, match=r"2 failure\(s\) in .*\n  tiny/img2 \(picky, upscale\)"):
        run(strict, force=True)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("warmup_calls", [1, 0])
def test_latency_excludes_the_slow_first_call_on_every_device(tmp_path, monkeypatch, warmup_calls):
    """One untimed warm-up call (on CPU too) keeps a method's slow first call out of ``latency_s``; without it
    (the control) the first batch carries it. summary.json says how latency was measured."""
    import harness.bench.evaluate as evaluate_mod

    monkeypatch.setattr(evaluate_mod, "time", FakeClock)
    monkeypatch.setattr(evaluate_mod, "WARMUP_CALLS", warmup_calls)
    datasets = [{"type": "_t_runner_tiny", "name": "tiny", "sizes": [4, 4, 4, 4]}]
    cfg = make_cfg(tmp_path, datasets=datasets, methods=[{"type": "_t_runner_slow_first", "name": "slow"}],
                   bench={"batch_size": 2, "device": "cpu"})  # fmt: skip
    run_dir = run(cfg)
    latency = pd.read_csv(run_dir / "metrics/tiny.csv")["latency_s"].tolist()
    if warmup_calls:
        assert latency == [1.0, 1.0, 1.0, 1.0]  # 2 s per batch of 2: per-image seconds, no outlier
    else:
        assert latency == [50.0, 50.0, 1.0, 1.0]  # the 100 s first call, split over its batch
    meta = json.loads((run_dir / "summary.json").read_text())
    assert meta["latency"]["warmup_calls"] == warmup_calls and meta["latency"]["batch_size"] == 2
    assert meta["latency"]["unit"] == "seconds per image"
    assert meta["latency"]["measured"].startswith("wall time of each batch's upscale call, the device synchronised")
