"""The ``analyze`` stage of a run or sweep cell: the three AlignVAR diagnoses on the trained model.

``run_analysis(cfg, run_dir, checkpoint)`` runs, on the first few images of the experiment's first dataset:

* attention distance per layer, head and query scale (free-running generation) -> ``analysis/attention.csv``;
* error accumulation per scale: teacher-forced, free-running and after corrupting a fraction of the tokens of
  a coarse scale -> ``analysis/accumulation.csv``; needs HR images (skipped, and said so in the result,
  without them);
* SCA structure maps and gates per scale -> ``analysis/sca_masks_<image>.png`` and the gates' statistics
  (mean, std, fraction > 0.5 per scale) -> ``analysis/sca_gates.csv`` (skipped, and said so, for a model with
  SCA off).

All three come from one recorded free-running generation per image (``probes.probe_image``). The knobs
(images, query sample, radius, perturbed scales, ...) are the experiment's ``analysis:`` block
(``AnalysisOptions``, ``harness.config.experiment``). Per-cell figures of the first two are optional
(``analysis.figures``): the sweep report draws the cells side by side from the CSVs, and ``run.py analyze
plot`` draws any set of runs.

``reports.sweep`` reads the two CSVs of every cell and draws them side by side. Which model: the method whose
``checkpoint`` is ``@trained`` (resolved to ``checkpoint``), so the analysis uses exactly the evaluation
settings of the bench stage; without one, the checkpoint itself (``AlignVAR.from_pretrained``, settings from
its metadata); without a checkpoint, the experiment's first VAR-style method. The writers
(``write_attention``, ``write_accumulation``, ``write_sca_masks``) are shared with ``run.py analyze``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.analysis import probes
from harness.config.experiment import AnalysisOptions

VAR_METHOD_TYPES = ("alignvar", "varsr")


# ---------------------------------------------------------------------------------------------------- writers
def write_attention(
    frames: Sequence[Any],
    heatmaps: Sequence[Mapping[str, Any]],
    out: Path,
    model: str,
    *,
    figures: bool = True,
) -> Path:
    """``out/attention.csv`` (per-image tables aggregated) and, with ``figures``, the distance figure and the
    mean key-scale heatmaps (when the images share a size). Returns the CSV path."""
    from harness.analysis.attention.tables import write_attention_csv

    table = probes.attention_table(frames, model)
    path = write_attention_csv(table, Path(out) / "attention.csv")
    if figures:
        from reports import figures as figs

        figs.save_figure(figs.attention_distance_figure(table), Path(out) / "attention_distance", "column")
        mean = probes.mean_heatmaps(heatmaps)
        if mean:
            fig = figs.heatmap_panels(mean, title="attention of the finest scale's queries to each key scale")
            figs.save_figure(fig, Path(out) / "attention_heatmaps", "text")
    return path


def write_accumulation(results: Sequence[Any], out: Path, *, figures: bool = True) -> Path:
    """``out/accumulation.csv`` (curves averaged over images) and, with ``figures``, its figure."""
    from harness.analysis.accumulation import write_accumulation_csv

    table = probes.accumulation_table(results)
    path = write_accumulation_csv(table, Path(out) / "accumulation.csv")
    if figures:
        from reports import figures as figs

        figs.save_figure(figs.accumulation_figure(table), Path(out) / "accumulation", "column")
    return path


def write_sca_gates(rows: Sequence[dict], out: Path, model: str) -> Path:
    """``out/sca_gates.csv`` (``probes.GATE_COLUMNS``: per-image gate rows averaged over images)."""
    from harness.core.atomic import atomic_path

    path = Path(out) / "sca_gates.csv"
    with atomic_path(path) as tmp:
        probes.gate_table(rows, model).to_csv(tmp, index=False)
    return path


def read_sca_gates(path: str | Path) -> Any:
    """Read ``analysis/sca_gates.csv``; a missing column raises ValueError naming the file."""
    import pandas as pd

    df = pd.read_csv(path, dtype={"scale": str, "model": str})
    missing = [c for c in probes.GATE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not an SCA gate table, missing columns {missing}")
    return df


def write_sca_masks(fig: Any, out: Path, key: str, formats: Sequence[str] = ("pdf", "svg", "png")) -> Path:
    """``out/sca_masks_<key>.<format>`` for each of ``formats`` (must include png); returns the PNG path."""
    from harness.bench.layout import safe_name
    from reports import figures as figs

    if "png" not in formats:
        raise ValueError(f"write_sca_masks: formats must include 'png', got {list(formats)}")
    paths = figs.save_figure(fig, Path(out) / f"sca_masks_{safe_name(key)}", "text", formats=tuple(formats))
    return next(p for p in paths if p.suffix == ".png")


# ---------------------------------------------------------------------------------------------- the model
def _is_var(spec: Any) -> bool:
    return spec.type in VAR_METHOD_TYPES


def build_for_analysis(spec: Any) -> Any:
    """Build a method (a ``ComponentSpec``) with every weight the probes read. A method config with an
    ``inference_only`` switch (it frees the VQ-VAE encoder and AdaLN projections that teacher-forced
    accumulation needs, without changing ``upscale``'s outputs) is built with it off."""
    options = spec.options
    if dataclasses.is_dataclass(options) and "inference_only" in {f.name for f in dataclasses.fields(options)}:
        spec = dataclasses.replace(spec, options=dataclasses.replace(options, inference_only=False))
    return spec.create()


def analysed_model(cfg: Any, checkpoint: str | Path | None) -> tuple[Any, str, Any]:
    """(AlignVAR model, name, closer) for the analysis; see the module docstring for the choice."""
    from harness.training.stage import resolve_trained, uses_trained

    if uses_trained(cfg):
        resolved = resolve_trained(cfg, Path(checkpoint) if checkpoint else None)
        spec = next(r for s, r in zip(cfg.methods, resolved.methods) if s.options != r.options)
    elif checkpoint is not None:
        from methods.alignvar.model import AlignVAR

        return AlignVAR.from_pretrained(checkpoint).eval(), Path(checkpoint).stem, None
    else:
        spec = next((s for s in cfg.methods if _is_var(s)), None)
        if spec is None:
            names = ", ".join(f"{s.name} ({s.type})" for s in cfg.methods) or "none"
            raise ValueError(
                f"{cfg.source}: the analyze stage needs a VAR-style method (type: alignvar or varsr) or a "
                f"trained checkpoint; methods: {names}"
            )
    method = build_for_analysis(spec)
    return probes.var_model(method, spec.name), spec.name, method


# ---------------------------------------------------------------------------------------------- the stage
def run_analysis(
    cfg: Any,
    run_dir: str | Path,
    checkpoint: str | Path | None = None,
    options: AnalysisOptions | None = None,
    *,
    progress: bool = False,
) -> dict:
    """Run the three analyses (module docstring) into ``run_dir/analysis`` with ``options`` (default: the
    config's ``analysis:`` block); returns a small JSON-able summary (for the sweep's ``sweep.json``): files
    written, images used, headline numbers and what was skipped. ``progress``: a progress bar per image."""
    from harness.core.device import resolve_device
    from harness.core.progress import progress as progress_bar

    opts = options or cfg.analysis
    if not cfg.datasets:
        raise ValueError(f"{cfg.source}: datasets: empty; the analyze stage runs on the first dataset")
    d_spec = cfg.datasets[0]
    dataset = d_spec.create()
    model, name, closer = analysed_model(cfg, checkpoint)
    model = model.to(resolve_device(opts.device or cfg.bench.device)).eval()
    run_dir = Path(run_dir)
    out = run_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("sca_masks_*"):  # per-image files of an earlier analysis (maybe other images)
        stale.unlink()
    n = min(opts.max_images, len(dataset))
    frames, heatmaps, curves, masks, gates = [], [], [], [], []
    try:
        for i in progress_bar(range(n), desc=f"analyze {name}", unit="img", enabled=progress):
            sample = dataset[i]
            probe = probes.probe_image(
                model,
                sample.lr,
                sample.hr,
                name,
                query_sample=opts.query_sample,
                radius=opts.radius,
                alignment=opts.alignment,
                perturb_scales=opts.perturb_scales,
                perturb_fraction=opts.perturb_fraction,
                sca_figure=i < opts.sca_mask_images,
            )
            frames.append(probe.attention)
            heatmaps.append(probe.heatmaps)
            curves += probe.curves
            gates += probe.gates or []
            if probe.sca_figure is not None:
                masks.append(write_sca_masks(probe.sca_figure, out, sample.key, formats=("png",)))
    finally:
        if closer is not None:
            closer.close()
    skipped: dict[str, str] = {}
    files = [write_attention(frames, heatmaps, out, name, figures=opts.figures)]
    if curves:
        files.append(write_accumulation(curves, out, figures=opts.figures))
    else:
        skipped["accumulation"] = f"dataset {d_spec.name!r} has no HR images"
    if model.sca is None:
        skipped["sca_masks"] = "SCA off (sca: none): no gates"
    else:
        files.append(write_sca_gates(gates, out, name))
    files += masks
    return {
        "dir": "analysis",
        "method": name,
        "dataset": d_spec.name,
        "images": n,
        "files": [p.relative_to(run_dir).as_posix() if p.is_relative_to(run_dir) else str(p) for p in files],
        **headline(frames, curves, gates),
        **({"skipped": skipped} if skipped else {}),
    }


def headline(frames: Sequence[Any], curves: Sequence[Any], gates: Sequence[dict] = ()) -> dict[str, float]:
    """A few numbers for sweep.json / cells.csv: the finest scale's mean and within-scale attention distance
    with their uniform-attention baselines, its teacher-forced and free-running latent error, and the SCA
    gate's mean over all gated scales (means over images)."""
    out: dict[str, float] = {}
    if frames:
        table = probes.attention_table(frames, "")
        finest = table[table["query_level"] == table["query_level"].max()]
        for col in ("mean_distance", "within_scale_distance"):
            short = col.removesuffix("_distance")
            out[f"attention_{short}_distance_finest"] = round(float(finest[col].mean()), 6)
            out[f"uniform_{short}_distance_finest"] = round(float(finest[f"uniform_{col}"].mean()), 6)
    if curves:
        table = probes.accumulation_table(curves)
        last = table[table["scale_index"] == table["scale_index"].max()]
        for mode in ("teacher_forced", "free_running"):
            part = last[last["mode"] == mode]
            if not part.empty:
                out[f"{mode}_error_finest"] = float(f"{float(part['error'].mean()):.6g}")
    if gates:
        out["gate_mean"] = round(float(probes.gate_table(gates, "")["gate_mean"].mean()), 6)
    return out
