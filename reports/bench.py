"""Self-contained HTML report of a bench run, ``render_report(run_dir) -> Path``, and its paper tables,
``write_exports(run_dir) -> [Path]``.

The page is a list of ``Section`` objects rendered with jinja2 (``autoescape=True``) into
``templates/report.html.j2``; images are embedded as base64 PNG, CSS is inline, nothing is fetched from
anywhere. Each core section is built by a function returning plain data for its template, so other reports
(efficiency, ablations, plots) add their own sections without touching this file::

    render_report(run_dir, extra_sections=[Section("Efficiency", html=table_html)])
    render_report(run_dir, extra_sections=[Section("Ablation", template="ablation.html.j2",
                                                   context={...})], template_dirs=["my/templates"])

The exports (``RUN_DIR/exports/``) are Tables 1-2 in the paper's layout as LaTeX (booktabs) and Markdown, made
by ``reports.exports``: ``table.{tex,md}``, one row per method and one column per dataset and metric (the mean,
best in bold, arrows for the better direction, optionally +- half the 95% bootstrap CI), and
``efficiency.{tex,md}`` when the run measured efficiency.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness.bench.ceiling import read_ceilings
from harness.bench.layout import LATENCY_COL, RunResults, load_run
from harness.core.atomic import write_text
from reports import exports, figures
from reports import images as render
from reports.honesty import MODELS_TEMPLATE, MODELS_TITLE, ModelFacts, model_warnings, models_context, run_facts
from reports.page import Section, format_value, template_env

THUMB_SIDE = 256  # full-view thumbnails in the grid (px, longer side)


# ----------------------------------------------------------------------------------------------- formatting


def pyiqa_call(record: dict[str, Any] | None) -> str:
    """``psnr(test_y_channel=True, crop_border=0)``: how pyiqa computed a metric (its ``summary.json`` record);
    FID adds ``called with mode='clean'``."""
    if not record:
        return ""
    options = ", ".join(f"{k}={v!r}" for k, v in record.get("options", {}).items())
    call = ", ".join(f"{k}={v!r}" for k, v in record.get("call_options", {}).items())  # FID: mode
    return f"{record.get('name', '?')}({options})" + (f" called with {call}" if call else "")


def metric_label(run: RunResults, metric: str) -> dict[str, Any]:
    lower = run.lower_better(metric)
    name = "latency (s/img)" if metric == LATENCY_COL else metric
    call = pyiqa_call(run.meta.get("metrics", {}).get(metric, {}).get("pyiqa"))
    hint = "lower is better" if lower else "higher is better"
    return {
        "name": name,
        "arrow": "\u2193" if lower else "\u2191",
        "lower_better": lower,
        "hint": f"{hint}; pyiqa {call}" if call else hint,
        "pyiqa": call,
    }


def metric_definitions(run: RunResults) -> str:
    """``psnr = pyiqa 0.1.16 psnr(...); ...`` for the overview (metrics computed by pyiqa only)."""
    parts = []
    for name, info in run.meta.get("metrics", {}).items():
        record = info.get("pyiqa") if isinstance(info, dict) else None
        if record:
            parts.append(f"{name} = pyiqa {record.get('version', '?')} {pyiqa_call(record)}")
    return "; ".join(parts)


def latency_description(record: dict[str, Any] | None) -> str:
    """How the latency column was measured (``summary.json`` "latency"), in one line for the overview."""
    if not record:
        return "seconds per image (how it was measured was not recorded by this run's version)"
    calls = record.get("warmup_calls", "?")
    return (
        f"{record.get('unit', 'seconds per image')}: {record.get('measured', '?')}; batch size "
        f"{record.get('batch_size', '?')}; after {calls} untimed warm-up call(s) on the first batch of every "
        "method on every dataset; methods with precomputed outputs show the time they report, if any"
    )


# ----------------------------------------------------------------------------------------------- sections
def bootstrap_description(run: RunResults) -> str:
    """How the summary CIs were made: resamples and the method used per row (``ci_method``: BCa / percentile)."""
    n_boot = run.meta.get("bootstrap", {}).get("n_boot", "?")
    methods = run.summary["ci_method"].dropna() if "ci_method" in run.summary else pd.Series(dtype=object)
    counts = methods[methods != "none"].value_counts()
    used = ", ".join(f"{name}: {count} row{'s' if count != 1 else ''}" for name, count in counts.items())
    return f"95% bootstrap CI of the mean ({used or 'method not recorded'}), {n_boot} resamples"


def alerts(run: RunResults) -> list[str]:
    """Banner lines: failed methods, skipped and failed images."""
    lines = [
        f"{f['method']} failed on {f['dataset']}: {f['error']} (traceback: {f.get('traceback', '?')})"
        for f in run.failures
    ]
    lines += [f"skipped image {s['dataset']}/{s['image']}: {s['error']}" for s in run.skipped]
    lines += [
        f"image {f['dataset']}/{f['image']} failed for {f['method']} ({f['stage']}): {f['error']}"
        for f in run.image_failures
    ]
    by_method: dict[tuple[str, str], int] = {}
    for s in run.meta.get("method_skipped", []):  # non-strict output folders without some outputs
        by_method[(s["method"], s["dataset"])] = by_method.get((s["method"], s["dataset"]), 0) + 1
    lines += [
        f"{method} on {dataset}: {n} image(s) without output skipped; its means cover fewer images"
        for (method, dataset), n in by_method.items()
    ]
    if run.meta.get("status") not in (None, "ok") and not run.failures:
        lines.append(f"run status: {run.meta.get('status')}")
    return lines + [w for f in model_facts(run) for w in model_warnings(f)]


def model_facts(run: RunResults) -> list[ModelFacts]:
    """Every model of the run (methods with a tokenizer) with its ceiling, bicubic and the rest (one seed: a
    bench run is one seed)."""
    return run_facts(run.run_dir, run.config, run.summary, read_ceilings(run.run_dir), n_seeds=1)


def overview_section(run: RunResults) -> Section:
    env = run.env
    packages = env.get("packages", {})
    git = env.get("git", {}) or {}
    commit = git.get("commit")
    rows = [
        ("experiment", run.name),
        ("description", run.config.get("description") or ""),
        ("finished", run.meta.get("finished", "")),
        ("device", f"{env.get('device', '?')} ({env.get('device_name', '?')})"),
        ("host", f"{env.get('hostname', '?')}, {env.get('cpu', '?')} ({env.get('cpu_count', '?')} cores)"),
        ("git", f"{commit[:12]}{' (dirty)' if git.get('dirty') else ''}" if commit else "not a git checkout"),
        ("python / torch", f"{env.get('python', '?')} / {packages.get('torch', '?')}"),
        ("torchvision / pyiqa", f"{packages.get('torchvision', '?')} / {packages.get('pyiqa', '?')}"),
        ("command", " ".join(env.get("command", []))),
        ("metrics", metric_definitions(run) or "(none computed by pyiqa)"),
        ("latency", latency_description(run.meta.get("latency"))),
        ("bootstrap", bootstrap_description(run)),
    ]
    config_text = (
        (run.run_dir / "config.yaml").read_text(encoding="utf-8") if (run.run_dir / "config.yaml").is_file() else ""
    )
    return Section(
        "Overview",
        template="overview.html.j2",
        context={"rows": rows, "config_text": config_text, "notes": run.meta.get("notes", [])},
    )


def quality_table(run: RunResults, dataset: str) -> dict[str, Any]:
    """Rows = methods, columns = metrics (+ latency); cells = mean, CI and whether it is the column's best."""
    summary = run.summary[run.summary["dataset"] == dataset]
    present = set(summary["metric"])
    metrics = [m for m in [*run.metrics, LATENCY_COL] if m in present]
    methods = [m for m in run.methods if m in set(summary["method"])]
    stats = {(r.method, r.metric): r for r in summary.itertuples(index=False)}
    best = {}
    for metric in metrics:
        means = [stats[(m, metric)].mean for m in methods if (m, metric) in stats]
        means = [v for v in means if v is not None and math.isfinite(v)]
        if means:
            best[metric] = min(means) if run.lower_better(metric) else max(means)
    rows = []
    for method in methods:
        cells = []
        for metric in metrics:
            r = stats.get((method, metric))
            if r is None:
                cells.append({"mean": None, "ci": None, "best": False})
                continue
            ci = None if not math.isfinite(r.ci_low) else (r.ci_low, r.ci_high)
            cells.append({"mean": r.mean, "ci": ci, "best": best.get(metric) == r.mean, "n": r.n})
        rows.append({"method": method, "cells": cells})
    n_images = int(summary["n"].max()) if not summary.empty else 0
    return {
        "dataset": dataset,
        "n_images": n_images,
        "columns": [metric_label(run, m) for m in metrics],
        "rows": rows,
    }


def results_section(run: RunResults) -> Section:
    tables = [quality_table(run, d) for d in run.datasets]
    return Section("Results", template="results.html.j2", context={"tables": [t for t in tables if t["rows"]]})


def per_image_section(run: RunResults) -> Section:
    tables = []
    for dataset in run.datasets:
        table = run.images(dataset)
        if table.empty:
            continue
        metrics = [m for m in [*run.metrics, LATENCY_COL] if m in table.columns]
        rows = [
            {"image": r["image"], "method": r["method"], "cells": [r[m] for m in metrics]}
            for _, r in table.sort_values(["image"], kind="stable").iterrows()
        ]
        fig = per_image_figure(run, dataset)
        figure = "data:image/png;base64," + base64.b64encode(figures.png_bytes(fig)).decode() if fig else None
        tables.append(
            {"dataset": dataset, "columns": [metric_label(run, m) for m in metrics], "rows": rows, "figure": figure}
        )
    return Section("Per-image results", template="per_image.html.j2", context={"tables": tables})


def per_image_long(run: RunResults, dataset: str) -> pd.DataFrame:
    """The per-image quality metrics of ``dataset`` (not timings), long: method, metric, image, value."""
    table = run.images(dataset)
    metrics = [m for m in run.metrics if m in table.columns and m != LATENCY_COL]
    if table.empty or not metrics:
        return pd.DataFrame(columns=["method", "metric", "image", "value"])
    long = table.melt(id_vars=["method", "image"], value_vars=metrics, var_name="metric", value_name="value")
    return long.dropna(subset=["value"])[["method", "metric", "image", "value"]]


def per_image_figure(run: RunResults, dataset: str) -> Any:
    """Per-image distributions of every quality metric per method (seaborn box + strip), or None with fewer
    than two images."""
    long = per_image_long(run, dataset)
    if long.empty or long["image"].nunique() < 2:
        return None
    lower = {m: run.lower_better(m) for m in long["metric"].unique()}
    return figures.distribution_figure(long, label="method", hue=None, lower_better=lower)


def comparison_grid(run: RunResults, dataset: str, crop_size: int, max_images: int) -> dict[str, Any]:
    """LR (nearest) | each method | HR, full views with a box and the same zoomed crop for every column."""
    table = run.images(dataset)
    methods = [m for m in run.methods if m in set(table["method"])] if not table.empty else []
    first_metric = next((m for m in run.metrics if m in table.columns), None)
    keys = [k for k in dict.fromkeys(table["image"]) if run.reference(dataset, "lr", k).is_file()] if methods else []
    rows = []
    for key in keys[:max_images]:
        hr_path = run.reference(dataset, "hr", key)
        hr = render.read_rgb(hr_path) if hr_path.is_file() else None
        outputs = {m: render.read_rgb(p) for m in methods if (p := run.sr_image(dataset, m, key)).is_file()}
        if not outputs:
            continue
        height, width = next(iter(outputs.values())).shape[:2]
        lr = render.nearest_upscale(render.read_rgb(run.reference(dataset, "lr", key)), height, width)
        box = render.choose_crop(list(outputs.values()), hr, crop_size)
        columns = [("LR (nearest)", lr, None)]
        for method, img in outputs.items():
            value = table[(table["method"] == method) & (table["image"] == key)]
            score = value[first_metric].iloc[0] if first_metric is not None and not value.empty else None
            columns.append((method, img, score))
        if hr is not None:
            columns.append(("HR", hr, None))
        cells = [
            {
                "label": label,
                "score": score,
                "full": render.to_data_uri(render.thumbnail(img, THUMB_SIDE, box)),
                "crop": render.to_data_uri(render.zoomed_crop(img, box)),
            }
            for label, img, score in columns
        ]
        rows.append({"image": key, "box": box, "cells": cells})
    return {"dataset": dataset, "rows": rows, "metric": first_metric}


def grid_section(run: RunResults) -> Section:
    report_cfg = run.config.get("report") or {}
    crop = int(report_cfg.get("crop_size", 96))
    limit = int(report_cfg.get("max_images_in_grid", 6))
    grids = [g for d in run.datasets if (g := comparison_grid(run, d, crop, limit))["rows"]]
    return Section("Visual comparison", template="grid.html.j2", context={"grids": grids})


def default_sections(run: RunResults) -> list[Section]:
    """Overview, Results (Table 1), Models (tokenizer ceiling, bicubic and warnings, when the run has a model),
    Efficiency (Table 2, when ``efficiency.json`` exists), per image, grid."""
    pass  # imports this module

    efficiency = efficiency_section(run)
    facts = model_facts(run)
    return [
        overview_section(run),
        results_section(run),
        *(
            [Section(MODELS_TITLE, template=MODELS_TEMPLATE, context=models_context(facts), anchor="models")]
            if facts
            else []
        ),
        *([efficiency] if efficiency is not None else []),
        per_image_section(run),
        grid_section(run),
    ]


# ----------------------------------------------------------------------------------------------- page
def render_html(
    run: RunResults,
    sections: Sequence[Section],
    *,
    title: str | None = None,
    template_dirs: Sequence[str | Path] = (),
) -> str:
    env = template_env(template_dirs)
    report_cfg = run.config.get("report") or {}
    title = title or report_cfg.get("title") or f"{run.name}: benchmark report"
    rendered = [{"title": s.title, "anchor": s.anchor, "body": s.render(env)} for s in sections]
    return env.get_template("report.html.j2").render(
        title=title, alerts=alerts(run), sections=rendered, generated=run.meta.get("finished", "")
    )


def render_report(
    run_dir: str | Path,
    output: str | Path | None = None,
    *,
    extra_sections: Sequence[Section] = (),
    template_dirs: Sequence[str | Path] = (),
    title: str | None = None,
) -> Path:
    """Render ``run_dir`` to ``output`` (default ``run_dir/report.html``) atomically; return the path."""
    run = load_run(run_dir)
    html = render_html(run, [*default_sections(run), *extra_sections], title=title, template_dirs=template_dirs)
    path = Path(output) if output is not None else run.run_dir / "report.html"
    write_text(path, html)
    return path


# ----------------------------------------------------------------------------------------------- efficiency
COLUMNS = ("Method", "Params (M)", "Steps", "Time (s)", "IQR (s)", "Peak memory (MiB)", "Device")
REPORTED_MARK = "\u2020"  # dagger

_TEMPLATE = """\
<p class="caption">{{ caption }}</p>
<table class="efficiency">
  <thead><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
  <tbody>
  {% for r in rows %}
    <tr{% if r.reported %} class="reported"{% endif %}><td class="text">{{ r.method }}</td><td>{{ r.params }}</td>
      <td>{{ r.steps }}</td>
      {% if r.error %}<td colspan="3" class="text error" title="{{ r.error }}">not measured: {{ r.error }}</td>
      {% else %}<td>{{ r.time }}{% if r.reported %} {{ mark }}{% endif %}</td><td>{{ r.iqr }}</td>
      <td>{{ r.memory }}</td>{% endif %}
      <td class="text">{{ r.device }}</td></tr>
  {% endfor %}
  </tbody>
</table>
{% if any_reported %}<p class="caption">{{ mark }} reported: the median (IQR) of the per-image seconds in the
method's timings file, measured elsewhere (possibly other hardware and image sizes), not by this run.</p>{% endif %}
{% for t in throughput %}
<h3>Throughput: {{ t.method }}</h3>
<table class="throughput">
  <thead><tr><th>batch size</th><th>s / batch</th><th>s / image</th><th>images / s</th></tr></thead>
  <tbody>{% for r in t.rows %}<tr><td>{{ r.batch_size }}</td>
  {% if r.error %}<td colspan="3" class="text">{{ r.error }}</td>
  {% else %}<td>{{ r.seconds_per_batch | num }}</td><td>{{ r.seconds_per_image | num }}</td>
  <td>{{ r.images_per_second | num }}</td>{% endif %}</tr>{% endfor %}</tbody>
</table>
{% endfor %}
"""


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else float("nan")


def efficiency_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Numeric Table-2 rows from ``efficiency.json`` (NaN / None where unknown), methods in file order."""
    rows = []
    for name, entry in (data.get("methods") or {}).items():
        total = (entry.get("params") or {}).get("total")
        latency = entry.get("latency") or {}
        peak = entry.get("peak_memory_bytes")
        rows.append(
            {
                "Method": name,
                "Params (M)": total / 1e6 if total is not None else float("nan"),
                "Steps": entry.get("inference_steps"),
                "Time (s)": _num(latency.get("median")),
                "IQR (s)": _num(latency.get("iqr")),
                "Peak memory (MiB)": peak / 2**20 if peak is not None else float("nan"),
                "Device": entry.get("device", data.get("device")),
                "Source": entry.get("time_source", "unknown"),
                "Error": entry.get("error"),
            }
        )
    return rows


def caption(data: dict[str, Any]) -> str:
    """What the numbers mean: input size, batch, repeats, device and memory basis."""
    h, w = data.get("lr_size") or ("?", "?")
    out = data.get("output_size")
    size = f"LR {w}\u00d7{h}" + (f" \u2192 {out[1]}\u00d7{out[0]}" if out else "")
    text = (
        f"Batch 1, {size} (seeded random input), median and IQR of {data.get('repeats', '?')} timed calls "
        f"after {data.get('warmup', '?')} warm-up call(s) on {data.get('device', '?')} "
        f"({data.get('device_name', '?')}). Params counted once per tensor; unknown (\u2013) for methods "
        f"whose weights are not in this process."
    )
    if data.get("memory_basis"):
        text += f" Peak memory: {data['memory_basis']}."
    return text


def efficiency_context(data: dict[str, Any]) -> dict[str, Any]:
    """Template context: formatted rows, caption, throughput tables."""
    rows = []
    for row in efficiency_rows(data):
        steps = row["Steps"]
        rows.append(
            {
                "method": row["Method"],
                "params": format_value(row["Params (M)"]),
                "steps": str(steps) if steps is not None else "\u2013",
                "time": format_value(row["Time (s)"]),
                "iqr": format_value(row["IQR (s)"]),
                "memory": format_value(row["Peak memory (MiB)"]),
                "device": row["Device"] or "\u2013",
                "reported": row["Source"] == "reported",
                "error": row["Error"],
            }
        )
    throughput = [
        {"method": name, "rows": entry["throughput"]}
        for name, entry in (data.get("methods") or {}).items()
        if entry.get("throughput")
    ]
    return {
        "caption": caption(data),
        "columns": COLUMNS,
        "rows": rows,
        "mark": REPORTED_MARK,
        "any_reported": any(r["reported"] for r in rows),
        "throughput": throughput,
    }


def efficiency_section(run: RunResults) -> Section | None:
    """The "Efficiency" section, or None when the run has no ``efficiency.json``."""
    if not run.efficiency:
        return None
    html = template_env().from_string(_TEMPLATE).render(**efficiency_context(run.efficiency))
    return Section("Efficiency", html=html)


# ----------------------------------------------------------------------------------------------- exports
EXPORTS_DIR = "exports"  # RUN_DIR/exports/: table.{tex,md}, efficiency.{tex,md}


def _decimals(values: Sequence[float]) -> int:
    """Decimals a column of means is printed with: 2 for values of 10 and more (PSNR, FID), else 4 (SSIM, LPIPS)."""
    finite = [abs(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return 2 if finite and max(finite) >= 10 else 4


def results_frame(run: RunResults, *, ci: bool = False) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Table 1 of a run: a row per method, a column per (dataset, metric) with the mean (``DATASET METRIC``; the
    metric alone for a one-dataset run); with ``ci`` the 95% CI bounds as hidden ``... lo`` / ``... hi`` columns.
    Returns the frame and the ``reports.exports`` table options (bold_best, ci, precision). Latency is Table 2's."""
    datasets = [d for d in run.datasets if d in set(run.summary["dataset"])]
    stats = {(r.dataset, r.method, r.metric): r for r in run.summary.itertuples(index=False)}
    methods = [m for m in run.methods if m in set(run.summary["method"])]
    data: dict[str, list[Any]] = {"Method": methods}
    bold_best: dict[str, str] = {}
    ci_cols: dict[str, tuple[str, str]] = {}
    precision: dict[str, int] = {}
    for dataset in datasets:
        for metric in run.metrics:
            rows = [stats.get((dataset, m, metric)) for m in methods]
            if all(r is None for r in rows):
                continue
            col = metric if len(datasets) == 1 else f"{dataset} {metric}"
            data[col] = [r.mean if r is not None else float("nan") for r in rows]
            bold_best[col] = "lower" if run.lower_better(metric) else "higher"
            precision[col] = _decimals(data[col])
            if ci:
                low, high = f"{col} lo", f"{col} hi"
                data[low] = [r.ci_low if r is not None else float("nan") for r in rows]
                data[high] = [r.ci_high if r is not None else float("nan") for r in rows]
                ci_cols[col] = (low, high)
    return pd.DataFrame(data), {"bold_best": bold_best, "ci": ci_cols, "precision": precision}


def results_caption(run: RunResults, ci: bool) -> str:
    sizes = run.summary.groupby("dataset", sort=False)["n"].max()
    counts = ", ".join(f"{d}: {int(n)}" for d, n in sizes.items())
    spread = "; \u00b1 half the width of the 95% bootstrap CI" if ci else ""
    return (
        f"{run.name}: mean per image ({counts} images){spread}. "
        "Best in bold; \u2191 higher is better, \u2193 lower is better."
    )


EFFICIENCY_EXPORT = {
    "precision": {"Params (M)": 1, "Steps": 0, "Time (s)": 3, "IQR (s)": 3, "Peak memory (MiB)": 0},
    "bold_best": {"Params (M)": "lower", "Time (s)": "lower", "Peak memory (MiB)": "lower"},
}


def efficiency_frame(data: dict[str, Any]) -> pd.DataFrame:
    """Table 2 of a run (``efficiency.json``): Method, Params (M), Steps, Time (s), IQR (s), Peak memory (MiB),
    Device; a reported (not measured) time marks its method with a dagger."""
    rows = efficiency_rows(data)
    for row in rows:
        if row["Source"] == "reported":
            row["Method"] += REPORTED_MARK
        if row["Steps"] is None:
            row["Steps"] = float("nan")
    return pd.DataFrame(rows, columns=[*COLUMNS, "Source", "Error"]).drop(columns=["Source", "Error"])


def _label(name: str, table: str) -> str:
    return f"tab:{re.sub(r'[^A-Za-z0-9-]+', '-', name).strip('-') or 'run'}-{table}"


def write_exports(run_dir: str | Path, *, ci: bool = False, folder: str | Path | None = None) -> list[Path]:
    """Write Table 1 (``table.tex``, ``table.md``) and, when the run has ``efficiency.json``, Table 2
    (``efficiency.tex``, ``efficiency.md``) into ``folder`` (default ``RUN_DIR/exports``), atomically; returns
    the paths. ``ci``: mean +- half the 95% bootstrap CI in Table 1."""
    run = load_run(run_dir)
    out = Path(folder) if folder is not None else run.run_dir / EXPORTS_DIR
    tables = []
    frame, options = results_frame(run, ci=ci)
    if len(frame.columns) > 1:
        tables.append(("table", frame, results_caption(run, ci), options))
    if run.efficiency:
        tables.append(("efficiency", efficiency_frame(run.efficiency), caption(run.efficiency), EFFICIENCY_EXPORT))
    written = []
    for stem, df, text, opts in tables:
        tex = exports.to_latex(df, text, _label(run.name, stem), **opts)
        md = exports.to_markdown(df, text, **opts)
        for suffix, content in ((".tex", tex), (".md", md)):
            path = out / f"{stem}{suffix}"
            write_text(path, content)
            written.append(path)
    return written


def report_and_exports(
    run_dir: str | Path, *, output: str | Path | None = None, export_ci: bool = False
) -> tuple[Path, list[Path]]:
    """The report (``output``, default ``RUN_DIR/report.html``) and the exports (``RUN_DIR/exports/``), written
    as the run folder's one writer (its ``RunLock``) and recorded as the harness's files (stage ``report``: a
    new bench run replaces them). Files in ``exports/`` that the harness did not write stop it first."""
    from harness.core import runfolder
    from harness.core.runlock import RunLock

    run_dir = Path(run_dir)
    load_run(run_dir)  # the run exists (a missing one is an error, not a new folder)
    with RunLock(run_dir, "bench run folder"):
        found = runfolder.conflicts(run_dir, [EXPORTS_DIR])
        if found:
            raise runfolder.conflict_error(run_dir, found, "the exports")
        path = render_report(run_dir, output)
        tables = write_exports(run_dir, ci=export_ci)
        inside = [p for p in [path, *tables] if p.resolve().is_relative_to(run_dir.resolve())]
        runfolder.register(run_dir, inside, "report")
    return path, tables
