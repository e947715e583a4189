"""``run.py sweep EXPERIMENT.yaml [key=value ...]``: run every cell of the experiment's ``sweep:`` block."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from harness.cli.options import add_offline, apply_offline

log = logging.getLogger(__name__)

HELP = "run an experiment over a grid of config values (resumable; local GPU/CPU workers or Slurm)"
DESCRIPTION = """\
Run the experiment once per cell of its 'sweep:' block (grid = cartesian product, zip = paired lists), e.g.

  sweep:
    grid: {model.hcc.lambda: [0, 0.1, 0.5, 1], model.sca.mask_input: [none, random, laplacian]}
    zip:  {seed: [0, 1], methods.alignvar.weights: [a.safetensors, b.safetensors]}
    stages: [train, bench]          # or [bench] to evaluate existing checkpoints
    backend: local                  # local | submitit
    workers: 2                      # CPU workers; with GPUs visible: one cell per GPU
    backend_options: {partition: gpu, gpus_per_node: 1, timeout_min: 600, slurm_array_parallelism: 8}

Every cell is validated before any work. Outputs: runs/<sweep>/cells/<name>-<hash8>/ (config.yaml, state.json,
log.txt, the cell's run), runs/<sweep>/sweep.json and cells.csv. Re-running skips done cells and failed
ones (unless --force-failed), re-runs cells interrupted by a crash or kill, and waits for cells another
runner is working on. Exit code 1 if any cell failed.

examples:
  python run.py sweep experiments/ablation_hcc.yaml --dry-run
  python run.py sweep experiments/ablation_hcc.yaml sweep.workers=4 --force-failed
"""

CELL_FN_ENV = "ALIGNVAR_SWEEP_CELL_FN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "experiment", type=Path, help="experiment YAML with a 'sweep:' block, or the name of a bundled one"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. seed=1")
    parser.add_argument("--dry-run", action="store_true", help="list the cells and their state, run nothing")
    parser.add_argument("--force", action="store_true", help="re-run every cell, finished or not")
    parser.add_argument("--force-failed", action="store_true", help="re-run cells that failed earlier")
    parser.add_argument("--workers", type=int, default=None, help="local CPU workers (default: sweep.workers)")
    parser.add_argument("--backend", choices=["local", "submitit"], default=None, help="default: sweep.backend")
    parser.add_argument("--no-report", action="store_true", help="do not render the sweep report at the end")
    parser.add_argument(
        "--strict-code-version",
        action="store_true",
        help="include the git commit and uncommitted changes in each cell's identity (re-run cells after code changes)",
    )
    parser.add_argument(
        "--inline", action="store_true", help="run cells one by one in this process (no GPU pinning; for pdb)"
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="do not wait for cells that another runner is working on"
    )
    add_offline(
        parser,
        help="never download (every cell): metric weights and hf:// / https:// checkpoints must be "
        "cached already (same as ALIGNVAR_OFFLINE=1); default: online, fetched before each cell's work",
    )
    # Hidden: the cell function (default: train then bench); also settable with $ALIGNVAR_SWEEP_CELL_FN.
    parser.add_argument("--cell-fn", default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    apply_offline(args)
    from harness.sweep.expand import load_sweep
    from harness.sweep.runner import run_sweep

    if args.workers is not None and args.workers < 1:
        log.error("--workers must be >= 1, got %s", args.workers)
        return 2
    spec = load_sweep(args.experiment, args.overrides)
    try:
        result = run_sweep(
            spec,
            cell_fn=args.cell_fn or os.environ.get(CELL_FN_ENV) or None,
            force=args.force,
            force_failed=args.force_failed,
            dry_run=args.dry_run,
            workers=args.workers,
            backend=args.backend,
            isolation="inline" if args.inline else "process",
            strict_code_version=args.strict_code_version,
            wait=not args.no_wait,
            progress=True,  # a bar on a terminal, log lines elsewhere (harness.core.progress)
        )
    except ValueError as exc:  # a cell function that cannot be found (ConfigError is handled by main)
        from harness.core.mapping import ConfigError

        if isinstance(exc, ConfigError):
            raise
        log.error("sweep: %s", exc)
        return 2
    if args.dry_run:
        return 0
    rc = 0 if result.ok else 1
    if not args.no_report:
        rc = max(rc, render_report(result.sweep_dir))
    return rc


def render_report(sweep_dir: Path) -> int:
    """Render the sweep report with ``reports.sweep.report.render_sweep_report`` when that module is available."""
    import importlib

    try:
        module = importlib.import_module("reports.sweep.report")
    except ModuleNotFoundError as exc:
        if exc.name in ("reports", "reports.sweep", "reports.sweep.report"):
            from harness.core.logconfig import note

            note(log, "sweep report skipped (reports.sweep is not available in this build)")
            return 0
        raise
    try:
        path = module.render_sweep_report(sweep_dir)
    except Exception as exc:  # noqa: BLE001 - the sweep's results stand; say what went wrong with the page
        log.error("sweep report failed: %s: %s", type(exc).__name__, exc)
        return 1
    print(f"sweep report: {path}")
    return 0
