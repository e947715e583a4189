"""How long ``run.py demo`` takes: the whole default demo (interpolation baselines + the tiny SCA/HCC ablation
from the shipped checkpoints, bench + analyze + the sweep report) in a fresh subprocess, timed end to end.

Usage::

    python benchmarks/demo_time.py                 # one run, threads as torch chooses
    python benchmarks/demo_time.py --repeats 2 --threads 2

Prints the wall time and the CPU time (user + system of the subprocess) of each run and their median; the
target is under 3 minutes on 2 CPU cores (docs/PERFORMANCE.md). The CPU time says how much of the wall time a
loaded host took away. Outputs go to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_run(threads: int | None, extra: list[str]) -> tuple[float, float]:
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory(prefix="demo_time_") as tmp:
        cmd = [sys.executable, str(REPO / "run.py"), "-q", "demo", "--output-root", tmp, "--no-progress", *extra]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise SystemExit(f"demo exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        if not (Path(tmp) / "demo_ablation" / "report.html").is_file():
            raise SystemExit(f"demo wrote no report under {tmp}/demo_ablation:\n{proc.stdout[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="OMP/MKL threads of the demo process")
    parser.add_argument("overrides", nargs="*", help="passed to run.py demo, e.g. bench.max_images=8")
    args = parser.parse_args(argv)
    walls = []
    for i in range(args.repeats):
        wall, cpu = one_run(args.threads, args.overrides)
        walls.append(wall)
        print(f"run {i + 1}: wall {wall:6.1f} s, CPU {cpu:6.1f} s (load average now {os.getloadavg()[0]:.1f})")
    print(f"median wall {statistics.median(walls):.1f} s over {len(walls)} run(s); target < 180 s on 2 cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
