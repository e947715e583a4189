"""``run.py report RUN_DIR [--output FILE]``: one self-contained HTML page for a bench run."""

from __future__ import annotations

import argparse

HELP = "render a self-contained HTML report of a bench run and its LaTeX/Markdown tables"
DESCRIPTION = """\
Render RUN_DIR (a finished 'run.py bench' output folder) as one self-contained HTML page: config and
environment, per-dataset tables (mean and 95% bootstrap CI, best in bold), per-image results and an image
comparison grid with zoomed crops. Images are embedded; the file can be mailed or archived as is.

The paper tables go to RUN_DIR/exports/: table.tex and table.md (Table 1: a row per method, a column per
dataset and metric, best in bold, arrows for the better direction; --export-ci adds +- half the 95% bootstrap
CI) and, when the run measured efficiency, efficiency.tex and efficiency.md (Table 2). The LaTeX needs
\\usepackage{booktabs}.

examples:
  python run.py report runs/demo
  python run.py report runs/demo --output demo.html --export-ci
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a bench run directory (contains summary.json)")
    parser.add_argument("--output", "-o", metavar="FILE", help="HTML file to write (default: RUN_DIR/report.html)")
    parser.add_argument(
        "--export-ci", action="store_true", help="the exported tables show mean \u00b1 half the 95%% bootstrap CI"
    )


def run(args: argparse.Namespace) -> int:
    from harness.cli.bench import print_exports
    from reports.bench import report_and_exports

    # a missing run: RunNotFoundError, exit 2 (harness.cli.main); the files are written under the run's lock
    path, tables = report_and_exports(args.run_dir, output=args.output, export_ci=args.export_ci)
    print(f"report: {path}")
    print_exports(tables)
    return 0
