"""``render_sweep_report(sweep_dir) -> Path``: the sweep's cells, their sections, one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

from harness.core.atomic import write_text
from harness.core.stats import StatisticsOptions
from reports.honesty import model_warnings
from reports.sweep.cells import load_sweep_cells
from reports.sweep.sections import (
    Exporter,
    accumulation_sections,
    attention_sections,
    exports_section,
    gate_sections,
    model_sections,
    result_sections,
    sca_mask_sections,
    sweep_model_facts,
    training_sections,
    unfinished_sections,
)


def render_sweep_report(sweep_dir: str | Path, output: str | Path | None = None, *, title: str | None = None) -> Path:
    """Render the sweep page to ``output`` (default ``sweep_dir/report.html``) and the exports next to it
    (``<output folder>/exports/``); returns the page's path."""
    from reports.page import template_env

    sweep_dir = Path(sweep_dir)
    cells = load_sweep_cells(sweep_dir)
    options = statistics_options(sweep_dir)
    if not cells:
        raise FileNotFoundError(f"{sweep_dir / 'cells'}: no sweep cells found")
    output = Path(output) if output is not None else sweep_dir / "report.html"
    out = Exporter(output.parent / "exports")
    facts = sweep_model_facts(cells)
    sections = result_sections(sweep_dir, cells, out, options)
    sections += model_sections(facts)
    sections += training_sections(cells, out)
    sections += attention_sections(cells, out)
    sections += accumulation_sections(cells, out)
    sections += gate_sections(cells, out)
    sections += sca_mask_sections(cells)
    sections += unfinished_sections(sweep_dir, cells)  # after the others: reading per-image tables adds problems
    sections.append(exports_section(out))

    env = template_env()
    rendered = [{"title": s.title, "anchor": s.anchor, "body": s.render(env)} for s in sections]
    alerts = [f"{c.name}: {c.status}{': ' + c.error if c.error else ''}" for c in cells if c.status == "failed"]
    alerts += [w for f in facts for w in model_warnings(f)]
    html = env.get_template("report.html.j2").render(
        title=title or f"{sweep_dir.name}: sweep report", alerts=alerts, sections=rendered, generated=""
    )
    write_text(output, html)
    return output


def statistics_options(sweep_dir: Path) -> StatisticsOptions:
    """The sweep's ``sweep.statistics`` as recorded in ``sweep.json`` (the defaults without one)."""
    import json

    from harness.core.mapping import ConfigError, from_dict

    path = sweep_dir / "sweep.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8")).get("statistics") if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        data = None  # load_sweep_cells reports an unreadable sweep.json
    if not isinstance(data, dict):
        return StatisticsOptions()
    try:
        return from_dict(StatisticsOptions, data, path="statistics", source=str(path))
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
