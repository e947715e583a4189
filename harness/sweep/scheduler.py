"""Local scheduling: one cell per visible GPU, or N CPU workers, each cell in a fresh worker process.

Why a fresh process per cell rather than reusing loky workers: ``CUDA_VISIBLE_DEVICES`` only takes effect if
it is set before CUDA initialises in that process, and a reused worker keeps whatever GPU it first touched. A
fresh ``python -m harness.sweep.worker`` per cell gets its GPU pinned in its environment from the start, its
output (including C-level output and crashes) goes straight to the cell's ``log.txt``, and a segfault or an
OOM kill fails that cell only. joblib (threading backend, ``return_as="generator_unordered"``) runs the
launchers; the threads only wait on their subprocess. ``isolation="inline"`` runs cells one by one in this
process instead (no pinning; handy under a debugger).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.sweep.cache import LOG_FILE, read_state
from harness.sweep.execute import CellFn, Outcome, cell_fn_path, execute_cell, mark_failed_if_unfinished
from harness.sweep.expand import Cell

Isolation = Literal["process", "inline"]

# Exit codes of ``python -m harness.sweep.worker``.
EXIT_DONE, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY, EXIT_SKIPPED_DONE, EXIT_SKIPPED_FAILED = 0, 1, 2, 3, 10, 11


@dataclass
class CellJob:
    cell: Cell
    cell_dir: Path


@dataclass
class RunOptions:
    """Per-run choices shared by every backend."""

    cell_fn: str | CellFn | None = None  # None -> harness.sweep.cells:train_and_bench
    force: bool = False
    force_failed: bool = False


@dataclass
class Slot:
    """One concurrent cell: a label for messages and the environment its worker process gets."""

    label: str
    env: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------- devices
def visible_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` if set (CUDA stops at the first negative id),
    else torch's count if torch is already imported, else ``nvidia-smi -L``; [] when there are none."""
    env = os.environ if environ is None else environ
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        ids: list[str] = []
        for item in (x.strip() for x in cvd.split(",")):
            if not item or item.startswith("-"):
                break
            ids.append(item)
        return ids
    if "torch" in sys.modules:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, _ in enumerate(line for line in out.splitlines() if line.startswith("GPU "))]


def local_slots(workers: int, gpus: list[str] | None = None) -> list[Slot]:
    """One slot per GPU (pinned with CUDA_VISIBLE_DEVICES; ``workers`` is then ignored), else ``workers`` CPU
    slots, each with ``OMP_NUM_THREADS`` = cores // workers unless the user set it."""
    gpus = visible_gpus() if gpus is None else list(gpus)
    if gpus:
        return [Slot(f"gpu {g}", {"CUDA_VISIBLE_DEVICES": g}) for g in gpus]
    if workers < 1:
        raise ValueError(f"sweep.workers must be >= 1, got {workers}")
    # idle OpenMP threads sleep instead of spinning: on a shared CPU spinning workers slow each other ~10x
    env: dict[str, str] = {} if "OMP_WAIT_POLICY" in os.environ else {"OMP_WAIT_POLICY": "PASSIVE"}
    if workers > 1:
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        env.update({k: threads for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k not in os.environ})
    return [Slot(f"cpu worker {i}", dict(env)) for i in range(workers)]


# ------------------------------------------------------------------------------------------------- scheduler
class LocalScheduler:
    """Runs cell jobs on local slots; ``run`` yields Outcomes as cells finish (any order)."""

    def __init__(self, slots: list[Slot], isolation: Isolation = "process", python: str = sys.executable):
        if not slots:
            raise ValueError("no slots to run cells on")
        self.slots = slots
        self.isolation = isolation
        self.python = python
        self._procs: dict[int, subprocess.Popen] = {}
        self._procs_lock = threading.Lock()
        self._interrupted = False

    def describe(self) -> str:
        if self.isolation == "inline":
            return "inline (this process, one cell at a time)"
        return f"{len(self.slots)} local worker(s): {', '.join(s.label for s in self.slots)}"

    def run(self, jobs: list[CellJob], opts: RunOptions) -> Iterator[Outcome]:
        if self.isolation == "inline":
            from harness.sweep.execute import resolve_cell_fn

            fn = resolve_cell_fn(opts.cell_fn)
            for job in jobs:
                yield execute_cell(job.cell, job.cell_dir, fn, force=opts.force, force_failed=opts.force_failed)
            return
        yield from self._run_processes(jobs, opts)

    # -- worker subprocesses ----------------------------------------------------------------------------
    def _run_processes(self, jobs: list[CellJob], opts: RunOptions) -> Iterator[Outcome]:
        from joblib import Parallel, delayed

        fn_path = cell_fn_path(opts.cell_fn)
        free: queue.Queue[Slot] = queue.Queue()
        for slot in self.slots:
            free.put(slot)
        n_jobs = min(len(self.slots), max(1, len(jobs)))
        parallel = Parallel(n_jobs=n_jobs, backend="threading", return_as="generator_unordered")
        try:
            yield from parallel(delayed(self._launch)(job, fn_path, opts, free) for job in jobs)
        except KeyboardInterrupt:
            self._interrupted = True
            self.terminate()
            raise

    def _launch(self, job: CellJob, fn_path: str, opts: RunOptions, free: queue.Queue) -> Outcome:
        slot = free.get()
        try:
            return self._run_one(job, fn_path, opts, slot)
        finally:
            free.put(slot)

    def _run_one(self, job: CellJob, fn_path: str, opts: RunOptions, slot: Slot) -> Outcome:
        cmd = [self.python, "-m", "harness.sweep.worker", str(job.cell_dir), "--cell-fn", fn_path]
        cmd += ["--sys-path", json.dumps([p for p in sys.path if p])]
        cmd += ["--force"] if opts.force else []
        cmd += ["--force-failed"] if opts.force_failed else []
        env = {**os.environ, **slot.env, "PYTHONUNBUFFERED": "1"}
        job.cell_dir.mkdir(parents=True, exist_ok=True)
        with open(job.cell_dir / LOG_FILE, "a", encoding="utf-8") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
            with self._procs_lock:
                self._procs[proc.pid] = proc
            try:
                rc = proc.wait()
            finally:
                with self._procs_lock:
                    self._procs.pop(proc.pid, None)
        return self._outcome(job, rc, slot)

    def _outcome(self, job: CellJob, rc: int, slot: Slot) -> Outcome:
        name = job.cell.dir_name
        if rc == EXIT_BUSY:
            return Outcome(name, "busy")
        if rc in (EXIT_SKIPPED_DONE, EXIT_SKIPPED_FAILED):
            state = read_state(job.cell_dir) or {}
            return Outcome(name, state.get("status", "failed"), skipped=True, error=state.get("error"))
        state = read_state(job.cell_dir) or {}
        if rc in (EXIT_DONE, EXIT_FAILED) and state.get("status") in ("done", "failed"):
            return Outcome(name, state["status"], duration_s=state.get("duration_s"), error=state.get("error"))
        if self._interrupted:  # we stopped it: leave 'running' (re-run next time), not 'failed'
            return Outcome(name, "failed", error="interrupted")
        if rc < 0:
            try:
                why = f"killed by signal {signal.Signals(-rc).name}"
            except ValueError:
                why = f"killed by signal {-rc}"
        else:
            why = f"exited with code {rc}"
        error = f"worker process for this cell ({slot.label}) {why} before recording a result"
        last = last_log_line(job.cell_dir / LOG_FILE)
        error += f": {last}" if last else f"; see {LOG_FILE}"
        mark_failed_if_unfinished(job.cell, job.cell_dir, error)
        state = read_state(job.cell_dir) or {}
        return Outcome(name, state.get("status", "failed"), error=state.get("error", error))

    def terminate(self) -> None:
        """Stop every running worker (their cells stay 'running' with no lock holder -> re-run next time)."""
        with self._procs_lock:
            procs = list(self._procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def last_log_line(path: Path, max_bytes: int = 4096) -> str:
    """The last non-empty line of a log file ('' if none)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")
