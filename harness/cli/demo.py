"""``run.py demo``: benchmark the interpolation baselines on the bundled photographs and render the report.

The demo needs no data downloads: bundled images (scikit-image / pyiqa photographs), nearest / bilinear /
bicubic / lanczos, PSNR/SSIM (Y and RGB). NIQE is added when its parameters are available (online pyiqa fetches
its 11 KB file into its cache; with --offline only a cached one); otherwise a note says why it was left out.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from harness.cli.options import add_offline, apply_offline

log = logging.getLogger(__name__)

HELP = "quick start: benchmark interpolation baselines on bundled images and write an HTML report"
DESCRIPTION = """\
Runs the bundled experiment 'demo' (experiments/demo.yaml: bundled photographs, x4 bicubic degradation,
nearest/bilinear/bicubic/lanczos, PSNR-Y/SSIM-Y/PSNR/SSIM and NIQE if its parameters can be had: fetched by
pyiqa online, cached with --offline) and renders runs/demo/report.html under the current directory. Takes
about a minute on a laptop CPU. Re-running overwrites runs/demo.
"""

DEMO_CONFIG = "demo"  # the bundled experiment (experiments/demo.yaml, installed as package data)
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


def run(args: argparse.Namespace) -> int:
    from harness.cli.bench import execute, set_weights_dir

    apply_offline(args)
    set_weights_dir(args.weights_dir)
    start = time.perf_counter()
    notes: list[str] = []
    cfg = load_demo_config(args.config, args.overrides, notes)
    if args.output_root:
        cfg.output_root = args.output_root
    status = execute(cfg, args, force=True, report=True, notes=tuple(notes))
    log.info("demo finished in %.1f s; open the report in a browser", time.perf_counter() - start)
    return status
