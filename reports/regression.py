"""The HTML page of a regression check (``run.py regress``): one row per dataset x method x metric."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.bench.regression import RegressionReport
from harness.core.atomic import write_text
from reports.page import template_env


def render_html(report: RegressionReport, title: str | None = None) -> str:
    """The diff page (jinja2, autoescaped, no external resources)."""
    context: dict[str, Any] = {
        "title": title or f"Regression check: {report.new_dir.name} vs {report.ref_dir.name}",
        "new_dir": str(report.new_dir),
        "ref_dir": str(report.ref_dir),
        "alpha": report.alpha,
        "n_resamples": report.n_resamples,
        "tests": sorted({r.test for r in report.rows}) or ["permutation"],
        "regressed": report.regressed,
        "n_regressions": sum(r.regressed for r in report.rows),
        "rows": [{**asdict(r), "regressed": r.regressed} for r in report.rows],
        "notes": report.notes,
    }
    return template_env().get_template("regress.html.j2").render(**context)


def write_html(report: RegressionReport, path: str | Path, title: str | None = None) -> Path:
    write_text(path, render_html(report, title))
    return Path(path)
