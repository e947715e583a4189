"""One self-contained HTML page for a sweep (ablation): ``render_sweep_report(sweep_dir) -> Path``.

Reads the sweep engine's layout (``harness.sweep``)::

    cells/<cell>/state.json                  {status, name, index, overrides: {key: value}, result, error}
    cells/<cell>/summary.csv                 the cell's bench run (the cell folder is its run dir; a
                                             ``result[.bench].run_dir`` in state.json, or a nested run)
    cells/<cell>/analysis/attention.csv      optional: harness.analysis.attention.ATTENTION_COLUMNS
    cells/<cell>/analysis/accumulation.csv   optional: harness.analysis.accumulation.ACCUMULATION_COLUMNS

and writes ``<sweep_dir>/report.html`` (images embedded as base64, no external resources) plus
``<sweep_dir>/exports/``: every table as .tex and .md, every figure as .pdf, .svg and .png at paper widths.

Page: the ablation table (one row per finished cell, swept keys as columns, metrics as mean +- CI with the
best in bold and arrows), a lambda curve per numeric swept key, attention-distance and error-accumulation
figures when cells saved analysis outputs, and the cells that failed or have not finished.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.accumulation import read_accumulation_csv
from harness.analysis.attention import read_attention_csv
from harness.atomic import write_text
from reports import exports, figures

SUMMARY_NEEDED = ("dataset", "method", "metric", "mean")
RUN_DIR_KEYS = ("run_dir", "bench_dir", "bench_run_dir")


@dataclass
class SweepCell:
    """What the report knows about one cell (anything unreadable is noted in ``problems``)."""

    dir: Path
    name: str
    index: int
    status: str
    overrides: dict[str, Any]
    error: str | None = None
    run_dir: Path | None = None
    summary: pd.DataFrame | None = None
    attention: pd.DataFrame | None = None
    accumulation: pd.DataFrame | None = None
    problems: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------- reading
def _find_run_dir(cell_dir: Path, state: dict) -> Path | None:
    result = state.get("result") if isinstance(state.get("result"), dict) else {}
    places = [result] + [v for v in result.values() if isinstance(v, dict)]  # e.g. result.bench.run_dir
    for place, key in ((p, k) for p in places for k in RUN_DIR_KEYS):
        if isinstance(place.get(key), str):
            path = Path(place[key])
            path = path if path.is_absolute() else cell_dir / path
            if (path / "summary.csv").is_file():
                return path
    if (cell_dir / "summary.csv").is_file():
        return cell_dir
    nested = sorted(p.parent for depth in ("*", "*/*") for p in cell_dir.glob(f"{depth}/summary.csv"))
    return nested[0] if nested else None


def _read_summary(path: Path, problems: list[str]) -> pd.DataFrame | None:
    try:
        df = pd.read_csv(path, dtype={"dataset": str, "method": str, "metric": str})
    except (OSError, ValueError) as exc:
        problems.append(f"{path}: unreadable ({exc})")
        return None
    missing = [c for c in SUMMARY_NEEDED if c not in df.columns]
    if missing:
        problems.append(f"{path}: missing columns {missing}")
        return None
    for col in ("ci_low", "ci_high", "n"):
        if col not in df.columns:
            df[col] = math.nan
    if "lower_better" not in df.columns:
        problems.append(f"{path}: no lower_better column; best values not marked")
        df["lower_better"] = pd.NA
    return df


def load_sweep_cells(sweep_dir: str | Path) -> list[SweepCell]:
    """Every cell folder under ``sweep_dir/cells`` (sorted by the sweep's cell index, then name)."""
    cells_dir = Path(sweep_dir) / "cells"
    if not cells_dir.is_dir():
        raise FileNotFoundError(f"{cells_dir}: not found; is {sweep_dir} a sweep directory (runs/<sweep>/)?")
    cells = []
    for cell_dir in sorted(p for p in cells_dir.iterdir() if p.is_dir()):
        problems: list[str] = []
        state: dict = {}
        for fname in ("state.json", "cell.json"):
            path = cell_dir / fname
            if path.is_file():
                try:
                    loaded = json.loads(path.read_text(encoding="utf-8"))
                    state = {**loaded, **state} if isinstance(loaded, dict) else state
                except (OSError, ValueError) as exc:
                    problems.append(f"{path}: unreadable ({exc})")
        if not state and not (cell_dir / "summary.csv").is_file():
            continue  # not a cell folder
        overrides = state.get("overrides") if isinstance(state.get("overrides"), dict) else {}
        cell = SweepCell(
            cell_dir,
            str(state.get("name") or cell_dir.name),
            int(state.get("index", 10**9)),
            str(state.get("status", "pending")),
            overrides,
            state.get("error"),
            problems=problems,
        )
        cell.run_dir = _find_run_dir(cell_dir, state)
        if cell.run_dir is not None:
            cell.summary = _read_summary(cell.run_dir / "summary.csv", problems)
        for attr, fname, reader in (
            ("attention", "attention.csv", read_attention_csv),
            ("accumulation", "accumulation.csv", read_accumulation_csv),
        ):
            path = cell_dir / "analysis" / fname
            if path.is_file():
                try:
                    setattr(cell, attr, reader(path))
                except (OSError, ValueError) as exc:
                    problems.append(str(exc))
        cells.append(cell)
    return sorted(cells, key=lambda c: (c.index, c.name))


# ----------------------------------------------------------------------------------------------------- tables
def swept_keys(cells: list[SweepCell]) -> list[str]:
    return list(dict.fromkeys(k for c in cells for k in c.overrides))


def _short(keys: list[str]) -> dict[str, str]:
    try:
        from harness.sweep.expand import short_keys

        return short_keys(keys)
    except ImportError:  # pragma: no cover - the sweep engine is optional for reading
        return {k: k for k in keys}


def auto_precision(values: pd.Series) -> int:
    """Decimals that suit a metric's magnitude: 28.41, 0.9123, 0.2955, 123.4."""
    finite = pd.to_numeric(values, errors="coerce").abs().dropna()
    top = float(finite.median()) if len(finite) else 1.0
    return 1 if top >= 100 else 2 if top >= 10 else 3 if top >= 1 else 4


def ablation_frame(cells: list[SweepCell]) -> tuple[pd.DataFrame, dict[str, str], dict[str, tuple[str, str]]]:
    """Wide ablation table of the cells with results: swept keys (short names), [method], then per metric the
    mean with hidden ``<col> lo`` / ``<col> hi`` CI columns. Returns (table, bold_best, ci) for ``exports``.
    """
    done = [c for c in cells if c.summary is not None and not c.summary.empty]
    if not done:
        return pd.DataFrame(), {}, {}
    keys = swept_keys(done)
    short = _short(keys)
    datasets = list(dict.fromkeys(d for c in done for d in c.summary["dataset"]))
    multi_method = any(c.summary.groupby("dataset")["method"].nunique().max() > 1 for c in done)
    rows, direction = [], {}
    for cell in done:
        for method, part in cell.summary.groupby("method", sort=False):
            row: dict[str, Any] = {} if keys else {"cell": cell.name}
            row.update({short[k]: _fmt_value(cell.overrides.get(k)) for k in keys})
            if multi_method:
                row["method"] = method
            for rec in part.itertuples(index=False):
                col = rec.metric if len(datasets) == 1 else f"{rec.dataset}: {rec.metric}"
                row[col], row[f"{col} lo"], row[f"{col} hi"] = rec.mean, rec.ci_low, rec.ci_high
                if not pd.isna(rec.lower_better):
                    direction[col] = "lower" if _truthy(rec.lower_better) else "higher"
            rows.append(row)
    df = pd.DataFrame(rows)
    metric_cols = [c for c in df.columns if f"{c} lo" in df.columns]
    ci = {c: (f"{c} lo", f"{c} hi") for c in metric_cols if df[f"{c} lo"].notna().any()}
    df = df.drop(columns=[f"{c} {s}" for c in metric_cols if c not in ci for s in ("lo", "hi")])
    return df, {c: d for c, d in direction.items() if c in metric_cols}, ci


def _truthy(v: Any) -> bool:
    return v.strip().lower() in ("true", "1", "yes") if isinstance(v, str) else bool(v)


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, float):
        return f"{v:g}"
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def varying_keys(cells: list[SweepCell]) -> list[str]:
    """Swept keys whose value differs between cells (a key swept over one value labels nothing)."""
    return [
        k
        for k in swept_keys(cells)
        if len({json.dumps(c.overrides.get(k), sort_keys=True, default=str) for c in cells}) > 1
    ]


def cell_label(cell: SweepCell, keys: list[str], short: dict[str, str]) -> str:
    """Short label from the varying keys, e.g. 'hcc.lambda=0.5' (the cell name when nothing varies)."""
    return ", ".join(f"{short[k]}={_fmt_value(cell.overrides.get(k))}" for k in keys) or cell.name


def numeric_keys(cells: list[SweepCell]) -> list[str]:
    """Swept keys whose values are all numbers (not bools) with at least two distinct values; keys
    containing 'lambda' first."""
    out = []
    for key in swept_keys(cells):
        values = [c.overrides.get(key) for c in cells if key in c.overrides]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric and len(set(values)) >= 2:
            out.append(key)
    return sorted(out, key=lambda k: ("lambda" not in k.lower(), out.index(k)))


def lambda_frame(cells: list[SweepCell], key: str) -> pd.DataFrame:
    """Long table (value, group, metric, mean, ci_low, ci_high) for a curve over swept ``key``; ``group``
    labels the other swept keys' values (and the method when a cell has several)."""
    others = [k for k in varying_keys(cells) if k != key]
    short = _short(swept_keys(cells))
    rows = []
    for cell in cells:
        if cell.summary is None or key not in cell.overrides:
            continue
        n_datasets = cell.summary["dataset"].nunique()
        for rec in cell.summary.itertuples(index=False):
            group = ", ".join(f"{short[k]}={_fmt_value(cell.overrides.get(k))}" for k in others)
            if cell.summary["method"].nunique() > 1:
                group = f"{group}, {rec.method}" if group else rec.method
            metric = rec.metric if n_datasets == 1 else f"{rec.dataset}: {rec.metric}"
            rows.append(
                {
                    "value": float(cell.overrides[key]),
                    "group": group,
                    "metric": metric,
                    "mean": rec.mean,
                    "ci_low": rec.ci_low if not pd.isna(rec.ci_low) else rec.mean,
                    "ci_high": rec.ci_high if not pd.isna(rec.ci_high) else rec.mean,
                    "lower_better": None if pd.isna(rec.lower_better) else _truthy(rec.lower_better),
                }
            )
    return pd.DataFrame(rows)


def _analysis(cells: list[SweepCell], attr: str) -> pd.DataFrame | None:
    """The cells' analysis tables concatenated, ``model`` = the cell's label (+ the table's own model)."""
    frames = []
    keys = varying_keys(cells)
    short = _short(swept_keys(cells))
    for cell in cells:
        df = getattr(cell, attr)
        if df is None or df.empty:
            continue
        df = df.copy()
        inner = df["model"].fillna("").astype(str) if "model" in df.columns else pd.Series("", index=df.index)
        label = cell_label(cell, keys, short)
        df["model"] = [f"{label} / {m}" if m else label for m in inner]
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else None


# ------------------------------------------------------------------------------------------------------- page
def _table_context(df: pd.DataFrame, bold_best: dict, ci: dict, precision: Any) -> dict:
    table = exports.format_table(df, bold_best=bold_best, ci=ci, precision=precision)
    arrows = {"higher": "↑", "lower": "↓", None: ""}
    return {
        "columns": [{"name": c, "arrow": arrows[a]} for c, a in zip(table.columns, table.arrows)],
        "rows": [
            [{"text": c.text, "pm": c.pm, "bold": c.bold, "numeric": c.numeric} for c in row]
            for row in table.rows
        ],
    }


class _Exporter:
    """Writes tables/figures to ``exports/`` and collects what the page shows."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: list[str] = []

    def table(
        self, stem: str, df: pd.DataFrame, caption: str, bold_best: dict, ci: dict, precision: Any
    ) -> None:
        tex = exports.to_latex(df, caption, f"tab:{stem}", bold_best, ci=ci, precision=precision)
        md = exports.to_markdown(df, caption, bold_best, ci=ci, precision=precision)
        for suffix, text in ((".tex", tex), (".md", md)):
            write_text(self.folder / f"{stem}{suffix}", text)
            self.files.append(f"{stem}{suffix}")

    def figure(self, stem: str, fig: Any, width: str) -> str:
        """Save pdf/svg/png; return the exported PNG (300 dpi) as a data URI for the page."""
        paths = exports.save_figure(fig, self.folder / stem, width)
        self.files += [p.name for p in paths]
        png = next(p for p in paths if p.suffix == ".png").read_bytes()
        return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_sweep_report(
    sweep_dir: str | Path, output: str | Path | None = None, *, title: str | None = None
) -> Path:
    """Render the sweep page to ``output`` (default ``sweep_dir/report.html``) and the exports next to it
    (``<output folder>/exports/``); returns the page's path."""
    from reports.html import Section, template_env

    sweep_dir = Path(sweep_dir)
    cells = load_sweep_cells(sweep_dir)
    if not cells:
        raise FileNotFoundError(f"{sweep_dir / 'cells'}: no sweep cells found")
    output = Path(output) if output is not None else sweep_dir / "report.html"
    out = _Exporter(output.parent / "exports")
    sections: list[Section] = []

    table, bold_best, ci = ablation_frame(cells)
    n_done = sum(c.summary is not None for c in cells)
    if not table.empty:
        precision = {c: auto_precision(table[c]) for c in table.columns if c in bold_best or c in ci}
        caption = f"Ablation {sweep_dir.name}: mean over images with 95% bootstrap CI; best in bold."
        out.table("ablation", table, caption, bold_best, ci, precision)
        sections.append(
            Section(
                "Ablation",
                template="sweep.html.j2",
                context={
                    "part": "table",
                    "table": _table_context(table, bold_best, ci, precision),
                    "caption": f"{n_done} of {len(cells)} cells have results. Mean ± half-width of the 95% "
                    "bootstrap "
                    "CI over images; the best value per column is bold (compared as displayed).",
                },
            )
        )
        for key in numeric_keys([c for c in cells if c.summary is not None])[:3]:
            long = lambda_frame(cells, key)
            lower = {
                m: bool(v) for m, v in long.groupby("metric")["lower_better"].first().items() if v is not None
            }
            fig = figures.lambda_curve(
                long,
                "value",
                hue="group" if long["group"].str.len().any() else None,
                lower_better=lower,
                x_label=_short(swept_keys(cells))[key],
            )
            stem = "curve_" + "".join(ch if ch.isalnum() else "_" for ch in key)
            sections.append(
                Section(
                    f"Curve over {key}",
                    template="sweep.html.j2",
                    context={
                        "part": "figure",
                        "src": out.figure(stem, fig, "text"),
                        "max_width": 1000,
                        "caption": f"Metrics vs {key} (error bars: 95% bootstrap CI over images).",
                    },
                )
            )

    attention = _analysis(cells, "attention")
    if attention is not None:
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
            "Mean attention distance per query scale (fraction of the image "
            "side; mean over layers and heads).",
            {},
            {},
            3,
        )
        sections.append(
            Section(
                "Attention distance",
                template="sweep.html.j2",
                context={
                    "part": "figure",
                    "src": out.figure("attention_distance", fig, "column"),
                    "max_width": 560,
                    "table": _table_context(wide, {}, {}, 3),
                    "caption": "Mean attention distance (left) and attention mass within the radius (right) "
                    "per query scale; mean over heads, error bars: s.d. over layers.",
                },
            )
        )

    accumulation = _analysis(cells, "accumulation")
    if accumulation is not None:
        fig = figures.accumulation_figure(accumulation, hue="model")
        main = accumulation[accumulation["mode"] != "perturbation"]
        if not main.empty:
            wide = main.pivot_table(index=["model", "mode"], columns="scale_index", values="error", sort=True)
            labels = main.drop_duplicates("scale_index").set_index("scale_index")["scale"]
            wide = wide.rename(columns=lambda i: str(labels.get(i, i))).reset_index()
            out.table(
                "accumulation", wide, "Per-scale latent error of the accumulated reconstruction.", {}, {}, 4
            )
        sections.append(
            Section(
                "Error accumulation",
                template="sweep.html.j2",
                context={
                    "part": "figure",
                    "src": out.figure("accumulation", fig, "column"),
                    "max_width": 560,
                    "table": _table_context(wide, {}, {}, 4) if not main.empty else None,
                    "caption": "Per-scale error of the accumulated latent: teacher-forced (dashed) vs "
                    "free-running "
                    "(solid); perturbation curves when recorded.",
                },
            )
        )

    unfinished = [c for c in cells if c.status != "done" or c.summary is None]
    problems = [p for c in cells for p in c.problems]
    if unfinished or problems:
        sections.append(
            Section(
                "Failed and unfinished cells",
                template="sweep.html.j2",
                context={
                    "part": "cells",
                    "problems": problems,
                    "cells": [
                        {
                            "name": c.name,
                            "status": c.status
                            if c.summary is not None or c.status != "done"
                            else "done (no summary.csv)",
                            "error": c.error or "",
                            "log": str((c.dir / "log.txt").relative_to(sweep_dir))
                            if (c.dir / "log.txt").is_file()
                            else "",
                        }
                        for c in unfinished
                    ],
                },
            )
        )
    sections.append(
        Section("Exports", template="sweep.html.j2", context={"part": "exports", "files": sorted(out.files)})
    )

    env = template_env()
    rendered = [{"title": s.title, "anchor": s.anchor, "body": s.render(env)} for s in sections]
    alerts = [
        f"{c.name}: {c.status}{': ' + c.error if c.error else ''}" for c in cells if c.status == "failed"
    ]
    html = env.get_template("report.html.j2").render(
        title=title or f"{sweep_dir.name}: sweep report", alerts=alerts, sections=rendered, generated=""
    )
    write_text(output, html)
    return output
