"""Paper figures for ablations (matplotlib ``Figure`` objects, no pyplot state; colour-blind-safe palette).

* ``lambda_curve``: metric vs a swept number (e.g. the HCC weight lambda) in its 95% CI band, per-seed means as
  dots (seaborn).
* ``distribution_figure``: per-image metric distributions per configuration, box + strip (seaborn).
* ``attention_distance_figure``: attention distance (all keys and within the query's scale), mass within r and
  mass per key group per query scale (e.g. SCA on/off), each against the uniform-attention baseline.
* ``accumulation_figure``: per-scale latent error, teacher-forced vs free-running (e.g. HCC on/off), and
  perturbation curves when present.
* ``sca_mask_panels``: structure maps and gates per scale (from ``harness.analysis.sca_masks``).
* ``image_grid``: images side by side, each with the same zoomed crop below it.

Every function takes long-format DataFrames (the schemas of ``harness.analysis`` and ``summary.csv``) and
returns a Figure built under ``paper_style()`` (7-8 pt fonts for a 3.25 in column). Save with ``save_figure``
(PDF, SVG and PNG at paper widths) or embed with ``png_bytes``.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from harness.analysis.sca_masks import sca_mask_panels
from reports.exports import FIGURE_RC, figure_width, save_figure

__all__ = [
    "accumulation_figure",
    "attention_distance_figure",
    "distribution_figure",
    "heatmap_panels",
    "image_grid",
    "lambda_curve",
    "paper_style",
    "png_bytes",
    "sca_mask_panels",
    "save_figure",
]

PAPER_RC = {
    **FIGURE_RC,
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 7,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "legend.fontsize": 6,
    "legend.frameon": False,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.0,
    "lines.markersize": 3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.linewidth": 0.3,
    "grid.alpha": 0.5,
}
MODE_STYLE = {"teacher_forced": "--", "free_running": "-", "perturbation": ":"}
MODE_LABEL = {
    "teacher_forced": "teacher-forced",
    "free_running": "free-running",
    "perturbation": "perturbation",
}


def paper_style():
    """Context manager with the paper rcParams (fonts, line widths, embedded TrueType fonts)."""
    return matplotlib.rc_context(PAPER_RC)


# seaborn's "colorblind" palette (Wong 2011), inlined: importing seaborn costs seconds for ten colours
COLORBLIND = (
    "#0173B2",
    "#DE8F05",
    "#029E73",
    "#D55E00",
    "#CC78BC",
    "#CA9161",
    "#FBAFE4",
    "#949494",
    "#ECE133",
    "#56B4E9",
)


def palette(n: int) -> list[str]:
    """``n`` colour-blind-safe colours (seaborn's 'colorblind', cycled)."""
    return [COLORBLIND[i % len(COLORBLIND)] for i in range(n)]


def png_bytes(fig: Figure, dpi: int = 150) -> bytes:
    """The figure as PNG bytes (for embedding in HTML)."""
    buffer = io.BytesIO()
    with matplotlib.rc_context(FIGURE_RC):
        fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {missing}; got {list(df.columns)}")
    if df.empty:
        raise ValueError(f"{what}: empty table")


# ----------------------------------------------------------------------------------------------- lambda curve
def _seaborn():
    """seaborn, imported when a statistical figure is drawn (it costs seconds; the other figures do without)."""
    import seaborn

    return seaborn


def _x_scale(ax: Any, values: Sequence[float]) -> None:
    """A symmetric-log x axis when the positive values span more than two decades (lambda 0, 0.003 ... 1)."""
    positive = sorted(v for v in values if v > 0)
    if len(positive) >= 2 and positive[-1] / positive[0] > 100:
        ax.set_xscale("symlog", linthresh=positive[0])


def lambda_curve(
    df: pd.DataFrame,
    x: str = "value",
    *,
    metric_col: str = "metric",
    mean: str = "mean",
    low: str = "ci_low",
    high: str = "ci_high",
    hue: str | None = None,
    lower_better: Mapping[str, bool] | None = None,
    x_label: str = "$\\lambda$",
    width: str | float = "text",
    points: pd.DataFrame | None = None,
) -> Figure:
    """One panel per metric: ``mean`` vs ``x`` (seaborn line with markers) in a [``low``, ``high``] CI band, one
    line per ``hue``; ``points`` (same columns, one row per seed) are drawn as dots: the per-seed means.

    ``df`` is long: one row per (x value, metric[, hue]). ``lower_better`` adds arrows to the panel titles. The
    lines are drawn in the order of the groups, one ``Line2D`` each, their points sorted by ``x``.
    """
    sns = _seaborn()
    _require(df, [x, metric_col, mean, low, high] + ([hue] if hue else []), "lambda_curve")
    metrics = list(dict.fromkeys(df[metric_col]))
    groups = list(dict.fromkeys(df[hue])) if hue else [None]
    colours = palette(len(groups))
    n = len(metrics)
    cols = min(n, 4)
    rows = -(-n // cols)
    w = figure_width(width)
    with paper_style():
        fig = Figure(figsize=(w, w / cols * 0.8 * rows + 0.3), layout="constrained")
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, metric in zip(axes, metrics):
            sub = df[df[metric_col] == metric]
            for colour, group in zip(colours, groups):
                part = sub if group is None else sub[sub[hue] == group]
                part = part.sort_values(x)
                if part.empty:
                    continue
                xs = part[x].astype(float).to_numpy()
                sns.lineplot(
                    x=xs, y=part[mean].to_numpy(float), ax=ax, color=colour, marker="o", markersize=3,
                    errorbar=None, label=None if group is None else str(group), legend=False,
                )  # fmt: skip
                lo, hi = part[low].to_numpy(float), part[high].to_numpy(float)
                if np.isfinite(lo).any():
                    ax.fill_between(xs, lo, hi, color=colour, alpha=0.2, linewidth=0)
                if points is not None and not points.empty:
                    dots = points[points[metric_col] == metric]
                    dots = dots if group is None else dots[dots[hue] == group]
                    if not dots.empty:
                        sns.scatterplot(
                            x=dots[x].astype(float).to_numpy(), y=dots[mean].to_numpy(float), ax=ax,
                            color=colour, s=6, alpha=0.6, linewidth=0, legend=False,
                        )  # fmt: skip
            _x_scale(ax, sub[x].astype(float).tolist())
            arrow = ""
            if lower_better and metric in lower_better:
                arrow = " ↓" if lower_better[metric] else " ↑"
            ax.set_title(f"{metric}{arrow}")
            ax.set_xlabel(x_label)
            ax.set_ylabel("")
        for ax in axes[n:]:
            ax.set_visible(False)
        if hue and len(groups) > 1:
            axes[0].legend(loc="best")
    return fig


def distribution_figure(
    df: pd.DataFrame,
    *,
    label: str = "config",
    metric_col: str = "metric",
    value: str = "value",
    hue: str | None = "seed",
    lower_better: Mapping[str, bool] | None = None,
    width: str | float = "text",
) -> Figure:
    """Per-image metric distributions: one panel per metric, a box per ``label`` (seaborn ``boxplot``, no
    fliers: every image is a dot) with the images as a strip (``stripplot``, coloured by ``hue``, e.g. the
    seed). ``df`` is long: one row per (label, metric, image[, hue]).
    """
    sns = _seaborn()
    _require(df, [label, metric_col, value] + ([hue] if hue else []), "distribution_figure")
    metrics = list(dict.fromkeys(df[metric_col]))
    order = list(dict.fromkeys(df[label].astype(str)))
    hues = list(dict.fromkeys(df[hue].astype(str))) if hue else []
    n = len(metrics)
    cols = min(n, 3)
    rows = -(-n // cols)
    w = figure_width(width)
    with paper_style():
        fig = Figure(figsize=(w, (w / cols) * 0.9 * rows + 0.3 * max(1, len(order) // 4)), layout="constrained")
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, metric in zip(axes, metrics):
            sub = df[df[metric_col] == metric].assign(**{label: lambda d: d[label].astype(str)})
            if hue:
                sub = sub.assign(**{hue: sub[hue].astype(str)})
            with warnings.catch_warnings():  # seaborn 0.13 passes boxplot's vert=, deprecated by matplotlib 3.11
                warnings.simplefilter("ignore", matplotlib.MatplotlibDeprecationWarning)
                sns.boxplot(data=sub, x=label, y=value, order=order, ax=ax, color="#DDDDDD", showfliers=False,
                            linewidth=0.6, width=0.6)  # fmt: skip
            sns.stripplot(
                data=sub, x=label, y=value, order=order, ax=ax, size=2.5, jitter=0.15,
                **({"hue": hue, "hue_order": hues, "palette": palette(len(hues))} if hue else {"color": COLORBLIND[0]}),
                legend=bool(hue) and ax is axes[0] and len(hues) > 1,
            )  # fmt: skip
            arrow = ""
            if lower_better and metric in lower_better:
                arrow = " ↓" if lower_better[metric] else " ↑"
            ax.set_title(f"{metric}{arrow}")
            ax.set_xlabel("")
            ax.set_ylabel("")
            ax.tick_params(axis="x", labelrotation=30 if len(order) > 3 else 0)
        for ax in axes[n:]:
            ax.set_visible(False)
    return fig


# -------------------------------------------------------------------------------------------------- attention
ATTENTION_PANELS = (
    ("mean_distance", "distance, all keys"),
    ("within_scale_distance", "distance, own scale"),
    ("mass_within_r", "mass within r"),
    ("mass_groups", "mass per key group"),
)
GROUP_STYLE = {"own": "-", "coarser": "--", "prefix": ":", "class": "-."}
UNIFORM_COLOUR = "0.55"


def attention_distance_figure(df: pd.DataFrame, *, hue: str = "model", width: str | float = "column") -> Figure:
    """Attention statistics per query scale, one colour per ``hue`` (e.g. SCA off/on), each panel with the
    uniform-attention baseline of the same geometry in grey: distance over all keys, distance within the query's
    own scale (renormalised), mass within r, and mass per key group (own scale, coarser scales, LR prefix,
    class token; one line style each).

    Values are averaged over heads, then over layers; error bars (first three panels) are the standard
    deviation over layers.
    """
    from harness.analysis.attention.stats import KEY_GROUPS, STATISTICS

    _require(df, ["layer", "head", "query_level", "query_scale", *STATISTICS], "attention_distance_figure")
    if hue not in df.columns:
        df = df.assign(**{hue: ""})
    uniform = [f"uniform_{c}" for c in STATISTICS if f"uniform_{c}" in df.columns]
    cols = list(STATISTICS)
    per_layer = df.groupby([hue, "query_level", "query_scale", "layer"], sort=True)[cols + uniform].mean().reset_index()
    stats = per_layer.groupby([hue, "query_level", "query_scale"], sort=True)[cols + uniform]
    agg = stats.mean().join(stats.std(ddof=0)[cols].add_suffix("_sd")).reset_index()
    levels = sorted(agg["query_level"].unique())
    labels = [agg.loc[agg["query_level"] == lv, "query_scale"].iloc[0] for lv in levels]
    models = list(dict.fromkeys(df[hue]))
    radius = float(df["radius"].iloc[0]) if "radius" in df.columns else None
    xs = np.arange(len(levels))
    w = figure_width(width)
    with paper_style():
        fig = Figure(
            figsize=(w, w * 0.9 + _legend_height(models + ["uniform"] + list(KEY_GROUPS))), layout="constrained"
        )
        axes = fig.subplots(2, 2).ravel()
        handles = []
        for colour, model in zip(palette(len(models)), models):
            part = agg[agg[hue] == model].set_index("query_level").reindex(levels)
            for ax, (col, _) in zip(axes[:3], ATTENTION_PANELS[:3]):
                bars = ax.errorbar(
                    xs, part[col], yerr=part[f"{col}_sd"].fillna(0), color=colour, marker="o", capsize=1.5
                )
                if f"uniform_{col}" in part.columns:
                    ax.plot(xs, part[f"uniform_{col}"], "--", color=UNIFORM_COLOUR, linewidth=0.8)
            for group, style in GROUP_STYLE.items():
                axes[3].plot(xs, part[f"mass_{group}"], style, color=colour, marker="o", markersize=2)
            handles.append(bars.lines[0])
        if "uniform_mass_own" in agg.columns:
            base = agg.drop_duplicates("query_level").set_index("query_level").reindex(levels)
            for group, style in GROUP_STYLE.items():
                axes[3].plot(xs, base[f"uniform_mass_{group}"], style, color=UNIFORM_COLOUR, linewidth=0.8)
        for ax, (_, title) in zip(axes, ATTENTION_PANELS):
            ax.set_xticks(xs, labels, rotation=60, ha="right")
            ax.set_title(title if title != "mass within r" or radius is None else f"mass within r = {radius:g}")
        for ax in axes[2:]:
            ax.set_xlabel("query scale")
        axes[0].set_ylabel("attention distance")
        axes[2].set_ylabel("attention mass")
        legend_handles = list(handles) + [Line2D([], [], color=UNIFORM_COLOUR, linestyle="--")]
        legend_labels = [str(m) or "model" for m in models] + ["uniform attention (same keys)"]
        legend_handles += [Line2D([], [], color="0.3", linestyle=st) for st in GROUP_STYLE.values()]
        legend_labels += [f"mass: {g if g != 'own' else 'own scale'}" for g in GROUP_STYLE]
        _legend_below(fig, legend_handles, legend_labels)
    return fig


def _legend_height(labels: Sequence[object]) -> float:
    """Extra figure height (inches) for a legend below the axes, one entry per line (or two per line)."""
    n = len(labels)
    if n <= 1 and not any(str(v) for v in labels):
        return 0.0
    per_row = 2 if max(len(str(v)) for v in labels) <= 28 else 1
    return 0.12 * -(-n // per_row) + 0.05


def _legend_below(fig: Figure, handles: list, labels: list[str]) -> None:
    per_row = 2 if max(len(v) for v in labels) <= 28 else 1
    fig.legend(handles, labels, loc="outside lower center", ncols=per_row)


def heatmap_panels(
    maps: Mapping[str, torch.Tensor | np.ndarray],
    *,
    title: str = "",
    cmap: str = "viridis",
    width: str | float = "text",
) -> Figure:
    """One panel per labelled 2-D map (e.g. ``key_scale_attention_map`` for every key scale), each with its
    own colour scale, drawn on the unit square so grids of different sizes line up."""
    if not maps:
        raise ValueError("heatmap_panels: no maps")
    arrays = {}
    for label, m in maps.items():
        a = m.detach().double().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m, dtype=np.float64)
        if a.ndim != 2:
            raise ValueError(f"heatmap_panels: map {label!r} must be 2-D, got shape {a.shape}")
        arrays[label] = a
    n = len(arrays)
    w = figure_width(width)
    with paper_style():
        fig = Figure(figsize=(w, w / n * 1.25 + (0.2 if title else 0.0)), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, n))
        for ax, (label, a) in zip(axes, arrays.items()):
            art = ax.imshow(a, cmap=cmap, interpolation="nearest", extent=(0, 1, 1, 0))
            ax.set_title(label)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            fig.colorbar(art, ax=ax, orientation="horizontal", shrink=0.9, pad=0.03).ax.tick_params(labelsize=5)
        if title:
            fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------------------------- accumulation
def accumulation_figure(
    df: pd.DataFrame, *, hue: str = "model", width: str | float = "column", log: bool = True
) -> Figure:
    """Per-scale error curves: teacher-forced (dashed) vs free-running (solid) per ``hue``; a second panel
    with the perturbation curves (one marker per injected scale) when the table has any."""
    _require(df, ["mode", "scale_index", "scale", "error"], "accumulation_figure")
    if hue not in df.columns:
        df = df.assign(**{hue: ""})
    models = list(dict.fromkeys(df[hue]))
    colours = dict(zip(models, palette(len(models))))
    pert = df[df["mode"] == "perturbation"]
    panels = [("accumulated error", df[df["mode"] != "perturbation"])]
    if not pert.empty:
        panels.append(("after a perturbation", pert))
    panels = [(t, p) for t, p in panels if not p.empty]
    ticks = df.drop_duplicates("scale_index").sort_values("scale_index")
    markers = "osD^v<>ph*"
    metric = str(df["metric"].iloc[0]) if "metric" in df.columns else "error"
    w = figure_width(width)
    injected = sorted(int(j) for j in pert["injected_scale"].dropna().unique()) if not pert.empty else []
    with paper_style():
        legend_rows = [str(m) for m in models] + [MODE_LABEL[m] for m in MODE_STYLE if m in set(df["mode"])]
        fig = Figure(figsize=(w, w * 0.55 + _legend_height(legend_rows)), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(panels)))
        for ax, (title, part) in zip(axes, panels):
            keys = ["mode", hue] + (["injected_scale"] if title.startswith("after") else [])
            for key, curve in part.groupby(keys, sort=False, dropna=False):
                mode, model = key[0], key[1]
                curve = curve.sort_values("scale_index")
                marker = markers[int(key[2]) % len(markers)] if mode == "perturbation" else "o"
                ys = curve["error"].to_numpy(dtype=float)
                if log:
                    ys = np.where(ys > 0, ys, np.nan)
                ax.plot(curve["scale_index"], ys, MODE_STYLE[mode], color=colours[model], marker=marker)
            if log:
                ax.set_yscale("log")
            ax.set_xticks(ticks["scale_index"], ticks["scale"], rotation=60, ha="right")
            ax.set_xlabel("scale")
            ax.set_ylabel(metric)
            ax.set_title(title)
        handles = [Line2D([], [], color=colours[m], marker="o") for m in models]
        handles += [Line2D([], [], color="0.4", linestyle=MODE_STYLE[m]) for m in MODE_STYLE if m in set(df["mode"])]
        labels = [str(m) for m in models] + [MODE_LABEL[m] for m in MODE_STYLE if m in set(df["mode"])]
        if injected:
            handles += [Line2D([], [], color="0.4", linestyle="", marker=markers[j % len(markers)]) for j in injected]
            labels += [f"perturbed at scale {ticks.set_index('scale_index')['scale'].get(j, j)}" for j in injected]
        keep = [(h, lab) for h, lab in zip(handles, labels) if lab]
        _legend_below(fig, [h for h, _ in keep], [lab for _, lab in keep])
    return fig


# ------------------------------------------------------------------------------------------------- image grid
def _as_hwc(img: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(img, torch.Tensor):
        arr = img.detach().float().cpu().numpy()
        if arr.ndim == 3 and arr.shape[0] in (1, 3):
            arr = np.moveaxis(arr, 0, -1)
    else:
        arr = np.asarray(img)
        arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"image_grid: expected (3, H, W) tensors or (H, W, 3) arrays, got shape {arr.shape}")
    return np.clip(arr if arr.shape[-1] == 3 else np.repeat(arr, 3, -1), 0.0, 1.0)


def image_grid(
    images: Mapping[str, torch.Tensor | np.ndarray],
    box: tuple[int, int, int] | None = None,
    *,
    width: str | float = "text",
    box_colour: str = "#ff2828",
) -> Figure:
    """Columns = labelled images; with ``box`` = (top, left, size) in the pixels of the largest image, a
    second row shows that region enlarged (nearest) in every column (scaled to each image's own size)."""
    if not images:
        raise ValueError("image_grid: no images")
    arrays = {label: _as_hwc(img) for label, img in images.items()}
    ref_h = max(a.shape[0] for a in arrays.values())
    n = len(arrays)
    rows = 2 if box is not None else 1
    w = figure_width(width)
    with paper_style():
        fig = Figure(figsize=(w, w / n * rows + 0.25), layout="constrained")
        axes = fig.subplots(rows, n, squeeze=False)
        for col, (label, arr) in enumerate(arrays.items()):
            ax = axes[0, col]
            ax.imshow(arr, interpolation="nearest")
            ax.set_title(label)
            if box is not None:
                f = arr.shape[0] / ref_h
                y, x, s = (round(v * f) for v in box)
                s = max(1, s)
                ax.add_patch(Rectangle((x - 0.5, y - 0.5), s, s, fill=False, edgecolor=box_colour, linewidth=0.8))
                axes[1, col].imshow(arr[y : y + s, x : x + s], interpolation="nearest")
            for a in axes[:, col]:
                a.set_xticks([])
                a.set_yticks([])
                a.grid(False)
    return fig
