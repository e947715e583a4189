"""Fault tolerance with real processes: SIGKILL mid-sweep then restart, and two runners on one sweep.

The runner runs as ``python run.py sweep`` in a subprocess with a toy cell (``test_sweep_faults:toy_cell``)
that appends to marker files: ``<cell>.start`` when it begins, ``<cell>.done`` just before it returns, so the
number of lines counts how often each cell started and finished.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.sweep.cache import read_state

REPO = Path(__file__).resolve().parents[1]
SEEDS = [0, 1, 2, 3, 4, 5]


def toy_cell(cell, cell_dir: Path) -> dict:
    markers = Path(os.environ["SWEEP_TOY_MARKERS"])
    with open(markers / f"{cell.dir_name}.start", "a") as fh:
        fh.write(f"{os.getpid()}\n")
    (cell_dir / "partial.txt").write_text("half-written output")  # what a killed cell leaves behind
    time.sleep(float(os.environ.get("SWEEP_TOY_SLEEP", "0.4")))
    (cell_dir / "output.txt").write_text(str(cell.config.seed * 100))
    with open(markers / f"{cell.dir_name}.done", "a") as fh:
        fh.write(f"{os.getpid()}\n")
    return {"value": cell.config.seed * 100}


def write_experiment(tmp_path: Path) -> Path:
    exp = tmp_path / "faults.yaml"
    exp.write_text(f"output_root: {tmp_path / 'runs'}\nsweep:\n  grid:\n    seed: {SEEDS}\n  workers: 2\n")
    (tmp_path / "markers").mkdir()
    return exp


def start_runner(tmp_path: Path, exp: Path, *flags: str, sleep: float = 0.4) -> subprocess.Popen:
    env = {
        **os.environ,
        "SWEEP_TOY_SLEEP": str(sleep),
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
        "SWEEP_TOY_MARKERS": str(tmp_path / "markers"),
    }
    cmd = [sys.executable, str(REPO / "run.py"), "sweep", str(exp), "--no-report"]
    cmd += ["--cell-fn", "test_sweep_faults:toy_cell", *flags]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def count(tmp_path: Path, kind: str) -> dict[str, int]:
    return {p.stem: len(p.read_text().split()) for p in (tmp_path / "markers").glob(f"*.{kind}")}


def cell_states(tmp_path: Path) -> dict[str, dict]:
    cells = tmp_path / "runs" / "faults" / "cells"
    return {d.name: read_state(d) for d in cells.iterdir()} if cells.is_dir() else {}


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the sweep subprocess"
        time.sleep(0.02)


def check_finished_exactly_once(tmp_path: Path, done_before_kill: set[str]) -> dict:
    summary = json.loads((tmp_path / "runs" / "faults" / "sweep.json").read_text())
    assert summary["counts"] == {"done": 6, "failed": 0, "running": 0, "pending": 0}
    assert sorted(r["result"]["value"] for r in summary["cells"]) == [s * 100 for s in SEEDS]
    finished = count(tmp_path, "done")
    assert len(finished) == 6 and set(finished.values()) == {1}  # every cell finished exactly once
    started = count(tmp_path, "start")
    assert all(started[name] == 1 for name in done_before_kill)  # finished cells were not recomputed
    return summary


def test_sigkill_mid_sweep_then_restart_runs_each_cell_to_completion_once(tmp_path):
    exp = write_experiment(tmp_path)
    proc = start_runner(tmp_path, exp, "--inline")
    # kill -9 while a third cell is in the middle of its work (it has started, two have finished)
    wait_until(lambda: len(count(tmp_path, "done")) >= 2 and len(count(tmp_path, "start")) >= 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    states = cell_states(tmp_path)
    done_before = {name for name, s in states.items() if s and s["status"] == "done"}
    interrupted = {name for name, s in states.items() if s and s["status"] == "running"}
    assert len(done_before) >= 2 and len(interrupted) == 1
    (victim,) = interrupted
    assert (tmp_path / "runs" / "faults" / "cells" / victim / "partial.txt").exists()
    assert victim not in count(tmp_path, "done")  # its partial work was never reported as a result
    assert not (tmp_path / "runs" / "faults" / "sweep.json").exists()

    # dry run sees the dead runner's cell as pending (its lock died with it), nothing as running
    dry = start_runner(tmp_path, exp, "--dry-run")
    listing = dry.communicate(timeout=30)[0]
    assert dry.returncode == 0, listing
    assert f" pending  run     {victim}  interrupted (pid " in listing

    rerun = start_runner(tmp_path, exp, "--inline")
    out = rerun.communicate(timeout=60)[0]
    assert rerun.returncode == 0, out
    summary = check_finished_exactly_once(tmp_path, done_before)
    victim_row = next(r for r in summary["cells"] if r["dir"].endswith(victim))
    assert victim_row["attempts"] == 2 and count(tmp_path, "start")[victim] == 2
    assert read_state(tmp_path / "runs" / "faults" / "cells" / victim)["note"].startswith("attempt 1 was interr")


def test_sigkill_of_a_multiworker_runner_stops_its_workers_and_restart_completes(tmp_path):
    exp = write_experiment(tmp_path)
    proc = start_runner(tmp_path, exp, sleep=1.0)  # 2 worker processes
    wait_until(lambda: len(count(tmp_path, "done")) >= 2 and len(count(tmp_path, "start")) >= 4)
    proc.send_signal(signal.SIGKILL)  # the runner only: its workers notice within 0.25 s and stop
    proc.wait(timeout=10)
    done_before = {name for name, s in cell_states(tmp_path).items() if s and s["status"] == "done"}
    rerun = start_runner(tmp_path, exp, sleep=0.2)
    out = rerun.communicate(timeout=60)[0]
    assert rerun.returncode == 0, out
    check_finished_exactly_once(tmp_path, done_before)
    started = count(tmp_path, "start")
    rerun_cells = {name for name, n in started.items() if n == 2}
    assert len(rerun_cells) == 2 and set(started.values()) == {1, 2}  # the 2 in-flight cells were re-run
    for name in rerun_cells:
        log = (tmp_path / "runs" / "faults" / "cells" / name / "log.txt").read_text()
        assert "worker: the sweep process died; stopping this cell (it will re-run)" in log


def test_two_concurrent_runners_never_run_a_cell_twice(tmp_path):
    exp = write_experiment(tmp_path)
    runners = [start_runner(tmp_path, exp, "--inline") for _ in range(2)]
    outputs = [r.communicate(timeout=60)[0] for r in runners]
    assert [r.returncode for r in runners] == [0, 0], outputs
    check_finished_exactly_once(tmp_path, set())
    assert set(count(tmp_path, "start").values()) == {1}  # no cell even started twice
    pids = {s["pid"] for s in cell_states(tmp_path).values()}
    assert pids == {r.pid for r in runners}  # both runners did share the work
