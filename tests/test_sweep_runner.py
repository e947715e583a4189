"""Sweep runner with toy cell functions: completion, summaries, failures, dry run, GPU pins, submitit, CLI."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from harness.cli.main import main
from harness.config.experiment import load_experiment
from harness.core.mapping import ConfigError
from harness.core.runlock import RunLock
from harness.sweep.cache import read_state, write_state
from harness.sweep.expand import SweepSpec
from harness.sweep.runner import run_sweep

GRID = {"bench.batch_size": [1, 2], "seed": [0, 1, 2]}


def make_spec(tmp_path: Path, sweep: dict | None = None, **extra) -> SweepSpec:
    data = {"name": "toy", "output_root": str(tmp_path / "runs"), "sweep": sweep or {"grid": GRID}, **extra}
    return SweepSpec.from_raw(data, source="toy.yaml")


def score(cell) -> int:
    return 10 * cell.config.seed + cell.config.bench.batch_size


# ----------------------------------------------------------------------------------------------- toy cells
# Module level so worker processes and submitit jobs can import them as "test_sweep_runner:<name>".
def toy_env_cell(cell, cell_dir: Path) -> dict:
    """Records the GPU it was given and when it ran; sleeps so that two workers overlap."""
    start = time.time()
    time.sleep(0.6)
    return {
        "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "pid": os.getpid(),
        "start": start,
        "end": time.time(),
    }


def toy_crash_cell(cell, cell_dir: Path) -> dict:
    """Dies hard (like an OOM kill) for seed 1; fine otherwise."""
    if cell.config.seed == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"score": score(cell)}


def toy_score_cell(cell, cell_dir: Path) -> dict:
    print(f"toy cell {cell.name} running")
    return {"score": score(cell), "pid": os.getpid()}


class Recorder:
    """An inline cell function that counts its calls and can fail on chosen seeds."""

    def __init__(self, fail_seeds: tuple[int, ...] = ()):
        self.calls: list[str] = []
        self.fail_seeds = fail_seeds

    def __call__(self, cell, cell_dir: Path) -> dict:
        import logging

        self.calls.append(cell.name)
        print(f"hello from {cell.name}")
        logging.getLogger("toy").warning("a logging line from %s", cell.name)
        (cell_dir / "output.txt").write_text(str(score(cell)))
        if cell.config.seed in self.fail_seeds:
            raise RuntimeError(f"injected failure for seed {cell.config.seed}")
        return {"score": score(cell), "nested": {"seed": cell.config.seed}}


# ----------------------------------------------------------------------------------------------- tests
def test_2x3_grid_completes_with_six_cells_summary_and_logs(tmp_path):
    fn = Recorder()
    result = run_sweep(make_spec(tmp_path), cell_fn=fn, isolation="inline", progress=False)
    assert result.ok and result.counts == {"done": 6, "failed": 0, "running": 0, "pending": 0}
    assert sorted(fn.calls) == sorted(
        f"bench.batch_size={b},seed={s}" for b in (1, 2) for s in (0, 1, 2)
    )  # every cell once
    cells_dir = tmp_path / "runs" / "toy" / "cells"
    dirs = sorted(p.name for p in cells_dir.iterdir())
    assert len(dirs) == 6 and dirs == sorted(c.dir_name for c in result.cells)
    for cell in result.cells:
        d = cells_dir / cell.dir_name
        state = read_state(d)
        assert state["status"] == "done" and state["attempts"] == 1 and state["pid"] == os.getpid()
        assert state["result"] == {"score": score(cell), "nested": {"seed": cell.config.seed}}
        assert state["overrides"] == cell.overrides and state["id"] == cell.id
        assert state["code_version"].keys() == {"version", "commit", "dirty", "diff_sha256"}
        log = (d / "log.txt").read_text()
        assert f"hello from {cell.name}" in log and f"a logging line from {cell.name}" in log
        reloaded = load_experiment(d / "config.yaml")  # the cell's config is a normal experiment file
        assert reloaded.seed == cell.config.seed and reloaded.run_dir == d
    summary = json.loads((tmp_path / "runs" / "toy" / "sweep.json").read_text())
    assert summary["counts"] == {"done": 6, "failed": 0, "running": 0, "pending": 0} and summary["complete"]
    assert summary["keys"] == ["bench.batch_size", "seed"] and summary["failed"] == []
    assert summary["other_dirs"] == [] and summary["sweep_dir"] == str(result.sweep_dir)
    assert summary["cells"][4]["overrides"] == {"bench.batch_size": 2, "seed": 1}
    assert summary["cells"][4]["result"]["score"] == 12
    with open(tmp_path / "runs" / "toy" / "cells.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [
        "index", "cell", "dir", "status", "bench.batch_size", "seed", "attempts", "duration_s",
        "result.score", "result.nested.seed", "error",
    ]  # fmt: skip
    assert [(r["bench.batch_size"], r["seed"], r["result.score"], r["status"]) for r in rows] == [
        ("1", "0", "1", "done"), ("1", "1", "11", "done"), ("1", "2", "21", "done"),
        ("2", "0", "2", "done"), ("2", "1", "12", "done"), ("2", "2", "22", "done"),
    ]  # fmt: skip
    # a second run finds everything done and runs nothing
    again = run_sweep(make_spec(tmp_path), cell_fn=fn, isolation="inline", progress=False)
    assert again.ok and len(fn.calls) == 6 and all(o.skipped for o in again.outcomes)
    # a narrower sweep reuses its finished cells; the others stay on disk, listed apart
    narrower = make_spec(tmp_path, {"grid": {"bench.batch_size": [2], "seed": [0, 1, 2]}})
    assert run_sweep(narrower, cell_fn=fn, isolation="inline", progress=False).ok and len(fn.calls) == 6
    summary = json.loads((tmp_path / "runs" / "toy" / "sweep.json").read_text())
    assert [c["name"] for c in summary["cells"]] == [f"bench.batch_size=2,seed={s}" for s in (0, 1, 2)]
    assert [d.split("-")[0] for d in summary["other_dirs"]] == [f"cells/bench.batch_size=1,seed={s}" for s in (0, 1, 2)]


def test_seeds_axis_runs_every_cell_per_seed_and_records_it(tmp_path):
    """``sweep.seeds`` gives the same cells (names, overrides, scores) as sweeping ``seed`` in the grid, and
    sweep.json records the seeds, the ``seed`` key and the report's statistics options."""
    fn = Recorder()
    sweep = {"grid": {"bench.batch_size": [1, 2]}, "seeds": [0, 1, 2], "statistics": {"alpha": 0.01}}
    result = run_sweep(make_spec(tmp_path, sweep), cell_fn=fn, isolation="inline", progress=False)
    assert result.ok and sorted(fn.calls) == sorted(f"bench.batch_size={b},seed={s}" for b in (1, 2) for s in (0, 1, 2))
    summary = json.loads((tmp_path / "runs" / "toy" / "sweep.json").read_text())
    assert summary["keys"] == ["bench.batch_size", "seed"] and summary["seeds"] == [0, 1, 2]
    assert summary["statistics"]["alpha"] == 0.01 and summary["statistics"]["test"] == "permutation"
    assert [c["result"]["score"] for c in summary["cells"]] == [1, 11, 21, 2, 12, 22]
    with open(tmp_path / "runs" / "toy" / "cells.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header[4:6] == ["bench.batch_size", "seed"]


def test_visible_gpus_and_local_slots(monkeypatch):
    from harness.sweep.scheduler import local_slots, visible_gpus

    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}) == ["0", "1"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "3, GPU-5f2a"}) == ["3", "GPU-5f2a"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == [] and visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,-1,3"}) == ["2"]  # CUDA ignores ids after an invalid one
    slots = local_slots(workers=8, gpus=["2", "3"])  # one slot per GPU, workers ignored
    assert [(s.label, s.env) for s in slots] == [
        ("gpu 2", {"CUDA_VISIBLE_DEVICES": "2"}),
        ("gpu 3", {"CUDA_VISIBLE_DEVICES": "3"}),
    ]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "5")  # the user's own setting wins
    threads = str(max(1, (os.cpu_count() or 1) // 3))
    expected = {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": threads}
    assert [s.env for s in local_slots(workers=3, gpus=[])] == [expected] * 3
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert local_slots(workers=1, gpus=[])[0].env == {}
    with pytest.raises(ValueError, match=r"^sweep.workers must be >= 1, got 0$"):
        local_slots(workers=0, gpus=[])


def test_failing_cell_is_recorded_others_finish_and_force_flags(tmp_path, capsys):
    fn = Recorder(fail_seeds=(1,))
    result = run_sweep(make_spec(tmp_path), cell_fn=fn, isolation="inline", progress=False)
    assert not result.ok and result.counts == {"done": 4, "failed": 2, "running": 0, "pending": 0}
    assert [r["name"] for r in result.failed] == ["bench.batch_size=1,seed=1", "bench.batch_size=2,seed=1"]
    failed_dir = result.sweep_dir / result.failed[0]["dir"]
    state = read_state(failed_dir)
    assert state["status"] == "failed" and state["error"] == "RuntimeError: injected failure for seed 1"
    assert "Traceback (most recent call last)" in state["traceback"] and "in __call__" in state["traceback"]
    assert "RuntimeError: injected failure for seed 1" in (failed_dir / "log.txt").read_text()
    summary = json.loads((result.sweep_dir / "sweep.json").read_text())
    assert summary["counts"]["failed"] == 2 and not summary["complete"]
    assert summary["failed"][0]["error"] == "RuntimeError: injected failure for seed 1"
    assert "FAILED cells/bench.batch_size=1,seed=1-" in capsys.readouterr().out
    # default re-run: failed cells are finished too -> nothing runs, still reported
    again = run_sweep(make_spec(tmp_path), cell_fn=fn, isolation="inline", progress=False)
    assert len(fn.calls) == 6 and again.counts["failed"] == 2
    assert "2 cell(s) failed in an earlier run; re-run them with --force-failed" in capsys.readouterr().out
    # --force-failed re-runs exactly the failed ones (now fixed)
    fn.fail_seeds = ()
    fixed = run_sweep(make_spec(tmp_path), cell_fn=fn, isolation="inline", force_failed=True, progress=False)
    assert fixed.ok and sorted(fn.calls[6:]) == ["bench.batch_size=1,seed=1", "bench.batch_size=2,seed=1"]
    assert read_state(failed_dir)["attempts"] == 2 and read_state(failed_dir)["error"] is None
    # --force re-runs everything
    run_sweep(make_spec(tmp_path), cell_fn=fn, isolation="inline", force=True, progress=False)
    assert len(fn.calls) == 14


def test_dry_run_lists_states_and_writes_nothing(tmp_path, capsys):
    spec = make_spec(tmp_path)
    fresh = run_sweep(spec, dry_run=True, progress=False)
    assert not (tmp_path / "runs").exists() and [r["status"] for r in fresh.rows] == ["pending"] * 6
    run_sweep(spec, cell_fn=Recorder(fail_seeds=(2,)), isolation="inline", progress=False)
    dirs = {c.index: spec.sweep_dir / "cells" / c.dir_name for c in fresh.cells}
    # cell 0: another live runner holds it; cell 1: its runner died mid-cell; cell 3: never started
    write_state(dirs[0], {**read_state(dirs[0]), "status": "running"})
    write_state(dirs[1], {**read_state(dirs[1]), "status": "running", "pid": 999999, "host": "h"})
    (dirs[3] / "state.json").unlink()
    capsys.readouterr()
    with RunLock(dirs[0]):
        listing = run_sweep(spec, dry_run=True, progress=False)
    out = capsys.readouterr().out.splitlines()
    assert [r["status"] for r in listing.rows] == [
        "running",
        "pending",
        "failed",
        "pending",
        "done",
        "failed",
    ]
    assert out[0].startswith("sweep toy: 6 cells (1 done, 2 failed, 1 running, 2 pending) in ")
    assert out[1].split() == ["#", "status", "action", "cell", "note"]
    assert out[2].split()[:3] == ["0", "running", "busy"]
    assert out[3].split()[:3] == ["1", "pending", "run"] and out[3].endswith(
        "interrupted (pid 999999 on h died); will re-run"
    )
    assert out[4].split()[:3] == ["2", "failed", "skip"] and out[4].endswith(
        "RuntimeError: injected failure for seed 2"
    )
    assert out[5].split()[:3] == ["3", "pending", "run"] and out[6].split()[:3] == ["4", "done", "skip"]
    forced = run_sweep(spec, dry_run=True, force_failed=True, progress=False)
    assert forced.rows[2]["status"] == "failed"
    assert capsys.readouterr().out.splitlines()[4].split()[:3] == ["2", "failed", "re-run"]


def test_process_workers_pin_one_gpu_per_cell(tmp_path):
    spec = make_spec(tmp_path, {"grid": {"seed": [0, 1, 2, 3]}, "workers": 1})
    result = run_sweep(spec, cell_fn=toy_env_cell, gpus=["0", "1"], progress=False)  # 2 GPUs -> 2 slots
    assert result.ok
    runs = [r["result"] for r in result.rows]
    assert {r["gpu"] for r in runs} == {"0", "1"} and len({r["pid"] for r in runs}) == 4  # a fresh process each
    assert os.getpid() not in {r["pid"] for r in runs}
    for i, a in enumerate(runs):  # cells that overlapped in time ran on different GPUs
        for b in runs[i + 1 :]:
            if a["start"] < b["end"] and b["start"] < a["end"]:
                assert a["gpu"] != b["gpu"]
    assert any(a["start"] < b["end"] and b["start"] < a["end"] for a in runs for b in runs if a is not b)


def test_worker_killed_by_signal_fails_only_its_cell(tmp_path):
    spec = make_spec(tmp_path, {"grid": {"seed": [0, 1, 2]}, "workers": 2})
    result = run_sweep(spec, cell_fn="test_sweep_runner:toy_crash_cell", gpus=[], progress=False)
    assert [r["status"] for r in result.rows] == ["done", "failed", "done"]
    err = result.rows[1]["error"]
    assert err.startswith("worker process for this cell (cpu worker ") and "killed by signal SIGKILL" in err
    assert read_state(result.sweep_dir / result.rows[1]["dir"])["attempts"] == 1


def test_cell_fn_must_be_importable_for_workers_and_checked_before_work(tmp_path):
    with pytest.raises(ValueError, match=r"cannot be imported by a worker process \(defined in __main__, a f"):
        run_sweep(make_spec(tmp_path), cell_fn=lambda cell, d: {}, progress=False)
    with pytest.raises(ValueError, match=r"^cell function 'no_such_module_x:f': cannot import 'no_such_module_x'"):
        run_sweep(make_spec(tmp_path), cell_fn="no_such_module_x:f", progress=False)
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ConfigError, match=r"^toy.yaml: sweep.backend_options.gpus: the local backend takes no"):
        run_sweep(make_spec(tmp_path, {"grid": GRID, "backend_options": {"gpus": 2}}), progress=False)


def test_non_jsonable_result_fails_the_cell(tmp_path):
    result = run_sweep(
        make_spec(tmp_path, {"grid": {"seed": [0]}}),
        cell_fn=lambda cell, d: {"x": object()},
        isolation="inline",
        progress=False,
    )
    assert result.rows[0]["status"] == "failed"
    assert result.rows[0]["error"].startswith("TypeError: cell function returned a result that is not JSON-able")


@pytest.mark.parametrize("cluster", ["local", "debug"])
def test_submitit_backend_runs_a_two_cell_sweep(tmp_path, cluster):
    options = {"cluster": cluster, "poll_interval_s": 0.1, "timeout_min": 5}
    spec = make_spec(tmp_path, {"grid": {"seed": [3, 4]}, "backend": "submitit", "backend_options": options})
    result = run_sweep(spec, cell_fn=toy_score_cell, progress=False)
    assert result.ok and [r["result"]["score"] for r in result.rows] == [31, 41]
    pids = {r["result"]["pid"] for r in result.rows}
    assert (os.getpid() in pids) == (cluster == "debug")  # local: each job is its own process
    assert "toy cell seed=3 running" in (result.sweep_dir / result.rows[0]["dir"] / "log.txt").read_text()
    assert (result.sweep_dir / "submitit").is_dir()
    with pytest.raises(ConfigError, match=r"^toy.yaml: sweep.backend_options: "):
        bad = {**options, "no_such_option": 1}
        run_sweep(make_spec(tmp_path, {"grid": {"seed": [3]}, "backend": "submitit", "backend_options": bad}))


def test_cli_dry_run_run_and_exit_codes(tmp_path, capsys, monkeypatch):
    exp = tmp_path / "toy.yaml"
    exp.write_text(f"output_root: {tmp_path / 'runs'}\nsweep:\n  grid:\n    seed: [0, 1]\n")
    assert main(["sweep", str(exp), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sweep toy: 2 cells (0 done, 0 failed, 0 running, 2 pending)") and "seed=1-" in out
    monkeypatch.setenv("ALIGNVAR_SWEEP_CELL_FN", "test_sweep_runner:toy_crash_cell")
    args = ["sweep", str(exp), "report.crop_size=48", "--inline", "--no-report", "--cell-fn"]
    assert main([*args, "test_sweep_runner:toy_score_cell"]) == 0
    rows = json.loads((tmp_path / "runs" / "toy" / "sweep.json").read_text())["cells"]
    assert [r["result"]["score"] for r in rows] == [1, 11]
    assert read_state(tmp_path / "runs" / "toy" / rows[0]["dir"])["pid"] == os.getpid()  # --inline
    assert load_experiment(tmp_path / "runs" / "toy" / rows[0]["dir"] / "config.yaml").report.crop_size == 48
    exp.write_text(exp.read_text().replace("[0, 1]", "[0, 1, 2]"))
    assert main(["sweep", str(exp), "--no-report", "--workers", "2"]) == 1  # env cell fn: seed 1 crashes
    assert "1 failed" in capsys.readouterr().out
    exp.write_text(exp.read_text() + "  zip:\n    bench.batch_size: [1, 2]\n    report.title: [a]\n")
    assert main(["sweep", str(exp), "--dry-run"]) == 2
    assert capsys.readouterr().err == (
        f"config error: {exp}: sweep.zip: lists must have equal lengths; got bench.batch_size (2), report.title (1)\n"
    )


def test_default_cell_function_benches_each_cell_in_its_own_folder(tmp_path):
    """Integration with the real runner (bundled photos, bicubic, PSNR-Y): stages [bench], two cells."""
    pytest.importorskip("harness.bench.runner")
    data = {
        "name": "bench_sweep",
        "output_root": str(tmp_path / "runs"),
        "datasets": [{"type": "bundled", "name": "bundled", "hr_size": 64, "scale": 4}],
        "methods": ["bicubic"],
        "metrics": ["psnr_y"],
        "bench": {"device": "cpu", "save_images": False, "bootstrap_samples": 100},
        "sweep": {"stages": ["bench"], "grid": {"bench.max_images": [1, 2]}},
    }
    result = run_sweep(SweepSpec.from_raw(data, source="b.yaml"), isolation="inline", progress=False)
    assert result.ok, result.rows
    for row, n in zip(result.rows, (1, 2)):
        cell_dir = result.sweep_dir / row["dir"]
        with open(cell_dir / "summary.csv", newline="") as fh:
            summary = {r["metric"]: r for r in csv.DictReader(fh)}
        assert int(summary["psnr_y"]["n"]) == n  # the override reached the bench run in this cell's folder
        bench = row["result"]["bench"]
        assert bench["run_dir"] == str(cell_dir)
        assert bench["mean"]["bundled/bicubic/psnr_y"] == pytest.approx(float(summary["psnr_y"]["mean"]))
        assert 10.0 < bench["mean"]["bundled/bicubic/psnr_y"] < 60.0
    # re-running with force re-benches over the existing outputs (run_bench(force=True))
    again = run_sweep(SweepSpec.from_raw(data), isolation="inline", force=True, progress=False)
    assert again.ok and all(read_state(again.sweep_dir / r["dir"])["attempts"] == 2 for r in again.rows)


def test_done_cell_whose_input_files_changed_is_refused_and_force_recomputes(tmp_path):
    """A finished cell is not trusted once an input file it recorded has changed content (same name, same size)."""
    from PIL import Image

    from harness.core.identity import IdentityMismatchError

    rng = np.random.default_rng(0)
    for sub, side in (("HR", 64), ("LR", 16)):
        (tmp_path / "data" / sub).mkdir(parents=True)
        for stem in ("a", "b"):
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
                tmp_path / "data" / sub / f"{stem}.png", compress_level=0
            )
    data = {
        "name": "stale",
        "output_root": str(tmp_path / "runs"),
        "datasets": [
            {"type": "paired", "name": "pairs", "root": str(tmp_path / "data"), "lr_dir": "LR", "hr_dir": "HR"}
        ],
        "methods": ["bicubic"],
        "metrics": ["psnr_y"],
        "bench": {"device": "cpu", "save_images": False, "bootstrap_samples": 0},
        "sweep": {"stages": ["bench"], "grid": {"bench.max_images": [1, 2]}},
    }
    first = run_sweep(SweepSpec.from_raw(data, source="s.yaml"), isolation="inline", progress=False)
    assert first.ok
    assert run_sweep(SweepSpec.from_raw(data, source="s.yaml"), isolation="inline", progress=False).ok  # unchanged
    hr = tmp_path / "data" / "HR" / "b.png"  # only the 2-image cell read b.png
    pixels = np.asarray(Image.open(hr)).copy()
    pixels[0, 0] ^= 255
    Image.fromarray(pixels).save(hr, compress_level=0)  # stored blocks: the same size, other bytes
    with pytest.raises(IdentityMismatchError) as err:
        run_sweep(SweepSpec.from_raw(data, source="s.yaml"), isolation="inline", progress=False)
    text = str(err.value)
    assert "1 finished cell(s) were computed from input files that have changed since" in text
    assert f"{hr}: content changed (sha256 " in text
    assert "re-run the sweep with --force" in text
    forced = run_sweep(SweepSpec.from_raw(data, source="s.yaml"), isolation="inline", force=True, progress=False)
    assert forced.ok
    assert run_sweep(SweepSpec.from_raw(data, source="s.yaml"), isolation="inline", progress=False).ok  # fresh again
