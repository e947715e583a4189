"""Model-facing probes: run an AlignVAR/VARSR model on one image and hand tensors to the pure analyses.

The pure functions live in ``attention``, ``accumulation`` and ``sca_masks`` (they never import the model);
this module is the thin adapter between them and ``methods.alignvar.model.AlignVAR``. It prepares the model
input as ``AlignVAR.upscale`` does (bicubic x4 of the LR, in [-1, 1]), runs the model with the capture hooks
(``AttentionRecorder``, a ``token_hook`` that corrupts tokens) and returns tables / figures. Used by
``run.py analyze`` and by the sweep's ``analyze`` stage (``harness.analysis.stage``).

Per image, every probe looks at ``free_running`` (the model's own greedy/sampled generation, seeded as
``upscale`` seeds it, refiner off):

* ``attention_for_image``    distance table (``ATTENTION_COLUMNS``) + key-scale heatmaps of that generation
                             (conditional CFG branch);
* ``accumulation_for_image`` per-scale latent error teacher-forced / free-running vs the HR tokenisation,
                             plus perturbation curves (a fraction of one scale's tokens replaced at random);
* ``sca_masks_for_image``    SCA structure maps and gates per scale as a figure; ``gate_rows`` their
                             statistics (mean, std, fraction > 0.5 per scale);
* ``probe_image``            all of them from one recorded generation (what the ``analyze`` stage runs).

Aggregation over images (``attention_table``, ``accumulation_table``, ``mean_heatmaps``) is shared by both
callers, so a sweep cell's ``analysis/`` folder holds exactly what ``run.py analyze`` would write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from harness.analysis.accumulation import AccumulationResult

ATTENTION_KEYS = ("layer", "head", "query_level", "query_scale", "radius")
ACCUMULATION_KEYS = ("model", "mode", "injected_scale", "scale_index", "scale", "metric")
GATE_COLUMNS = ("model", "scale_index", "scale", "n_tokens", "gate_mean", "gate_std", "gate_open")
"""Columns of ``analysis/sca_gates.csv``: per gated scale, the SCA gate of the free-running generation
(mean, population std and fraction > 0.5 over its tokens, averaged over images)."""


# --------------------------------------------------------------------------------------------------- inputs
def var_model(method: Any, name: str) -> Any:
    """The AlignVAR model behind a method, or a clear error for methods that are not VAR-style."""
    model = getattr(method, "model", None)
    if model is None or not all(hasattr(model, a) for a in ("transformer", "vqvae", "config")):
        raise ValueError(
            f"method {name!r} ({type(method).__name__}) is not a VAR-style model; these analyses "
            "need an AlignVAR/VARSR method (type: alignvar or varsr)"
        )
    return model


def model_inputs(model: Any, lr: torch.Tensor, hr: torch.Tensor | None = None) -> tuple[Any, Any, Any]:
    """(LR upsampled to the output size in [-1, 1], HR in [-1, 1] or None, the scale schedule), batch of one.

    As ``AlignVAR.upscale`` (bicubic x4), but the LR is cropped to a multiple of 4 (and the HR to 4x that) so
    that the HR tokenisation has exactly the output's token grids.
    """
    from methods.alignvar.model import upsample_bicubic

    device = next(model.transformer.parameters()).device
    h, w = (int(lr.shape[-2]) // 4) * 4, (int(lr.shape[-1]) // 4) * 4
    if h == 0 or w == 0:
        raise ValueError(f"LR image {tuple(lr.shape[-2:])} is smaller than 4x4")
    lr = lr[None, :, :h, :w].to(device)
    lr_m11 = upsample_bicubic(lr, (4 * h, 4 * w)) * 2 - 1
    hr_m11 = None
    if hr is not None:
        if hr.shape[-2] < 4 * h or hr.shape[-1] < 4 * w:
            raise ValueError(f"HR {tuple(hr.shape[-2:])} is smaller than 4 x LR {(h, w)}")
        hr_m11 = hr[None, :, : 4 * h, : 4 * w].to(device) * 2 - 1
    with torch.no_grad():
        schedule = model.transformer.schedule_for(lr_m11)
    return lr_m11, hr_m11, schedule


def _generator(model: Any, like: torch.Tensor) -> torch.Generator:
    return torch.Generator(device=like.device).manual_seed(int(model.config.seed))


def free_running(model: Any, lr_m11: torch.Tensor, token_hook: Any = None) -> Any:
    """The model's own generation (``Generation``: tokens per scale) with a fresh generator seeded as
    ``upscale`` seeds it, refiner off (the analyses look at tokens). Every probe of one image uses this
    run, so they all describe the same generation."""
    with torch.no_grad():
        _, gen = model.generate(
            lr_m11,
            generator=_generator(model, lr_m11),
            use_refiner=False,
            return_tokens=True,
            token_hook=token_hook,
        )
    return gen


# ------------------------------------------------------------------------------------------------ attention
def attention_recorder(
    model: Any,
    schedule: Any,
    *,
    layers: Sequence[int] | None = None,
    query_sample: int = 16,
    alignment: str = "center",
) -> tuple[Any, Any]:
    """(AttentionRecorder on the model's transformer, its TokenLayout) for one image's schedule; enter the
    recorder around a generation, then read ``distance_table`` / ``key_scale_maps``."""
    from harness.analysis.attention.capture import AttentionRecorder
    from harness.analysis.attention.geometry import token_layout

    layout = token_layout(schedule.patch_nums, prefix_hw=model.transformer.prefix_hw_for(schedule), alignment=alignment)
    recorder = AttentionRecorder(
        model.transformer,
        layers=list(layers) if layers is not None else None,
        query_sample=query_sample,
        layout=layout,
        batch_rows=1,  # the conditional CFG branch
    )
    return recorder, layout


def attention_for_image(
    model: Any,
    lr: torch.Tensor,
    *,
    layers: Sequence[int] | None = None,
    query_sample: int = 16,
    radius: float = 0.1,
    alignment: str = "center",
) -> tuple[Any, dict[str, torch.Tensor]]:
    """(distance table (ATTENTION_COLUMNS), key-scale heatmaps) of one image's free-running generation,
    conditional CFG branch; ``query_sample`` query rows per scale, ``layers`` None = all."""
    lr_m11, _, schedule = model_inputs(model, lr)
    recorder, layout = attention_recorder(
        model, schedule, layers=layers, query_sample=query_sample, alignment=alignment
    )
    with recorder:
        free_running(model, lr_m11)
    return recorder.distance_table(layout, radius=radius), key_scale_maps(recorder, layout)


def key_scale_maps(recorder: Any, layout: Any) -> dict[str, torch.Tensor]:
    """Attention of the finest scale's sampled queries (last recorded layer, mean over heads) to every key
    scale, each on its own grid: label -> (h_k, w_k)."""
    from harness.analysis.attention.stats import key_scale_attention_map

    last = max(layout.grids)
    recs = [r for r in recorder.records if bool((layout.levels[r.query_index] == last).any())]
    if not recs:
        return {}
    rec = max(recs, key=lambda r: r.layer)
    maps = {}
    for level in sorted(layout.grids):
        if layout.level_slice(level).stop <= rec.num_keys:
            maps[layout.label(level)] = key_scale_attention_map(rec.probs, rec.query_index, layout, last, level)
    return {f"layer {rec.layer}: {k}": v for k, v in maps.items()}


def attention_table(frames: Sequence[Any], model: str):
    """Per-image distance tables -> one table (ATTENTION_COLUMNS + model): queries summed, statistics and
    their uniform baselines averaged over images."""
    import pandas as pd

    from harness.analysis.attention.stats import STATISTICS, UNIFORM

    if not frames:
        raise ValueError("attention_table: no per-image tables given")
    means = {name: (name, "mean") for name in (*STATISTICS, *UNIFORM)}
    return (
        pd.concat(frames)
        .groupby(list(ATTENTION_KEYS), sort=True)
        .agg(n_queries=("n_queries", "sum"), **means)
        .reset_index()
        .assign(model=model)
    )


def mean_heatmaps(heatmaps: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor] | None:
    """Average of per-image key-scale heatmaps, or None when there are none or their grids differ (images
    of different sizes cannot be averaged cell by cell)."""
    if not heatmaps or not heatmaps[0]:
        return None
    shapes = {tuple((k, tuple(v.shape)) for k, v in m.items()) for m in heatmaps}
    if len(shapes) != 1:
        return None
    return {k: sum(m[k] for m in heatmaps) / len(heatmaps) for k in heatmaps[0]}


# --------------------------------------------------------------------------------------------- accumulation
def accumulated_latents(
    model: Any, lr_m11: Any, hr_m11: Any, schedule: Any, free_tokens: Any = None
) -> dict[str, list]:
    """Per-scale accumulated latents F_k (B, Cvae, H, W): ground truth (HR tokenisation), teacher-forced
    (F_{k-1} of the ground truth + the model's greedy scale-k tokens given the true prefix, CFG as at
    inference: never its own earlier predictions), free-running (the tokens of ``free_running``; pass
    ``free_tokens`` when that run was already made). Every random draw (a ``random`` SCA map) comes from a
    generator seeded with ``config.seed``, as in ``free_running``.
    """
    from methods.alignvar.sampling import cfg_combine, guidance_ramp

    quant = model.vqvae.quantize
    c = model.config
    with torch.no_grad():
        gt = model.vqvae.img_to_idx(hr_m11, schedule)
        x_in = quant.idx_to_var_input(gt.idx, schedule)
        # a random SCA map comes from a generator seeded as free_running seeds its own: the same map in both
        gate = model.sca(lr_m11, x_in, schedule, _generator(model, lr_m11)) if model.sca is not None else None
        guided = c.cfg > 0
        labels = torch.tensor([0, 1] if guided else [0], device=lr_m11.device)
        reps = len(labels)
        logits = model.transformer(
            lr_m11.repeat(reps, 1, 1, 1),
            labels,
            x_in.repeat(reps, 1, 1),
            schedule,
            None if gate is None else gate.repeat(reps, 1, 1),
        )
        ramp = guidance_ramp(c.cfg, schedule.num_scales)
        teacher, prev = [], torch.zeros_like(gt.f_hat[0])
        for k, ((b, e), hw) in enumerate(zip(schedule.begin_ends, schedule.patch_nums)):
            lk = cfg_combine(logits[:1, b:e], logits[1:, b:e], ramp[k]) if guided else logits[:, b:e]
            teacher.append(prev + quant.embed_scale(k, quant.lookup(lk.argmax(-1), hw), schedule))
            prev = gt.f_hat[k]
        tokens = free_tokens if free_tokens is not None else free_running(model, lr_m11).tokens
        free = quant.cumulative_targets(tokens, schedule)
    return {"gt": gt.f_hat, "teacher_forced": teacher, "free_running": free}


def corrupting_run_fn(model: Any, lr_m11: Any, schedule: Any, seed: int):
    """``run_fn(perturbations)`` for ``perturbation_curve``: {scale j: fraction} replaces that fraction of the
    scale-j tokens by random codes during free-running generation (positions and codes from a generator
    seeded with ``seed`` and j; the generation itself seeded as ``free_running``); returns accumulated
    latents."""
    vocab = int(model.vqvae.vocab_size)

    def run(perturbations):
        def hook(k, idx, logits):
            frac = perturbations.get(k)
            if not frac:
                return idx
            g = torch.Generator().manual_seed(seed * 7919 + k)
            n = idx.shape[-1]
            pos = torch.randperm(n, generator=g)[: max(1, round(frac * n))]
            out = idx.clone()
            out[:, pos.to(idx.device)] = torch.randint(vocab, (idx.shape[0], len(pos)), generator=g).to(idx)
            return out

        with torch.no_grad():
            return model.vqvae.quantize.cumulative_targets(free_running(model, lr_m11, hook).tokens, schedule)

    return run


def _accumulation_curves(
    model: Any,
    inputs: tuple[Any, Any, Any],
    name: str,
    perturb_scales: Sequence[int],
    perturb_fraction: float,
    free_tokens: Any = None,
) -> list[AccumulationResult]:
    from harness.analysis.accumulation import AccumulationResult, accumulation_curves, perturbation_curve

    lr_m11, hr_m11, schedule = inputs
    labels = [f"{h}x{w}" for h, w in schedule.patch_nums]
    scales = [int(j) for j in perturb_scales]
    bad = [j for j in scales if not 0 <= j < schedule.num_scales]
    if bad:
        raise ValueError(
            f"perturb_scales {bad} outside 0..{schedule.num_scales - 1} (this image has "
            f"{schedule.num_scales} scales: {', '.join(labels)})"
        )
    lat = accumulated_latents(model, lr_m11, hr_m11, schedule, free_tokens)
    results = accumulation_curves(lat["gt"], lat["teacher_forced"], lat["free_running"], model=name, scales=labels)
    run = corrupting_run_fn(model, lr_m11, schedule, int(model.config.seed))
    for j in scales:  # the unperturbed reference is the free-running run above (same seed, same tokens)
        errors = perturbation_curve(run, j, perturb_fraction, reference=lat["free_running"])
        results.append(AccumulationResult(errors, "perturbation", name, "mse", labels, injected_scale=j))
    return results


def accumulation_for_image(
    model: Any,
    lr: torch.Tensor,
    hr: torch.Tensor,
    name: str,
    *,
    perturb_scales: Sequence[int] = (),
    perturb_fraction: float = 0.1,
) -> list[AccumulationResult]:
    """Teacher-forced and free-running curves of one image, plus one perturbation curve per scale index in
    ``perturb_scales`` (0-based; ValueError naming the valid range when one is outside the schedule)."""
    inputs = model_inputs(model, lr, hr)
    return _accumulation_curves(model, inputs, name, perturb_scales, perturb_fraction)


def accumulation_table(results: Sequence[AccumulationResult]):
    """Per-image curves -> one long table (ACCUMULATION_COLUMNS), the error averaged over images."""
    from harness.analysis.accumulation import results_to_frame

    if not results:
        raise ValueError("accumulation_table: no curves given")
    long = results_to_frame(results)
    return long.groupby(list(ACCUMULATION_KEYS), sort=False, dropna=False)["error"].mean().reset_index()


# ------------------------------------------------------------------------------------------------ SCA masks
def sca_gates(model: Any, lr_m11: torch.Tensor, schedule: Any, tokens: Any) -> tuple[list, torch.Tensor]:
    """(structure maps per scale, gate m (B, L - 1, 1)) of the inputs built from ``tokens``: the gates a
    generation of those tokens used. The maps are drawn from a fresh generator seeded like the one
    ``free_running`` passes to ``generate``, which draws them first: for ``random`` SCA they are the maps the
    run used."""
    with torch.no_grad():
        maps = model.sca.guidance(lr_m11, schedule, _generator(model, lr_m11))
        x_in = model.vqvae.quantize.idx_to_var_input(tokens, schedule)
        s = torch.cat(maps[1:], dim=1) if len(maps) > 1 else x_in.new_zeros(x_in.shape[0], 0, 1)
        return maps, model.sca.gate(x_in, s)


def gate_rows(gate: torch.Tensor, schedule: Any) -> list[dict]:
    """One row per gated scale (k >= 1, 0-based): scale label, gate mean / std / fraction > 0.5, tokens."""
    from methods.alignvar.sca import gate_statistics

    stats = gate_statistics(gate, schedule)
    rows = []
    for k, (h, w) in enumerate(schedule.patch_nums[1:], start=1):
        rows.append(
            {
                "scale_index": k,
                "scale": f"{h}x{w}",
                "n_tokens": int(gate.shape[0] * h * w),
                **{f"gate_{s}": float(stats[f"gate_{s}_s{k}"]) for s in ("mean", "std", "open")},
            }
        )
    return rows


def gate_table(rows: Sequence[dict], model: str):
    """Per-image gate rows -> one table (``GATE_COLUMNS``): mean/std/open averaged over images, tokens
    summed."""
    import pandas as pd

    if not rows:
        raise ValueError("gate_table: no gate rows given")
    return (
        pd.DataFrame(list(rows))
        .groupby(["scale_index", "scale"], sort=True)
        .agg(
            n_tokens=("n_tokens", "sum"),
            gate_mean=("gate_mean", "mean"),
            gate_std=("gate_std", "mean"),
            gate_open=("gate_open", "mean"),
        )
        .reset_index()
        .assign(model=model)[list(GATE_COLUMNS)]
    )


def _sca_figure(model: Any, lr_m11: torch.Tensor, schedule: Any, tokens: Any, gate: Any = None) -> Any:
    """Structure maps and gates of scales 2..K (scale 1 is the class slot: no input token, no gate) for the
    generated ``tokens`` (``sca_gates``)."""
    from harness.analysis.sca_masks import sca_mask_panels

    maps, gates = sca_gates(model, lr_m11, schedule, tokens)
    s_maps, g_maps, labels = [], [], []
    for k, ((b, e), (h, w)) in enumerate(zip(schedule.begin_ends[1:], schedule.patch_nums[1:]), start=1):
        g_maps.append(gates[:, b - 1 : e - 1].reshape(h, w))  # the gate starts at scale 2
        s_maps.append(maps[k].reshape(h, w))
        labels.append(f"{h}x{w}")
    return sca_mask_panels(s_maps, g_maps, (lr_m11[0] + 1) / 2, labels=labels)


def _require_sca(model: Any) -> None:
    if model.sca is None:
        raise ValueError("this model has SCA off (sca: none): there are no gates to show")


def sca_masks_for_image(model: Any, lr: torch.Tensor) -> Any:
    """Figure of the structure maps and gates per scale of one image's free-running generation, over the
    LR image; ValueError for a model with SCA off."""
    _require_sca(model)
    lr_m11, _, schedule = model_inputs(model, lr)
    return _sca_figure(model, lr_m11, schedule, free_running(model, lr_m11).tokens)


# ------------------------------------------------------------------------------------- all three, one run
@dataclass
class ImageProbe:
    """What ``probe_image`` measured on one image."""

    attention: Any  # distance table (ATTENTION_COLUMNS)
    heatmaps: dict[str, torch.Tensor]  # key-scale attention maps of the finest scale's queries
    curves: list[AccumulationResult]  # empty without an HR image
    sca_figure: Any = None  # a Figure when asked for and the model has SCA
    gates: list[dict] | None = None  # ``gate_rows`` of the generation (None with SCA off)


def probe_image(
    model: Any,
    lr: torch.Tensor,
    hr: torch.Tensor | None,
    name: str,
    *,
    layers: Sequence[int] | None = None,
    query_sample: int = 16,
    radius: float = 0.1,
    alignment: str = "center",
    perturb_scales: Sequence[int] = (1,),
    perturb_fraction: float = 0.1,
    sca_figure: bool = False,
) -> ImageProbe:
    """Attention distance, error accumulation (when ``hr`` is given) and, with ``sca_figure`` and SCA on, the
    gate panel of one image, all from ONE free-running generation (recorded), plus one teacher-forced pass
    and one run per perturbed scale: the same numbers as the three separate probes at a third of the cost."""
    inputs = model_inputs(model, lr, hr)
    lr_m11, hr_m11, schedule = inputs
    recorder, layout = attention_recorder(
        model, schedule, layers=layers, query_sample=query_sample, alignment=alignment
    )
    with recorder:
        gen = free_running(model, lr_m11)
    curves = []
    if hr_m11 is not None:
        curves = _accumulation_curves(model, inputs, name, perturb_scales, perturb_fraction, gen.tokens)
    figure = _sca_figure(model, lr_m11, schedule, gen.tokens) if sca_figure and model.sca is not None else None
    gates = gate_rows(sca_gates(model, lr_m11, schedule, gen.tokens)[1], schedule) if model.sca is not None else None
    table = recorder.distance_table(layout, radius=radius)
    return ImageProbe(table, key_scale_maps(recorder, layout), curves, figure, gates)
