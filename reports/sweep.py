"""One self-contained HTML page for a sweep (ablation): ``render_sweep_report(sweep_dir) -> Path``.

Reads the sweep engine's layout (``harness.sweep``); the cells are those listed in ``sweep.json`` (the current
sweep definition: folders of earlier definitions are not shown), or every folder under ``cells/`` without it::

    cells/<cell>/state.json                  {status, name, index, overrides: {key: value}, result, error}
    cells/<cell>/summary.csv                 the cell's bench run (the cell folder is its run dir; a
                                             ``result[.bench].run_dir`` in state.json, or a nested run)
    cells/<cell>/analysis/attention.csv      optional: harness.analysis.attention.ATTENTION_COLUMNS
    cells/<cell>/analysis/accumulation.csv   optional: harness.analysis.accumulation.ACCUMULATION_COLUMNS

and writes ``<sweep_dir>/report.html`` (images embedded as base64, no external resources) plus
``<sweep_dir>/exports/``: every table as .tex and .md, every figure as .pdf, .svg and .png at paper widths.

Page: the ablation table (one row per finished cell, swept keys as columns, metrics as mean +- CI with the
best in bold and arrows; methods with identical results in every cell, e.g. a bicubic baseline, are shown
once in a "Baselines" table instead), "Component on vs off" (each SCA / HCC toggle against its off cell:
paired-bootstrap differences over images), a lambda curve per numeric swept key, attention-distance and
error-accumulation figures and SCA gate panels when cells saved analysis outputs (``analyze`` stage), and the
cells that failed or have not finished.
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
from harness.results import LATENCY_COL
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


def _listed_cells(sweep_dir: Path) -> list[dict] | None:
    """The cell rows of ``sweep.json`` (the current sweep definition), or None without a sweep.json."""
    path = sweep_dir / "sweep.json"
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text(encoding="utf-8")).get("cells")
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: unreadable ({exc}); delete it to report every folder under cells/") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("dir"), str) for r in rows):
        raise ValueError(f"{path}: 'cells' is not a list of {{dir: ...}} rows; delete it to report every folder")
    return rows


def load_sweep_cells(sweep_dir: str | Path) -> list[SweepCell]:
    """The sweep's cells, sorted by cell index, then name: those listed in ``sweep.json`` (so folders left by
    an earlier definition of the sweep, e.g. other values, are not shown), else every folder under
    ``cells/``."""
    sweep_dir = Path(sweep_dir)
    cells_dir = sweep_dir / "cells"
    if not cells_dir.is_dir():
        raise FileNotFoundError(f"{cells_dir}: not found; is {sweep_dir} a sweep directory (runs/<sweep>/)?")
    listed = _listed_cells(sweep_dir)
    if listed is None:
        folders = [(p, {}) for p in sorted(p for p in cells_dir.iterdir() if p.is_dir())]
    else:
        folders = [(sweep_dir / row["dir"], row) for row in listed]
    cells = []
    for cell_dir, row in folders:
        problems: list[str] = []
        state: dict = {}
        if row and not cell_dir.is_dir():
            problems.append(f"{cell_dir}: listed in sweep.json but missing")
        for fname in ("state.json", "cell.json"):
            path = cell_dir / fname
            if path.is_file():
                try:
                    loaded = json.loads(path.read_text(encoding="utf-8"))
                    state = {**loaded, **state} if isinstance(loaded, dict) else state
                except (OSError, ValueError) as exc:
                    problems.append(f"{path}: unreadable ({exc})")
        if not row and not state and not (cell_dir / "summary.csv").is_file():
            continue  # not a cell folder (e.g. _tokenizers/)
        state = {
            **{k: row[k] for k in ("name", "index", "overrides", "status", "error") if k in row},
            **state,
        }
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


def _done(cells: list[SweepCell]) -> list[SweepCell]:
    return [c for c in cells if c.summary is not None and not c.summary.empty]


def constant_methods(cells: list[SweepCell]) -> list[str]:
    """Methods whose results are identical in every finished cell (e.g. a bicubic baseline benchmarked next
    to each cell's trained model): the report shows them once, not once per cell. Empty with fewer than two
    finished cells or when no other method would be left."""
    done = _done(cells)
    if len(done) < 2:
        return []

    def values(cell: SweepCell, method: str) -> list:  # timings differ from run to run: not compared
        part = cell.summary[(cell.summary["method"] == method) & (cell.summary["metric"] != LATENCY_COL)]
        return sorted(part[["dataset", "metric", "mean"]].astype(str).itertuples(index=False, name=None))

    methods = list(dict.fromkeys(m for c in done for m in c.summary["method"]))
    same = [m for m in methods if values(done[0], m) and all(values(c, m) == values(done[0], m) for c in done)]
    return same if len(same) < len(methods) else []


def _wide(
    entries: list[tuple[dict[str, Any], pd.DataFrame]], datasets: list[str]
) -> tuple[pd.DataFrame, dict[str, str], dict[str, tuple[str, str]]]:
    """Rows ``prefix + per metric mean / <col> lo / <col> hi`` from (prefix, summary rows of one method)."""
    rows, direction = [], {}
    for prefix, part in entries:
        row = dict(prefix)
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


def ablation_frame(cells: list[SweepCell]) -> tuple[pd.DataFrame, dict[str, str], dict[str, tuple[str, str]]]:
    """Wide ablation table of the cells with results: swept keys (short names), [method], then per metric the
    mean with hidden ``<col> lo`` / ``<col> hi`` CI columns. Returns (table, bold_best, ci) for ``exports``.
    Methods with the same results in every cell (``constant_methods``) are left out: see ``baseline_frame``.
    """
    done = _done(cells)
    if not done:
        return pd.DataFrame(), {}, {}
    keys = swept_keys(done)
    short = _short(keys)
    datasets = list(dict.fromkeys(d for c in done for d in c.summary["dataset"]))
    skip = set(constant_methods(done))
    parts = {c.name: c.summary[~c.summary["method"].isin(skip)] for c in done}
    multi_method = any(p.groupby("dataset")["method"].nunique().max() > 1 for p in parts.values())
    entries = []
    for cell in done:
        for method, part in parts[cell.name].groupby("method", sort=False):
            prefix: dict[str, Any] = {} if keys else {"cell": cell.name}
            prefix.update({short[k]: _fmt_value(cell.overrides.get(k)) for k in keys})
            if multi_method:
                prefix["method"] = method
            entries.append((prefix, part))
    return _wide(entries, datasets)


def baseline_frame(cells: list[SweepCell]) -> tuple[pd.DataFrame, dict[str, str], dict[str, tuple[str, str]]]:
    """The ``constant_methods`` once each (method, then per metric mean with CI columns); empty if none."""
    done = _done(cells)
    methods = constant_methods(done)
    if not methods:
        return pd.DataFrame(), {}, {}
    datasets = list(dict.fromkeys(d for c in done for d in c.summary["dataset"]))
    first = done[0].summary
    return _wide([({"method": m}, first[first["method"] == m]) for m in methods], datasets)


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


def identical_curves(accumulation: pd.DataFrame, mode: str = "free_running") -> list[list[str]]:
    """Groups (2+) of models whose ``mode`` curves are identical, i.e. drawn on top of each other: for
    free-running curves, models that generated the same tokens (e.g. undertrained ones that predict one code
    per scale whatever the training setting)."""
    groups: dict[tuple, list[str]] = {}
    for model, curve in accumulation[accumulation["mode"] == mode].groupby("model", sort=False):
        key = tuple(curve.sort_values("scale_index")["error"].round(12))
        groups.setdefault(key, []).append(str(model))
    return [g for g in groups.values() if len(g) > 1]


def _identical_note(accumulation: pd.DataFrame) -> str:
    groups = identical_curves(accumulation)
    if not groups:
        return ""
    listing = "; ".join(" = ".join(g) for g in groups)
    return (
        f" Identical free-running curves (drawn on top of each other): {listing}. Those models generated the "
        "same tokens for these images, so this analysis cannot tell them apart."
    )


# ---------------------------------------------------------------------------------------- on vs off tables
TOGGLES = (  # swept key (suffix) -> component name, "is off" value test
    ("hcc.lambda", "HCC", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v == 0),
    ("sca.mask_input", "SCA", lambda v: v in (None, "none")),
)
DIFF = "on - off"


def _toggle(key: str) -> tuple[str, Any] | None:
    for suffix, name, is_off in TOGGLES:
        if key == suffix or key.endswith("." + suffix):
            return name, is_off
    return None


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _per_image(cell: SweepCell, dataset: str) -> pd.DataFrame | None:
    """The cell's per-image metric table of ``dataset`` (bench layout ``metrics/<dataset>.csv``), or None."""
    from harness.results import per_image_path, read_per_image

    for fmt in ("csv", "parquet"):
        path = per_image_path(cell.run_dir, dataset, fmt) if cell.run_dir is not None else None
        if path is not None and path.is_file():
            try:
                return read_per_image(path)
            except (OSError, ValueError, ImportError) as exc:
                cell.problems.append(f"{path}: unreadable ({exc})")
    return None


def _paired(on: SweepCell, off: SweepCell, dataset: str, method: str, metric: str) -> tuple:
    """(mean difference, ci low, ci high, p, n) of on - off over the images both have, or None."""
    from harness.stats import paired_bootstrap

    tables = [_per_image(c, dataset) for c in (on, off)]
    if any(t is None or metric not in t.columns for t in tables):
        return None
    a, b = (t[t["method"] == method].set_index("image")[metric] for t in tables)
    common = a.index.intersection(b.index)
    if len(common) < 2:
        return None
    res = paired_bootstrap(a[common].to_numpy(float), b[common].to_numpy(float), n_boot=2000, seed=0)
    return res.mean_diff, res.ci_low, res.ci_high, res.p_value, res.n


def _compare(on: SweepCell, off: SweepCell, label: str, skip: set[str]) -> list[dict]:
    merged = on.summary.merge(off.summary, on=["dataset", "method", "metric"], suffixes=("_on", "_off"))
    merged = merged[merged["metric"] != LATENCY_COL]  # a timing, not a quality difference of the component
    rows = []
    for rec in merged[~merged["method"].isin(skip)].itertuples(index=False):
        paired = _paired(on, off, rec.dataset, rec.method, rec.metric)
        diff, low, high, p, n = paired or (rec.mean_on - rec.mean_off, math.nan, math.nan, math.nan, math.nan)
        lower = rec.lower_better_on
        verdict = "–"
        if paired is not None and not pd.isna(lower):
            significant = not (low <= 0.0 <= high)
            better = (diff < 0) if _truthy(lower) else (diff > 0)
            verdict = ("better" if better else "worse") if significant else "n.s."
        rows.append(
            {
                "comparison": label,
                "dataset": rec.dataset,
                "method": rec.method,
                "metric": rec.metric,
                "off": rec.mean_off,
                "on": rec.mean_on,
                DIFF: diff,
                f"{DIFF} lo": low,
                f"{DIFF} hi": high,
                "p": p,
                "n": n,
                "verdict": verdict,
            }
        )
    return rows


def comparison_frame(cells: list[SweepCell]) -> pd.DataFrame:
    """Every swept SCA / HCC toggle on vs off (``TOGGLES``: ``hcc.lambda`` 0 and ``sca.mask_input`` none are
    off): each cell with the component on is paired with the off cell that has the same other swept values;
    per method (not ``constant_methods``) and metric: both means and the difference on - off with the paired
    bootstrap 95% CI and p-value over the images both cells evaluated (from their per-image tables; without
    them only the difference of means). ``verdict``: better / worse (CI excludes 0) / n.s. Columns dataset
    and method are dropped when they hold one value. Empty when the sweep toggles neither component."""
    done = _done(cells)
    keys = swept_keys(done)
    short = _short(keys)
    skip = set(constant_methods(done))
    rows: list[dict] = []
    for key in keys:
        toggle = _toggle(key)
        if toggle is None:
            continue
        name, is_off = toggle
        others = [k for k in varying_keys(done) if k != key]
        offs = [c for c in done if key in c.overrides and is_off(c.overrides[key])]
        for on in done:
            if key not in on.overrides or is_off(on.overrides[key]):
                continue
            off = next((c for c in offs if all(_same(c.overrides.get(k), on.overrides.get(k)) for k in others)), None)
            if off is None:
                continue
            label = f"{name}: {short[key]}={_fmt_value(on.overrides[key])} vs {_fmt_value(off.overrides[key])}"
            if others:
                label += " (" + ", ".join(f"{short[k]}={_fmt_value(on.overrides.get(k))}" for k in others) + ")"
            rows += _compare(on, off, label, skip)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    single = [c for c in ("dataset", "method") if df[c].nunique() == 1]
    if df["n"].isna().all():
        single += ["n", "p", f"{DIFF} lo", f"{DIFF} hi"]
    return df.drop(columns=single)


def _analysis(cells: list[SweepCell], attr: str) -> pd.DataFrame | None:
    """The cells' analysis tables concatenated, ``model`` = the cell's label (+ the table's own model name
    when the cells' tables do not all name the same single model)."""
    keys = varying_keys(cells)
    short = _short(swept_keys(cells))
    tables = []
    for cell in cells:
        df = getattr(cell, attr)
        if df is not None and not df.empty:
            df = df.copy()
            inner = df["model"].fillna("").astype(str) if "model" in df.columns else pd.Series("", index=df.index)
            tables.append((cell, df, inner))
    if not tables:
        return None
    one_model = len({m for _, _, inner in tables for m in inner}) == 1
    for cell, df, inner in tables:
        label = cell_label(cell, keys, short)
        df["model"] = [f"{label} / {m}" if m and not one_model else label for m in inner]
    return pd.concat([df for _, df, _ in tables], ignore_index=True)


# ------------------------------------------------------------------------------------------------------- page
def _table_context(df: pd.DataFrame, bold_best: dict, ci: dict, precision: Any, arrows: Any = True) -> dict:
    table = exports.format_table(df, bold_best=bold_best, arrows=arrows, ci=ci, precision=precision)
    arrows = {"higher": "↑", "lower": "↓", None: ""}
    return {
        "columns": [{"name": c, "arrow": arrows[a]} for c, a in zip(table.columns, table.arrows)],
        "rows": [
            [{"text": c.text, "pm": c.pm, "bold": c.bold, "numeric": c.numeric} for c in row] for row in table.rows
        ],
    }


class _Exporter:
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


def _baseline_and_comparison_sections(cells: list[SweepCell], out: _Exporter) -> list[Any]:
    """'Baselines' (methods identical in every cell, shown once) and 'Component on vs off' sections."""
    from reports.html import Section

    sections = []
    base, direction, ci = baseline_frame(cells)
    if not base.empty:
        precision = {c: auto_precision(base[c]) for c in base.columns if c in direction or c in ci}
        caption = "Methods with the same results in every cell (not affected by the swept keys), shown once."
        out.table("baselines", base, caption, {}, ci, precision, arrows=direction)
        sections.append(
            Section(
                "Baselines",
                template="sweep.html.j2",
                context={
                    "part": "table",
                    "table": _table_context(base, {}, ci, precision, direction),
                    "caption": caption,
                },
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
            Section(
                "Component on vs off",
                template="sweep.html.j2",
                context={
                    "part": "table",
                    "table": _table_context(cmp, {}, ci, precision, False),
                    "caption": caption,
                },
            )
        )
    return sections


def _sca_mask_sections(cells: list[SweepCell]) -> list[Any]:
    """One section per cell with an SCA mask panel (``analysis/sca_masks_*.png``, the first image's)."""
    from reports.html import Section

    keys = varying_keys(cells)
    short = _short(swept_keys(cells))
    sections = []
    for cell in cells:
        pngs = sorted((cell.dir / "analysis").glob("sca_masks_*.png"))
        if not pngs:
            continue
        label = cell_label(cell, keys, short)
        src = "data:image/png;base64," + base64.b64encode(pngs[0].read_bytes()).decode("ascii")
        image = pngs[0].stem.removeprefix("sca_masks_")
        sections.append(
            Section(
                f"SCA gates: {label}",
                template="sweep.html.j2",
                context={
                    "part": "figure",
                    "src": src,
                    "max_width": 1000,
                    "caption": f"Image {image}: structure map (top) and SCA gate over the LR image (bottom) "
                    "per scale, from the cell's trained model.",
                },
            )
        )
    return sections


def render_sweep_report(sweep_dir: str | Path, output: str | Path | None = None, *, title: str | None = None) -> Path:
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
        sections += _baseline_and_comparison_sections(cells, out)
        for key in numeric_keys([c for c in cells if c.summary is not None])[:3]:
            long = lambda_frame(cells, key)
            lower = {m: bool(v) for m, v in long.groupby("metric")["lower_better"].first().items() if v is not None}
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
            "Mean attention distance per query scale (fraction of the image side; mean over layers and heads).",
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
            out.table("accumulation", wide, "Per-scale latent error of the accumulated reconstruction.", {}, {}, 4)
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
                    "free-running (solid); perturbation curves when recorded." + _identical_note(accumulation),
                },
            )
        )

    sections += _sca_mask_sections(cells)
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
    alerts = [f"{c.name}: {c.status}{': ' + c.error if c.error else ''}" for c in cells if c.status == "failed"]
    html = env.get_template("report.html.j2").render(
        title=title or f"{sweep_dir.name}: sweep report", alerts=alerts, sections=rendered, generated=""
    )
    write_text(output, html)
    return output
