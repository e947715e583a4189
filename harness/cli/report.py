"""``run.py report RUN_DIR [--output FILE]``: one self-contained HTML page for a bench run."""

from __future__ import annotations

import argparse

HELP = "render a self-contained HTML report of a bench run"
DESCRIPTION = """\
Render RUN_DIR (a finished 'run.py bench' output folder) as one self-contained HTML page: config and
environment, per-dataset tables (mean and 95% bootstrap CI, best in bold), per-image results and an image
comparison grid with zoomed crops. Images are embedded; the file can be mailed or archived as is.

example:
  python run.py report runs/demo --output demo.html
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a bench run directory (contains summary.json)")
    parser.add_argument("--output", "-o", metavar="FILE", help="HTML file to write (default: RUN_DIR/report.html)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.bench.layout import load_run
    from harness.core import runfolder
    from harness.core.runlock import RunLock
    from reports.bench import render_report

    if args.output is not None:
        path = render_report(args.run_dir, args.output)  # a missing run: RunNotFoundError, exit 2 (harness.cli.main)
    else:
        load_run(args.run_dir)  # the run exists (a missing one is an error, not a new folder)
        with RunLock(args.run_dir, "bench run folder"):  # into the run folder: as its one writer, and recorded
            path = render_report(args.run_dir)
            runfolder.register(Path(args.run_dir), [path], "report")
    print(f"report: {path}")
    return 0
