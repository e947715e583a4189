"""``run.py demo``: the tool's main job in a few CPU minutes, from files shipped in the package (no downloads).

The default demo is the bundled sweep ``demo_ablation`` (``experiments/demo_ablation.yaml``): the interpolation
baselines and the tiny SCA x HCC ablation (four small checkpoints shipped in ``experiments/checkpoints/tiny``)
benchmarked on held-out 64 px tiles of the bundled photographs, analysed (attention distance, error
accumulation, SCA gates), and written as one sweep report. ``--config demo`` runs the interpolation-only bench
(``experiments/demo.yaml``, 256 px; NIQE added when its parameters are available, otherwise a note says why).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from harness.cli.options import add_offline, apply_offline

log = logging.getLogger(__name__)

HELP = "quick start: benchmark interpolation baselines and a tiny SCA/HCC ablation, write one HTML report"
DESCRIPTION = """\
Runs the bundled sweep 'demo_ablation' (experiments/demo_ablation.yaml): nearest/bilinear/bicubic/lanczos and
the tiny AlignVAR ablation (VARSR baseline, +SCA, +HCC, +both) from the small checkpoints shipped with the
package, on 64 px tiles of held-out bundled photographs (x4 bicubic), PSNR/SSIM (Y and RGB); then the analyses
(attention distance, error accumulation, SCA gates) and one report: runs/demo_ablation/report.html under the
current directory. A few minutes on 2 CPU cores (benchmarks/demo_time.py measures it); nothing is downloaded.
Re-running runs every cell afresh. --config demo: the interpolation-only bench (experiments/demo.yaml, NIQE if
its parameters can be had), report at runs/demo/report.html.
"""

DEMO_CONFIG = "demo_ablation"  # the bundled sweep (experiments/demo_ablation.yaml, installed as package data)
OPTIONAL_METRICS = ("niqe",)  # dropped with a note when they cannot be built (offline and not cached, no network)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. bench.max_images=2")
    parser.add_argument(
        "--config", default=DEMO_CONFIG, help="demo experiment: a YAML file or a bundled name (default: %(default)s)"
    )
    parser.add_argument("--output-root", metavar="DIR", help="write the run under DIR instead of runs/")
    parser.add_argument("--device", help="auto | cpu | cuda (default: bench.device)")
    parser.add_argument("--weights-dir", metavar="DIR", help="where metric weights are looked up")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress (bars on a terminal, log lines elsewhere)"
    )
    add_offline(parser)


def load_demo_config(path: str | Path, overrides: list[str], notes: list[str] | None = None):
    """Load the demo config, dropping optional metrics that cannot be built here (printing why, and
    appending the reason to ``notes`` so the report says it too)."""
    from harness.config.experiment import experiment_from_dict
    from harness.config.files import load_experiment_tree
    from harness.core import registry

    path, data = load_experiment_tree(path, overrides)
    kept = []
    for item in data.get("metrics", []):
        spec = {"type": item} if isinstance(item, str) else dict(item)
        if spec.get("type") in OPTIONAL_METRICS:
            options = {k: v for k, v in spec.items() if k not in ("type", "name")}
            try:
                registry.create("metrics", spec["type"], options)
            except Exception as exc:  # noqa: BLE001 - any reason: leave it out, say why
                reason = str(exc).strip() or type(exc).__name__  # the whole message: it says how to fix it
                note = f"metric {spec.get('name', spec['type'])!r} left out (its weights are not available): {reason}"
                from harness.core.logconfig import note as log_note

                log_note(log, "%s", note)
                if notes is not None:
                    notes.append(note)
                continue
        kept.append(item)
    data["metrics"] = kept
    return experiment_from_dict(data, source=str(path))


def is_sweep(path: str | Path) -> bool:
    """Whether the demo experiment (a file or a bundled name) has a ``sweep:`` block."""
    from harness.config.files import find_experiment, load_yaml_tree

    return "sweep" in load_yaml_tree(find_experiment(path))


def run_sweep_demo(args: argparse.Namespace) -> int:
    """The ablation demo: every cell (bench + analyze) afresh, inline, then the sweep report."""
    from harness.cli.sweep import render_report
    from harness.sweep.expand import load_sweep
    from harness.sweep.runner import run_sweep

    overrides = list(args.overrides)
    if args.output_root:
        overrides.append(f"output_root={args.output_root}")
    if args.device:
        overrides.append(f"bench.device={args.device}")
    spec = load_sweep(args.config, overrides)
    result = run_sweep(spec, force=True, workers=1, isolation="inline", progress=not args.no_progress)
    rc = 0 if result.ok else 1
    return max(rc, render_report(result.sweep_dir))


def run(args: argparse.Namespace) -> int:
    from harness.cli.bench import execute, set_weights_dir

    apply_offline(args)
    set_weights_dir(args.weights_dir)
    start = time.perf_counter()
    if is_sweep(args.config):
        status = run_sweep_demo(args)
        log.info("demo finished in %.1f s; open the report in a browser", time.perf_counter() - start)
        return status
    notes: list[str] = []
    cfg = load_demo_config(args.config, args.overrides, notes)
    if args.output_root:
        cfg.output_root = args.output_root
    status = execute(cfg, args, force=True, report=True, notes=tuple(notes))
    log.info("demo finished in %.1f s; open the report in a browser", time.perf_counter() - start)
    return status
