"""``run.py bench EXPERIMENT.yaml [key=value ...]``: every method on every dataset (see harness.bench.runner)."""

from __future__ import annotations

import argparse
import logging
import os

from harness.cli.options import add_offline, apply_offline

log = logging.getLogger(__name__)

HELP = "benchmark the configured methods on the configured datasets and metrics"
DESCRIPTION = """\
Benchmark every method of an experiment on every dataset: per-image metrics, saved SR images, summary
statistics with 95% bootstrap CIs. Outputs go to <output_root>/<name>/ (config.yaml, env.json,
metrics/<dataset>.csv, summary.json, summary.csv, images/, errors/).

Preflight: every file and folder the experiment names (datasets, checkpoints, output folders, metric weights)
is checked first. Online (the default) missing metric weights are fetched into pyiqa's caches and hf:// /
https:// checkpoints into theirs, with a progress bar; --offline fetches nothing. Whatever is still missing
(or failed to download) is listed in one error and nothing runs.

An image that fails (unreadable, too small for a metric, out of memory, wrong size from an output folder) is
recorded in errors/images.csv and the report, and the other images are evaluated; --strict (bench.strict)
makes any such failure fail the run. The run folder is locked while the run writes it (a second run of the
same name stops at once, naming the first), its identity (config, input data, code) is recorded in
identity.json, and a new run is built beside the old one and replaces it only once it has finished.

Latency (latency_s in the per-image tables): wall time of each batch's upscale call (device synchronised)
divided by its images, after bench.latency_warmup untimed calls (default 1) on the first batch of each method
and dataset, so one-off start-up costs stay out of the column; summary.json ("latency") and the report say so.

--efficiency (or `bench.efficiency: {lr_size: 128}` in the experiment) also measures the paper's Table 2 for
every method: parameters, inference steps, latency median/IQR at batch 1 on a fixed LR size after warm-up,
peak memory, device -> efficiency.json and an "Efficiency" section in the report.

--report also writes the paper tables next to the report: exports/table.tex and table.md (Table 1: a row per
method, a column per dataset and metric, best in bold, arrows; --export-ci adds +- half the 95% CI) and, with
efficiency, exports/efficiency.tex and .md (Table 2).

examples:
  python run.py bench experiments/demo.yaml
  python run.py bench experiments/demo.yaml bench.max_images=2 bench.device=cpu --force --report
  python run.py bench experiments/table1_main.yaml --efficiency --efficiency-lr-size 128 --report
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="experiment YAML file, or a bundled experiment's name (e.g. demo)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. bench.batch_size=4")
    parser.add_argument("--output-root", metavar="DIR", help="write runs under DIR instead of output_root")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: bench.device)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an existing finished run (the new one replaces it only once it has finished)",
    )
    parser.add_argument("--strict", action="store_true", help="fail the run (exit 1) if any image fails")
    parser.add_argument(
        "--weights-dir",
        metavar="DIR",
        help="where metric/method weights are looked up (sets ALIGNVAR_WEIGHTS_DIR)",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="also render report.html and the paper tables exports/table.{tex,md} (efficiency.{tex,md} with "
        "--efficiency) into the run dir",
    )
    parser.add_argument(
        "--export-ci", action="store_true", help="with --report: the exported tables show mean \u00b1 half the 95%% CI"
    )
    add_offline(parser)
    group = parser.add_argument_group("efficiency (Table 2)")
    group.add_argument(
        "--efficiency",
        action="store_true",
        help="also measure params, steps, latency and peak memory per method (efficiency.json)",
    )
    group.add_argument("--efficiency-lr-size", type=int, metavar="N", help="LR side of the timed input (default 128)")
    group.add_argument("--efficiency-repeats", type=int, metavar="N", help="timed calls (default 5)")
    group.add_argument("--efficiency-warmup", type=int, metavar="N", help="untimed calls first (default 2)")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress (bars on a terminal, log lines elsewhere)"
    )


def set_weights_dir(path: str | None) -> None:
    """Must run before metric modules import pyiqa (they read the variable when building metrics)."""
    if path:
        if not os.path.isdir(path):
            from harness.core.mapping import ConfigError

            raise ConfigError(f"--weights-dir {path}: not a directory")
        os.environ["ALIGNVAR_WEIGHTS_DIR"] = os.path.abspath(path)


def apply_efficiency_flags(cfg, args: argparse.Namespace) -> None:
    """``--efficiency*`` flags -> ``cfg.bench.efficiency`` (recorded in the run's config.yaml like any key).

    Any ``--efficiency-*`` value implies ``--efficiency``; values given in the experiment are kept unless a
    flag overrides them.
    """
    import dataclasses

    from harness.config.experiment import EfficiencyConfig
    from harness.core.mapping import ConfigError

    values = {
        "lr_size": getattr(args, "efficiency_lr_size", None),
        "repeats": getattr(args, "efficiency_repeats", None),
        "warmup": getattr(args, "efficiency_warmup", None),
    }
    values = {k: v for k, v in values.items() if v is not None}
    if not (getattr(args, "efficiency", False) or values):
        return
    current = getattr(cfg.bench, "efficiency", None) or EfficiencyConfig()
    try:
        cfg.bench.efficiency = dataclasses.replace(current, **values)
    except ValueError as exc:
        raise ConfigError(f"--efficiency options: {exc}") from None


def execute(cfg, args: argparse.Namespace, *, force: bool, report: bool, notes: tuple[str, ...] = ()) -> int:
    """Bench (and optionally report) a loaded config, print where the results are; return the exit code.

    The report and its exports are written under the run folder's lock and recorded as the harness's files.
    """
    from harness.bench.runner import BenchFailedError, run_bench
    from harness.core.device import resolve_device

    resolve_device(args.device if args.device is not None else cfg.bench.device, key="--device / bench.device")
    status = 0
    try:
        run_dir = run_bench(cfg, device=args.device, force=force, progress=not args.no_progress, notes=notes)
    except BenchFailedError as exc:
        log.error("%s", exc)
        run_dir, status = exc.run_dir, 1
    print(f"results: {run_dir}  (summary.csv, metrics/, images/)")
    _print_summary(run_dir)
    if report:
        from reports.bench import report_and_exports

        path, tables = report_and_exports(run_dir, export_ci=getattr(args, "export_ci", False))
        print(f"report: {path}")
        print_exports(tables)
    return status


def print_exports(tables) -> None:
    """``exports: RUN_DIR/exports  (table.tex, table.md, ...)`` on stdout (a path the command wrote)."""
    if tables:
        print(f"exports: {tables[0].parent}  ({', '.join(p.name for p in tables)})")


def _print_summary(run_dir) -> None:
    from harness.bench.layout import load_run
    from harness.core.logconfig import note

    run = load_run(run_dir)
    if run.summary.empty:
        return
    table = run.summary.pivot_table(index=["dataset", "method"], columns="metric", values="mean", sort=False)
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    for item in run.skipped:
        log.warning("not evaluated %s/%s: %s", item["dataset"], item["image"], item["error"])
    for item in run.image_failures:
        log.warning(
            "failed %s/%s (%s, %s): %s", item["dataset"], item["image"], item["method"], item["stage"], item["error"]
        )
    for row in run.meta.get("evaluation", []):
        if row.get("n_failed"):
            log.warning(
                "%s on %s: %s evaluated / %s failed", row["method"], row["dataset"], row["n_evaluated"], row["n_failed"]
            )
    for text in run.meta.get("notes", []):
        note(log, "%s", text)
    if run.efficiency:
        import pandas as pd

        from reports.bench import efficiency_rows

        rows = pd.DataFrame(efficiency_rows(run.efficiency)).drop(columns=["Error"])
        print(f"\nefficiency (LR {run.efficiency.get('lr_size')}, {run.efficiency.get('device')}):")
        print(rows.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def run(args: argparse.Namespace) -> int:
    apply_offline(args)
    set_weights_dir(args.weights_dir)
    from harness.config.experiment import load_experiment

    cfg = load_experiment(args.experiment, args.overrides)
    if args.output_root:
        cfg.output_root = args.output_root
    if args.strict:
        cfg.bench.strict = True
    apply_efficiency_flags(cfg, args)
    return execute(cfg, args, force=args.force, report=args.report)
