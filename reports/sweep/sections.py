"""The sections of the sweep page, each drawn by ``templates/sweep.html.j2``, in page order: results (ablation,
baselines, on vs off, lambda curves, per-image distributions), models (tokenizer ceiling, bicubic, warnings),
training signals (HCC share, gate statistics), attention distance, error
accumulation, SCA gate statistics and panels, failed and unfinished cells, exports. Every table and figure shown
is also written to ``exports/`` by an ``Exporter``.

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
from reports.sweep.curves import analysis_frame, distribution_frame, identical_note, lambda_frame, seed_points
from reports.sweep.keys import cell_label, numeric_keys, short_names, swept_keys, truthy, varying_keys
from reports.sweep.tables import ablation_frame, auto_precision, baseline_frame, constant_methods


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
def result_sections(sweep_dir: Path, cells: list[SweepCell], out: Exporter, options: Any = None) -> list[Section]:
    """'Ablation', then 'Baselines', 'Component on vs off' and a curve per numeric swept key (at most three);
    nothing when no cell has results."""
    table, bold_best, ci = ablation_frame(cells)
    if table.empty:
        return []
    n_done = sum(c.summary is not None for c in cells)
    precision = {c: auto_precision(table[c]) for c in table.columns if c in bold_best or c in ci}
    seeded = "seeds" in table.columns
    if seeded:
        caption = (
            f"Ablation {sweep_dir.name}: per configuration, the mean over its seeds of the per-seed means with "
            "the 95% t-interval across seeds (one seed: the mean over images with its 95% bootstrap CI); "
            "per seed: the per-seed means; best in bold."
        )
    else:
        caption = f"Ablation {sweep_dir.name}: mean over images with 95% bootstrap CI; best in bold."
    out.table("ablation", table, caption, bold_best, ci, precision)
    detail = (
        "Mean ± half-width of the 95% CI: across seeds (Student t over the per-seed means: training and sampling "
        "variance) for configurations run at several seeds, over images (bootstrap) at one seed; 'per seed' "
        "lists the per-seed means in the order of 'seeds'"
        if seeded
        else "Mean ± half-width of the 95% bootstrap CI over images"
    )
    sections = [
        _section(
            "Ablation",
            part="table",
            table=_table_context(table, bold_best, ci, precision),
            caption=f"{n_done} of {len(cells)} cells have results. {detail}; the best value per column is bold "
            "(compared as displayed).",
        )
    ]
    return (
        sections
        + baseline_and_comparison_sections(cells, out, options)
        + curve_sections(cells, out)
        + distribution_sections(cells, out)
    )


def baseline_and_comparison_sections(cells: list[SweepCell], out: Exporter, options: Any = None) -> list[Section]:
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
    from harness.core.stats import StatisticsOptions

    opts = options or StatisticsOptions()
    cmp = comparison_frame(cells, opts)
    if not cmp.empty:
        ci = {DIFF: (f"{DIFF} lo", f"{DIFF} hi")} if f"{DIFF} lo" in cmp.columns else {}
        precision = {"off": 3, "on": 3, DIFF: 4, "p": 4, "p (Holm)": 4, "n": 0}
        test = (
            "two-sided paired sign-flip permutation test (exact for n <= 16)"
            if opts.test == "permutation"
            else "two-sided Wilcoxon signed-rank test"
        )
        level = f"{100 * opts.confidence:g}%"
        caption = (
            "SCA / HCC on vs off: each configuration with the component on against the one with it off "
            "(hcc.lambda 0, sca.mask_input none) and the same other settings, seed by seed. on - off: mean "
            f"difference with its {level} bootstrap CI (±); p: {test} over the images both cells evaluated "
            "(level 'images' / 'seed S', n = images) or over the per-seed means (level 'across K seeds', n = "
            "seeds: the test of the configuration, training variance included; its p cannot go below 2 / 2^K, so "
            f"a verdict across seeds needs K >= 6 at alpha 0.05); p (Holm): Holm-adjusted over every row of this "
            f"table. verdict: better / worse only when p (Holm) < {opts.alpha:g} and the CI reaches the metric's "
            "minimum effect (docs/STATISTICS.md), else no detectable difference."
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


def _stem(prefix: str, text: str) -> str:
    """A figure's file stem: ``prefix_`` + ``text`` with every non-alphanumeric character as ``_``."""
    return f"{prefix}_" + "".join(ch if ch.isalnum() else "_" for ch in text)


def curve_sections(cells: list[SweepCell], out: Exporter) -> list[Section]:
    """A metrics-vs-value figure for each of the first three ``numeric_keys`` of the cells with results."""
    sections = []
    for key in numeric_keys([c for c in cells if c.summary is not None])[:3]:
        long = lambda_frame(cells, key)
        points = seed_points(cells, key)
        seeded = bool((long["seeds"] > 1).any())
        lower = {m: bool(v) for m, v in long.groupby("metric")["lower_better"].first().items() if v is not None}
        fig = figures.lambda_curve(
            long,
            "value",
            hue="group" if long["group"].str.len().any() else None,
            lower_better=lower,
            x_label=short_names(swept_keys(cells))[key],
            points=points if seeded else None,
        )
        stem = _stem("curve", key)
        band = (
            "line: mean over seeds of the per-seed means, band: 95% t-interval across seeds, dots: the per-seed "
            "means (the Ablation table's numbers)"
            if seeded
            else "band: 95% bootstrap CI over images"
        )
        sections.append(
            _section(
                f"Curve over {key}",
                part="figure",
                src=out.figure(stem, fig, "text"),
                max_width=1000,
                caption=f"Metrics vs {key} ({band}).",
            )
        )
    return sections


def distribution_sections(cells: list[SweepCell], out: Exporter) -> list[Section]:
    """'Per-image distributions': per dataset, each configuration's per-image metric values (box + strip, the
    seeds in colour) of its models (the constant baselines left out)."""
    long = distribution_frame(cells, set(constant_methods(cells)))
    if long.empty:
        return []
    sections = []
    multi_method = long["method"].nunique() > 1
    directions = {}
    for cell in cells:
        if cell.summary is not None:
            for metric, v in cell.summary.groupby("metric")["lower_better"].first().items():
                if not pd.isna(v):
                    directions[metric] = truthy(v)
    for dataset, part in long.groupby("dataset", sort=False):
        if multi_method:
            part = part.assign(config=part["config"] + " / " + part["method"])
        seeded = part["seed"].notna().any()
        fig = figures.distribution_figure(
            part.assign(seed=part["seed"].astype("Int64")) if seeded else part,
            hue="seed" if seeded else None,
            lower_better=directions,
        )
        stem = _stem("distribution", str(dataset))
        sections.append(
            _section(
                f"Per-image distributions: {dataset}",
                part="figure",
                src=out.figure(stem, fig, "text"),
                max_width=1000,
                caption="Per-image metric values of each configuration: box (quartiles, whiskers 1.5 IQR) and every "
                "image as a dot" + (", coloured by seed." if seeded else "."),
            )
        )
    return sections


# ----------------------------------------------------------------------------------------------------- models
def sweep_model_facts(cells: list[SweepCell]) -> list[Any]:
    """Per configuration, model (method with a tokenizer ceiling) and dataset, ``reports.honesty.ModelFacts``
    over its seeds: means across the seeds of PSNR-Y, ceiling, bicubic, gate mean and HCC share; the fewest
    images any seed was evaluated on; the number of seeds."""
    import yaml

    from harness.bench.ceiling import read_ceilings
    from reports.honesty import ModelFacts, run_facts
    from reports.sweep.seeds import config_groups, config_keys

    def mean(values: list) -> float | None:
        known = [v for v in values if v is not None and not pd.isna(v)]
        return float(sum(known) / len(known)) if known else None

    done = [c for c in cells if c.summary is not None and not c.summary.empty and c.run_dir is not None]
    keys = [k for k in varying_keys(done) if k in config_keys(done)]
    short = short_names(swept_keys(done))
    out = []
    for group in config_groups(done):
        per_cell = []
        for cell in group:
            path = cell.run_dir / "config.yaml"
            config = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
            ceilings = read_ceilings(cell.run_dir)
            per_cell.append(run_facts(cell.run_dir, config or {}, cell.summary, ceilings, n_seeds=1, gates=cell.gates))
        label = cell_label(group[0], keys, short) if keys else ""
        merged: dict[tuple[str, str], list] = {}
        for facts in per_cell:
            for f in facts:
                merged.setdefault((f.model, f.dataset), []).append(f)
        for (model, dataset), fs in merged.items():
            images = [f.n_images for f in fs if f.n_images is not None]
            out.append(
                ModelFacts(
                    model=f"{label} / {model}" if label else model,
                    dataset=dataset,
                    psnr_y=mean([f.psnr_y for f in fs]),
                    ceiling=mean([f.ceiling for f in fs]),
                    bicubic=mean([f.bicubic for f in fs]),
                    n_images=min(images) if images else None,
                    n_seeds=len(group),
                    gate_mean=mean([f.gate_mean for f in fs]),
                    hcc_share=mean([f.hcc_share for f in fs]),
                )
            )
    return out


def model_sections(facts: list[Any]) -> list[Section]:
    """'Models: tokenizer ceiling, bicubic, warnings' when the sweep's cells benchmarked a model."""
    from reports.honesty import MODELS_TEMPLATE, MODELS_TITLE, models_context

    if not facts:
        return []
    return [Section(MODELS_TITLE, template=MODELS_TEMPLATE, context=models_context(facts), anchor="models")]


# --------------------------------------------------------------------------------------------------- analysis
ATTENTION_TABLE = {
    "mean_distance": "distance (all keys)",
    "within_scale_distance": "distance (own scale)",
    "mass_own": "mass: own scale",
    "mass_coarser": "mass: coarser",
    "mass_prefix": "mass: LR prefix",
    "mass_class": "mass: class",
}
UNIFORM_MODEL = "uniform attention"


def attention_frame(attention: pd.DataFrame) -> pd.DataFrame:
    """Per query scale and model (mean over layers and heads): the distances and key-group masses of
    ``ATTENTION_TABLE``, with one extra row per scale for uniform attention over the same visible keys (the
    baseline; the mean of the cells' baselines, equal when they analysed the same images)."""
    cols = [c for c in ATTENTION_TABLE if c in attention.columns]
    keys = ["query_level", "query_scale"]
    models = attention.groupby([*keys, "model"], sort=True)[cols].mean().reset_index()
    uniform = [f"uniform_{c}" for c in cols if f"uniform_{c}" in attention.columns]
    parts = [models]
    if len(uniform) == len(cols):
        base = attention.groupby(keys, sort=True)[uniform].mean().reset_index()
        parts.append(base.rename(columns=dict(zip(uniform, cols))).assign(model=UNIFORM_MODEL))
    wide = pd.concat(parts, ignore_index=True)
    wide = wide.assign(_uniform=wide["model"] == UNIFORM_MODEL).sort_values(["query_level", "_uniform"], kind="stable")
    wide = wide.drop(columns="_uniform")
    return wide.drop(columns="query_level").rename(columns={"query_scale": "scale", **ATTENTION_TABLE})


def attention_sections(cells: list[SweepCell], out: Exporter) -> list[Section]:
    """'Attention distance' (figure + per-scale table over the cells' models, with the uniform-attention
    baseline in both) when cells saved attention.csv."""
    attention = analysis_frame(cells, "attention")
    if attention is None:
        return []
    fig = figures.attention_distance_figure(attention, hue="model")
    wide = attention_frame(attention)
    out.table(
        "attention_distance",
        wide,
        "Attention per query scale (mean over layers and heads): distance over all keys and within the query's "
        "own scale (fraction of the image side), attention mass per key group; 'uniform attention' rows: the "
        "same statistics for uniform attention over the keys each query can see.",
        {},
        {},
        3,
    )
    caption = (
        "Attention per query scale: distance over all visible keys, distance within the query's own scale "
        "(probabilities renormalised there: local bias shows here, not in the all-keys mean, which the LR prefix, "
        "the class token at the image centre and whole-image coarse tokens inflate), mass within the radius and "
        "mass per key group; grey: uniform attention over the same keys. Mean over heads, error bars: s.d. over "
        "layers."
    )
    return [
        _figure_section("Attention distance", out, "attention_distance", fig, _table_context(wide, {}, {}, 3), caption)
    ]


# ------------------------------------------------------------------------------------------- gates, training
TRAINING_COLUMNS = {
    "step": "step",
    "ce": "CE",
    "hcc": "HCC",
    "hcc_grad_ratio": "|dHCC|/|dCE|",
    "hcc_share": "HCC share",
    "gate_mean": "gate mean",
    "gate_std": "gate s.d.",
    "gate_open": "gate > 0.5",
}


def training_frame(cells: list[SweepCell]) -> pd.DataFrame:
    """One row per cell with a training log: the first and the last logged gradient-measuring step's CE, HCC,
    HCC gradient ratio and share (lambda x ratio) and gate statistics (mean over the last 5 such rows, to
    damp the per-batch noise), plus the first logged gate mean (near the initialisation)."""
    keys = varying_keys(cells)
    short = short_names(swept_keys(cells))
    rows = []
    for cell in cells:
        log = cell.training
        if log is None or log.empty:
            continue
        measured = log.dropna(subset=["hcc_grad_ratio"]) if "hcc_grad_ratio" in log.columns else log
        tail = measured.tail(5)
        row: dict[str, Any] = {"cell": cell_label(cell, keys, short)}
        for col, name in TRAINING_COLUMNS.items():
            if col in tail.columns:
                row[name] = int(tail[col].iloc[-1]) if col == "step" else float(tail[col].mean())
        if "gate_mean" in measured.columns and not measured.empty:
            row["gate mean (first log)"] = float(measured["gate_mean"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def training_sections(cells: list[SweepCell], out: Exporter) -> list[Section]:
    """'Training signals': HCC's gradient share and the SCA gate statistics from every cell's train log."""
    table = training_frame(cells)
    if table.empty:
        return []
    caption = (
        "From each cell's train/metrics.csv, mean of the last 5 logged steps (step: the last): CE and HCC (HCC is "
        "logged at lambda 0 too), |dHCC/dlogits| / |dCE/dlogits| and HCC's gradient share = lambda x that ratio "
        "(1 = HCC pulls on the logits as hard as CE), and the SCA gate's mean, s.d. and fraction above 0.5 over "
        "all gated tokens, with its mean at the first logged step (the initialisation is sca.init_bias)."
    )
    precision = {c: 4 for c in table.columns if c not in ("cell", "step")}
    out.table("training", table, caption, {}, {}, precision, arrows=False)
    return [
        _section(
            "Training signals", part="table", table=_table_context(table, {}, {}, precision, False), caption=caption
        )
    ]


def gate_sections(cells: list[SweepCell], out: Exporter) -> list[Section]:
    """'SCA gate statistics': per cell and gated scale, the gate of the analysed free-running generations."""
    keys = varying_keys(cells)
    short = short_names(swept_keys(cells))
    frames = [c.gates.assign(model=cell_label(c, keys, short)) for c in cells if c.gates is not None]
    if not frames:
        return []
    table = pd.concat(frames, ignore_index=True)[["model", "scale", "gate_mean", "gate_std", "gate_open", "n_tokens"]]
    table = table.rename(columns={"model": "cell", "gate_mean": "mean", "gate_std": "s.d.", "gate_open": "> 0.5"})
    caption = (
        "SCA gate m per gated scale on the analysed images (free-running generation, the gates inference used): "
        "mean, s.d. and fraction of tokens with m > 0.5; tokens are scaled by 1 + m."
    )
    precision = {"mean": 4, "s.d.": 4, "> 0.5": 3, "n_tokens": 0}
    out.table("sca_gates", table, caption, {}, {}, precision, arrows=False)
    return [
        _section(
            "SCA gate statistics", part="table", table=_table_context(table, {}, {}, precision, False), caption=caption
        )
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
