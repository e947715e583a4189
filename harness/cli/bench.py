"""``run.py bench EXPERIMENT.yaml [key=value ...]``: every method on every dataset (see harness.runner)."""

from __future__ import annotations

import argparse
import os
import sys

HELP = "benchmark the configured methods on the configured datasets and metrics"
DESCRIPTION = """\
Benchmark every method of an experiment on every dataset: per-image metrics, saved SR images, summary
statistics with 95% bootstrap CIs. Outputs go to <output_root>/<name>/ (config.yaml, env.json,
metrics/<dataset>.csv, summary.json, summary.csv, images/, errors/).

examples:
  python run.py bench experiments/demo.yaml
  python run.py bench experiments/demo.yaml bench.max_images=2 bench.device=cpu --force --report
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="experiment YAML file")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. bench.batch_size=4"
    )
    parser.add_argument("--output-root", metavar="DIR", help="write runs under DIR instead of output_root")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: bench.device)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing finished run")
    parser.add_argument(
        "--weights-dir",
        metavar="DIR",
        help="where metric/method weights are looked up (sets ALIGNVAR_WEIGHTS_DIR)",
    )
    parser.add_argument("--report", action="store_true", help="also render report.html into the run dir")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def set_weights_dir(path: str | None) -> None:
    """Must run before metric modules import pyiqa (they read the variable when building metrics)."""
    if path:
        if not os.path.isdir(path):
            from harness.config import ConfigError

            raise ConfigError(f"--weights-dir {path}: not a directory")
        os.environ["ALIGNVAR_WEIGHTS_DIR"] = os.path.abspath(path)


def execute(cfg, args: argparse.Namespace, *, force: bool, report: bool, notes: tuple[str, ...] = ()) -> int:
    """Bench (and optionally report) a loaded config, print where the results are; return the exit code."""
    from harness.data.imageio import ImageError
    from harness.runner import BenchFailedError, CorruptInputError, RunExistsError, run_bench

    status = 0
    try:
        run_dir = run_bench(cfg, device=args.device, force=force, progress=not args.no_progress, notes=notes)
    except (RunExistsError, CorruptInputError, ImageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BenchFailedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        run_dir, status = exc.run_dir, 1
    print(f"results: {run_dir}  (summary.csv, metrics/, images/)")
    _print_summary(run_dir)
    if report:
        from reports.html import render_report

        print(f"report: {render_report(run_dir)}")
    return status


def _print_summary(run_dir) -> None:
    from harness.results import load_run

    run = load_run(run_dir)
    if run.summary.empty:
        return
    table = run.summary.pivot_table(index=["dataset", "method"], columns="metric", values="mean", sort=False)
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    for item in run.skipped:
        print(f"skipped {item['dataset']}/{item['image']}: {item['error']}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    set_weights_dir(args.weights_dir)
    from harness.config import load_experiment

    cfg = load_experiment(args.experiment, args.overrides)
    if args.output_root:
        cfg.output_root = args.output_root
    return execute(cfg, args, force=args.force, report=args.report)
