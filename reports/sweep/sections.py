"""The sections of the sweep page, each drawn by ``templates/sweep.html.j2``, in page order: results (ablation,
baselines, on vs off, lambda curves), attention distance, error accumulation, SCA gate panels, failed and
unfinished cells, exports. Every table and figure shown is also written to ``exports/`` by an ``Exporter``.

``reports.bench`` (jinja2) is imported when a section is built, not when ``reports.sweep`` is imported.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pandas as pd

from harness.core.atomic import write_text
from reports import exports, figures
from reports.page import Section
from reports.sweep.cells import SweepCell
from reports.sweep.comparison import DIFF, comparison_frame
from reports.sweep.curves import analysis_frame, identical_note, lambda_frame
from reports.sweep.keys import cell_label, numeric_keys, short_names, swept_keys, varying_keys
from reports.sweep.tables import ablation_frame, auto_precision, baseline_frame


def _section(title: str, **context: Any) -> Section:
    """A page section drawn by ``sweep.html.j2``; ``context["part"]`` picks its block (table, figure, cells,
    exports)."""
    return Section(title, template="sweep.html.j2", context=context)


def _table_context(df: pd.DataFrame, bold_best: dict, ci: dict, precision: Any, arrows: Any = True) -> dict:
    table = exports.format_table(df, bold_best=bold_best, arrows=arrows, ci=ci, precision=precision)
    arrows = {"higher": "↑", "lower": "↓", None: ""}
    return {
        "columns": [{"name": c, "arrow": arrows[a]} for c, a in zip(table.columns, table.arrows)],
        "rows": [
            [{"text": c.text, "pm": c.pm, "bold": c.bold, "numeric": c.numeric} for c in row] for row in table.rows
        ],
    }


class Exporter:
    """Writes tables/figures to ``exports/`` and collects what the page shows."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: list[str] = []

    def table(
        self,
        stem: str,
        df: pd.DataFrame,
        caption: str,
        bold_best: dict,
        ci: dict,
        precision: Any,
        arrows: Any = True,
    ) -> None:
        tex = exports.to_latex(df, caption, f"tab:{stem}", bold_best, arrows, ci=ci, precision=precision)
        md = exports.to_markdown(df, caption, bold_best, arrows, ci=ci, precision=precision)
        for suffix, text in ((".tex", tex), (".md", md)):
            write_text(self.folder / f"{stem}{suffix}", text)
            self.files.append(f"{stem}{suffix}")

    def figure(self, stem: str, fig: Any, width: str) -> str:
        """Save pdf/svg/png; return the exported PNG (300 dpi) as a data URI for the page."""
        paths = exports.save_figure(fig, self.folder / stem, width)
        self.files += [p.name for p in paths]
        png = next(p for p in paths if p.suffix == ".png").read_bytes()
        return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# ---------------------------------------------------------------------------------------------------- results
def result_sections(sweep_dir: Path, cells: list[SweepCell], out: Exporter) -> list[Section]:
    """'Ablation', then 'Baselines', 'Component on vs off' and a curve per numeric swept key (at most three);
    nothing when no cell has results."""
    table, bold_best, ci = ablation_frame(cells)
    if table.empty:
        return []
    n_done = sum(c.summary is not None for c in cells)
    precision = {c: auto_precision(table[c]) for c in table.columns if c in bold_best or c in ci}
    caption = f"Ablation {sweep_dir.name}: mean over images with 95% bootstrap CI; best in bold."
    out.table("ablation", table, caption, bold_best, ci, precision)
    sections = [
        _section(
            "Ablation",
            part="table",
            table=_table_context(table, bold_best, ci, precision),
            caption=f"{n_done} of {len(cells)} cells have results. Mean ± half-width of the 95% bootstrap "
            "CI over images; the best value per column is bold (compared as displayed).",
        )
    ]
    return sections + baseline_and_comparison_sections(cells, out) + curve_sections(cells, out)


def baseline_and_comparison_sections(cells: list[SweepCell], out: Exporter) -> list[Section]:
    """'Baselines' (methods identical in every cell, shown once) and 'Component on vs off' sections."""
    sections = []
    base, direction, ci = baseline_frame(cells)
    if not base.empty:
        precision = {c: auto_precision(base[c]) for c in base.columns if c in direction or c in ci}
        caption = "Methods with the same results in every cell (not affected by the swept keys), shown once."
        out.table("baselines", base, caption, {}, ci, precision, arrows=direction)
        sections.append(
            _section(
                "Baselines", part="table", table=_table_context(base, {}, ci, precision, direction), caption=caption
            )
        )
    cmp = comparison_frame(cells)
    if not cmp.empty:
        ci = {DIFF: (f"{DIFF} lo", f"{DIFF} hi")} if f"{DIFF} lo" in cmp.columns else {}
        precision = {"off": 3, "on": 3, DIFF: 4, "p": 3, "n": 0}
        caption = (
            "SCA / HCC on vs off: each cell with the component on against the cell with it off "
            "(hcc.lambda 0, sca.mask_input none) and the same other settings. on - off: mean difference "
            "over the images with the paired-bootstrap 95% CI (±) and two-sided p; verdict: better / worse "
            "when the CI excludes 0, else n.s. (by the metric's direction)."
        )
        out.table("comparison", cmp, caption, {}, ci, precision, arrows=False)
        sections.append(
            _section(
                "Component on vs off",
                part="table",
                table=_table_context(cmp, {}, ci, precision, False),
                caption=caption,
            )
        )
    return sections


def curve_sections(cells: list[SweepCell], out: Exporter) -> list[Section]:
    """A metrics-vs-value figure for each of the first three ``numeric_keys`` of the cells with results."""
    sections = []
    for key in numeric_keys([c for c in cells if c.summary is not None])[:3]:
        long = lambda_frame(cells, key)
        lower = {m: bool(v) for m, v in long.groupby("metric")["lower_better"].first().items() if v is not None}
        fig = figures.lambda_curve(
            long,
            "value",
            hue="group" if long["group"].str.len().any() else None,
            lower_better=lower,
            x_label=short_names(swept_keys(cells))[key],
        )
        stem = "curve_" + "".join(ch if ch.isalnum() else "_" for ch in key)
        sections.append(
            _section(
                f"Curve over {key}",
                part="figure",
                src=out.figure(stem, fig, "text"),
                max_width=1000,
                caption=f"Metrics vs {key} (error bars: 95% bootstrap CI over images).",
            )
        )
    return sections


# --------------------------------------------------------------------------------------------------- analysis
def attention_sections(cells: list[SweepCell], out: Exporter) -> list[Section]:
    """'Attention distance' (figure + per-scale table over the cells' models) when cells saved attention.csv."""
    attention = analysis_frame(cells, "attention")
    if attention is None:
        return []
    fig = figures.attention_distance_figure(attention, hue="model")
    wide = (
        attention.groupby(["query_level", "query_scale", "model"])["mean_distance"]
        .mean()
        .unstack("model")
        .reset_index()
        .drop(columns="query_level")
        .rename(columns={"query_scale": "scale"})
    )
    out.table(
        "attention_distance",
        wide,
        "Mean attention distance per query scale (fraction of the image side; mean over layers and heads).",
        {},
        {},
        3,
    )
    caption = (
        "Mean attention distance (left) and attention mass within the radius (right) per query scale; mean over "
        "heads, error bars: s.d. over layers."
    )
    return [
        _figure_section("Attention distance", out, "attention_distance", fig, _table_context(wide, {}, {}, 3), caption)
    ]


def accumulation_sections(cells: list[SweepCell], out: Exporter) -> list[Section]:
    """'Error accumulation' (figure + per-scale error table) when cells saved accumulation.csv."""
    accumulation = analysis_frame(cells, "accumulation")
    if accumulation is None:
        return []
    fig = figures.accumulation_figure(accumulation, hue="model")
    main = accumulation[accumulation["mode"] != "perturbation"]
    table = None
    if not main.empty:
        wide = main.pivot_table(index=["model", "mode"], columns="scale_index", values="error", sort=True)
        labels = main.drop_duplicates("scale_index").set_index("scale_index")["scale"]
        wide = wide.rename(columns=lambda i: str(labels.get(i, i))).reset_index()
        out.table("accumulation", wide, "Per-scale latent error of the accumulated reconstruction.", {}, {}, 4)
        table = _table_context(wide, {}, {}, 4)
    caption = (
        "Per-scale error of the accumulated latent: teacher-forced (dashed) vs free-running (solid); perturbation "
        "curves when recorded." + identical_note(accumulation)
    )
    return [_figure_section("Error accumulation", out, "accumulation", fig, table, caption)]


def _figure_section(title: str, out: Exporter, name: str, fig, table: dict | None, caption: str) -> Section:
    """A column-wide figure (exported as ``name``) with an optional table under it."""
    return _section(
        title, part="figure", src=out.figure(name, fig, "column"), max_width=560, table=table, caption=caption
    )


def sca_mask_sections(cells: list[SweepCell]) -> list[Section]:
    """One section per cell with an SCA mask panel (``analysis/sca_masks_*.png``, the first image's)."""
    keys = varying_keys(cells)
    short = short_names(swept_keys(cells))
    sections = []
    for cell in cells:
        pngs = sorted((cell.dir / "analysis").glob("sca_masks_*.png"))
        if not pngs:
            continue
        label = cell_label(cell, keys, short)
        src = "data:image/png;base64," + base64.b64encode(pngs[0].read_bytes()).decode("ascii")
        image = pngs[0].stem.removeprefix("sca_masks_")
        sections.append(
            _section(
                f"SCA gates: {label}",
                part="figure",
                src=src,
                max_width=1000,
                caption=f"Image {image}: structure map (top) and SCA gate over the LR image (bottom) "
                "per scale, from the cell's trained model.",
            )
        )
    return sections


# ------------------------------------------------------------------------------------------------------ status
def unfinished_sections(sweep_dir: Path, cells: list[SweepCell]) -> list[Section]:
    """'Failed and unfinished cells' (status, error, log path) with every problem met while reading; nothing
    when all cells are done and readable. Build it after the other sections: they may add problems."""
    unfinished = [c for c in cells if c.status != "done" or c.summary is None]
    problems = [p for c in cells for p in c.problems]
    if not unfinished and not problems:
        return []
    rows = [
        {
            "name": c.name,
            "status": c.status if c.summary is not None or c.status != "done" else "done (no summary.csv)",
            "error": c.error or "",
            "log": str((c.dir / "log.txt").relative_to(sweep_dir)) if (c.dir / "log.txt").is_file() else "",
        }
        for c in unfinished
    ]
    return [_section("Failed and unfinished cells", part="cells", problems=problems, cells=rows)]


def exports_section(out: Exporter) -> Section:
    """The list of exported files; build it last, when every table and figure is written."""
    return _section("Exports", part="exports", files=sorted(out.files))
