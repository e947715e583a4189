"""``run.py regress NEW_RUN --against REFERENCE``: fail (exit 1) on a significant metric regression."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "compare a bench run with a reference run; exit 1 on a significant regression beyond tolerance"
DESCRIPTION = """\
Compare the per-image metrics of two bench runs (same datasets, methods and images) with a paired test per
metric (sign-flip permutation test, or Wilcoxon), Holm-adjusted over every dataset x method x metric compared.
A regression is a significant worsening (Holm p < alpha, CI excluding 0) whose CI reaches the metric's
tolerance (docs/STATISTICS.md).

Tolerance file (YAML), e.g.:
    alpha: 0.05
    psnr_y: {max_drop: 0.05}        # higher-is-better: allowed mean drop
    lpips: {max_increase: 0.002}    # lower-is-better: allowed mean increase

A NaN/inf score in the new run where the reference has a finite one fails the check. Runs made from different
input data (their identity.json data manifests differ) are not compared unless --allow-data-change is given,
which the verdict then says.

Exit status: 0 no regression, 1 regression, 2 the runs cannot be compared (the message says why).
"""


log = logging.getLogger(__name__)
DEFAULT_N_RESAMPLES = 9999  # harness.core.stats.DEFAULT_N_RESAMPLES (not imported: --help stays cheap)
TESTS = ("permutation", "wilcoxon")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("new_run", type=Path, help="the bench run to check (a run directory)")
    parser.add_argument("--against", type=Path, required=True, metavar="REFERENCE", help="the reference run")
    parser.add_argument("--tolerances", type=Path, default=None, help="YAML of per-metric tolerances")
    parser.add_argument("--output", type=Path, default=None, help="HTML diff page (default: NEW_RUN/regression.html)")
    parser.add_argument(
        "--n-resamples",
        type=int,
        default=DEFAULT_N_RESAMPLES,
        help=f"bootstrap resamples and Monte Carlo sign flips (default {DEFAULT_N_RESAMPLES})",
    )
    parser.add_argument(
        "--test",
        choices=TESTS,
        default="permutation",
        help="paired test: sign-flip permutation (default) or Wilcoxon signed-rank",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    parser.add_argument("--include-latency", action="store_true", help="also compare latency_s")
    parser.add_argument(
        "--allow-data-change",
        action="store_true",
        help="compare runs even though their input images differ (printed in the verdict)",
    )


def run(args: argparse.Namespace) -> int:
    from harness.bench.layout import RunNotFoundError
    from harness.bench.regression import RegressionError, Tolerances, compare_runs, load_tolerances
    from harness.config.experiment import MIN_BOOTSTRAP_SAMPLES
    from harness.core.mapping import ConfigError
    from reports.regression import write_html

    if args.n_resamples < MIN_BOOTSTRAP_SAMPLES:
        raise ConfigError(f"--n-resamples: must be >= {MIN_BOOTSTRAP_SAMPLES} (resamples), got {args.n_resamples}")
    tolerances = load_tolerances(args.tolerances) if args.tolerances else Tolerances()
    try:
        report = compare_runs(
            args.new_run,
            args.against,
            tolerances,
            n_resamples=args.n_resamples,
            test=args.test,
            seed=args.seed,
            include_latency=args.include_latency,
            allow_data_change=args.allow_data_change,
        )
    except (RegressionError, RunNotFoundError) as exc:
        log.error("regress: %s", exc)
        return 2
    print(report.format_table())
    from harness.core.logconfig import note

    for text in report.notes:
        note(log, "%s", text)
    output = args.output or Path(args.new_run) / "regression.html"
    write_html(report, output)
    if Path(output).resolve().parent == Path(args.new_run).resolve():
        from harness.core import runfolder

        runfolder.register(args.new_run, [Path(output).name], "report")  # the harness's file: replaced with the run
    n_bad = sum(r.regressed for r in report.rows)
    verdict = f"FAIL: {n_bad} regression(s)" if report.regressed else "PASS: no regression"
    n_nan = sum(r.status == "non-finite" for r in report.rows)
    if n_nan:
        verdict += f", {n_nan} with NaN/inf scores in the new run"
    if report.data_changed:
        verdict += f" [input data changed: {len(report.data_changed)} difference(s), compared by --allow-data-change]"
    print(f"{verdict} (alpha {report.alpha}); diff page: {output}")
    return 1 if report.regressed else 0
