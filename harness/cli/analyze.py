"""``run.py analyze``: attention distance, error accumulation and SCA masks of a VAR-style method; plots.

The model adapters here are thin: they prepare the model input as ``AlignVAR.upscale`` does, run the model
with the capture hooks of ``harness.analysis`` and hand tensors to its pure functions. Results land in
``<run dir>/analysis/`` (the experiment's run dir, i.e. the cell folder for a sweep cell's ``config.yaml``),
where ``reports.sweep`` picks them up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HELP = "attention distance, error accumulation and SCA masks of AlignVAR/VARSR; plots from saved analyses"
DESCRIPTION = """\
Analyses of a VAR-style method (AlignVAR / VARSR) from an experiment config, on its dataset's images:

  attention     exact attention probabilities for sampled queries -> analysis/attention.csv (+ figure)
  accumulation  per-scale error of the accumulated latent vs the HR tokenisation: teacher-forced,
                free-running, and after corrupting a fraction of the tokens of one scale
                -> analysis/accumulation.csv (+ figure); needs a dataset with HR images
  sca-masks     structure maps and SCA gates per scale -> analysis/sca_masks_<image>.{pdf,svg,png}
  plot          figures + tables from analysis folders of several runs (e.g. SCA off vs on)

examples:
  python run.py analyze attention runs/abl/cells/<cell>/config.yaml --max-images 4
  python run.py analyze accumulation experiments/hcc.yaml --method alignvar --perturb-scales 2,4,6
  python run.py analyze plot runs/sca_off runs/sca_on --names "SCA off" "SCA on" --output figs/
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("config", type=Path, help="experiment YAML (a sweep cell's config.yaml works)")
    common.add_argument("overrides", nargs="*", default=[], help="KEY=VALUE config overrides")
    common.add_argument("--method", default=None, help="method name in the config (default: the first one)")
    common.add_argument("--dataset", default=None, help="dataset name in the config (default: the first one)")
    common.add_argument("--max-images", type=int, default=4, help="images to analyse (default 4)")
    common.add_argument("--output", type=Path, default=None, help="folder (default: <run dir>/analysis)")
    common.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    att = sub.add_parser("attention", parents=[common], help="attention distance per layer, head and scale")
    att.add_argument("--layers", default=None, help="comma-separated layer ids (default: all)")
    att.add_argument("--query-sample", type=int, default=16, help="query rows per scale (default 16)")
    att.add_argument("--radius", type=float, default=0.1, help="radius for the mass (image fraction, 0.1)")
    att.add_argument(
        "--alignment",
        choices=("center", "topleft"),
        default="center",
        help="token positions: geometric centres (default) or VARSR's RoPE grid",
    )
    acc = sub.add_parser("accumulation", parents=[common], help="per-scale error accumulation (needs HR)")
    acc.add_argument("--perturb-scales", default="", help="comma-separated scales to corrupt (e.g. 2,4,6)")
    acc.add_argument("--perturb-fraction", type=float, default=0.1, help="fraction of tokens replaced (0.1)")
    sub.add_parser("sca-masks", parents=[common], help="structure maps and gates per scale")
    plot = sub.add_parser("plot", help="figures + tables from analysis folders of several runs")
    plot.add_argument("runs", type=Path, nargs="+", help="run dirs or their analysis/ folders")
    plot.add_argument("--names", nargs="+", default=None, help="labels of the runs (default: folder names)")
    plot.add_argument("--output", type=Path, required=True, help="folder for the figures and tables")


# --------------------------------------------------------------------------------------------- model adapters
def var_model(method: Any, name: str) -> Any:
    """The AlignVAR model behind a method, or a clear error for methods that are not VAR-style."""
    model = getattr(method, "model", None)
    if model is None or not all(hasattr(model, a) for a in ("transformer", "vqvae", "config")):
        raise ValueError(
            f"method {name!r} ({type(method).__name__}) is not a VAR-style model; these analyses "
            "need an AlignVAR/VARSR method (type: alignvar or varsr)"
        )
    return model


def model_inputs(model: Any, lr: Any, hr: Any | None = None) -> tuple[Any, Any | None, Any]:
    """(LR upsampled to the output size in [-1, 1], HR in [-1, 1] or None, the scale schedule), batch of one.

    As ``AlignVAR.upscale`` (bicubic x4), but the LR is cropped to a multiple of 4 (and the HR to 4x that) so
    that the HR tokenisation has exactly the output's token grids.
    """
    import torch

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


def attention_for_image(model: Any, lr: Any, args: argparse.Namespace) -> Any:
    """Distance table (ATTENTION_COLUMNS) of one image's free-running generation (conditional CFG branch)."""
    import torch

    from harness.analysis.attention import AttentionRecorder, token_layout

    lr_m11, _, schedule = model_inputs(model, lr)
    layout = token_layout(schedule.patch_nums, prefix_hw=schedule.latent_hw, alignment=args.alignment)
    layers = [int(v) for v in args.layers.split(",")] if args.layers else None
    recorder = AttentionRecorder(
        model.transformer, layers=layers, query_sample=args.query_sample, layout=layout, batch_rows=1
    )
    generator = torch.Generator(device=lr_m11.device).manual_seed(int(model.config.seed))
    with torch.no_grad(), recorder:
        model.generate(lr_m11, generator=generator, use_refiner=False)
    return recorder.distance_table(layout, radius=args.radius), key_scale_maps(recorder, layout)


def key_scale_maps(recorder: Any, layout: Any) -> dict[str, Any]:
    """Attention of the finest scale's sampled queries (last recorded layer, mean over heads) to every key
    scale, each on its own grid: label -> (h_k, w_k)."""
    from harness.analysis.attention import key_scale_attention_map

    last = max(layout.grids)
    recs = [r for r in recorder.records if bool((layout.levels[r.query_index] == last).any())]
    if not recs:
        return {}
    rec = max(recs, key=lambda r: r.layer)
    maps = {}
    for level in sorted(layout.grids):
        if layout.level_slice(level).stop <= rec.num_keys:
            maps[layout.label(level)] = key_scale_attention_map(
                rec.probs, rec.query_index, layout, last, level
            )
    return {f"layer {rec.layer}: {k}": v for k, v in maps.items()}


def accumulated_latents(model: Any, lr_m11: Any, hr_m11: Any, schedule: Any) -> dict[str, list]:
    """Per-scale accumulated latents F_k (B, Cvae, H, W): ground truth (HR tokenisation), teacher-forced
    (F_{k-1} + the model's greedy scale-k tokens given the true prefix, CFG as at inference), free-running.
    """
    import torch

    from methods.alignvar.sampling import cfg_combine, guidance_ramp

    quant = model.vqvae.quantize
    c = model.config
    with torch.no_grad():
        gt = model.vqvae.img_to_idx(hr_m11, schedule)
        x_in = quant.idx_to_var_input(gt.idx, schedule)
        gate = model.sca(lr_m11, x_in, schedule) if model.sca is not None else None
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
        generator = torch.Generator(device=lr_m11.device).manual_seed(int(c.seed))
        _, gen = model.generate(lr_m11, generator=generator, use_refiner=False, return_tokens=True)
        free = quant.cumulative_targets(gen.tokens, schedule)
    return {"gt": gt.f_hat, "teacher_forced": teacher, "free_running": free}


def corrupting_run_fn(model: Any, lr_m11: Any, schedule: Any, seed: int):
    """``run_fn(perturbations)`` for ``perturbation_curve``: {scale j: fraction} replaces that fraction of the
    scale-j tokens by random codes (seeded) during free-running generation; returns accumulated latents."""
    import torch

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

        generator = torch.Generator(device=lr_m11.device).manual_seed(int(model.config.seed))
        with torch.no_grad():
            _, gen = model.generate(
                lr_m11, generator=generator, use_refiner=False, return_tokens=True, token_hook=hook
            )
            return model.vqvae.quantize.cumulative_targets(gen.tokens, schedule)

    return run


def accumulation_for_image(model: Any, lr: Any, hr: Any, args: argparse.Namespace, name: str) -> list:
    from harness.analysis.accumulation import accumulation_curves, perturbation_results

    lr_m11, hr_m11, schedule = model_inputs(model, lr, hr)
    labels = [f"{h}x{w}" for h, w in schedule.patch_nums]
    lat = accumulated_latents(model, lr_m11, hr_m11, schedule)
    results = accumulation_curves(
        lat["gt"], lat["teacher_forced"], lat["free_running"], model=name, scales=labels
    )
    scales = [int(v) for v in args.perturb_scales.split(",") if v.strip()]
    bad = [j for j in scales if not 0 <= j < schedule.num_scales]
    if bad:
        raise ValueError(f"--perturb-scales {bad} outside 0..{schedule.num_scales - 1}")
    if scales:
        run = corrupting_run_fn(model, lr_m11, schedule, int(model.config.seed))
        results += perturbation_results(run, scales, args.perturb_fraction, model=name, scales=labels)
    return results


def sca_masks_for_image(model: Any, lr: Any) -> Any:
    """Structure maps and gates of scales 2..K (scale 1 is the class slot: no input token, no gate)."""
    import torch

    from harness.analysis.sca_masks import sca_mask_panels

    if model.sca is None:
        raise ValueError("this model has SCA off (sca: none): there are no gates to show")
    lr_m11, _, schedule = model_inputs(model, lr)
    quant = model.vqvae.quantize
    generator = torch.Generator(device=lr_m11.device).manual_seed(int(model.config.seed))
    with torch.no_grad():
        maps = model.sca.guidance(lr_m11, schedule, generator)
        _, gen = model.generate(lr_m11, generator=generator, use_refiner=False, return_tokens=True)
        x_in = quant.idx_to_var_input(gen.tokens, schedule)
    s_maps, gates, labels = [], [], []
    for k, ((b, e), (h, w)) in enumerate(zip(schedule.begin_ends[1:], schedule.patch_nums[1:]), start=1):
        tokens = x_in[:, b - 1 : e - 1]  # x_in starts at scale 2
        gates.append(model.sca.gate(tokens, maps[k]).reshape(h, w))
        s_maps.append(maps[k].reshape(h, w))
        labels.append(f"{h}x{w}")
    return sca_mask_panels(s_maps, gates, (lr_m11[0] + 1) / 2, labels=labels)


# --------------------------------------------------------------------------------------------------- commands
def _setup(args: argparse.Namespace) -> tuple[Any, Any, str, Any, Path, str]:
    from harness.config import load_experiment
    from harness.runner import resolve_device

    cfg = load_experiment(args.config, args.overrides)
    for kind, want in (("methods", args.method), ("datasets", args.dataset)):
        specs = getattr(cfg, kind)
        if not specs:
            raise ValueError(f"{args.config}: {kind}: empty; the analysis needs one")
        if want is not None and want not in [s.name for s in specs]:
            raise ValueError(
                f"{args.config}: no {kind[:-1]} named {want!r}; valid: {', '.join(s.name for s in specs)}"
            )
    m_spec = next(s for s in cfg.methods if args.method in (None, s.name))
    d_spec = next(s for s in cfg.datasets if args.dataset in (None, s.name))
    method = m_spec.build().to(resolve_device(args.device))
    model = var_model(method, m_spec.name)
    model.eval()
    out = args.output or (cfg.run_dir / "analysis")
    return model, d_spec.build(), m_spec.name, method, out, d_spec.name


def _run_analysis(args: argparse.Namespace) -> int:
    import pandas as pd
    from tqdm import tqdm

    from harness.analysis import accumulation as acc_mod
    from harness.analysis import attention as att_mod
    from reports import figures

    model, dataset, name, method, out, d_name = _setup(args)
    n = min(args.max_images, len(dataset))
    frames, results, heatmaps = [], [], []
    try:
        for i in tqdm(range(n), desc=f"{args.analysis} {name}", unit="img"):
            sample = dataset[i]
            if args.analysis == "attention":
                table, maps = attention_for_image(model, sample.lr, args)
                frames.append(table)
                heatmaps.append(maps)
            elif args.analysis == "accumulation":
                if sample.hr is None:
                    raise ValueError(f"dataset {d_name!r} has no HR images; accumulation needs them")
                results += accumulation_for_image(model, sample.lr, sample.hr, args, name)
            else:
                fig = sca_masks_for_image(model, sample.lr)
                figures.save_figure(fig, out / f"sca_masks_{sample.key}", "text")
    finally:
        method.close()
    if args.analysis == "attention":
        keys = ["layer", "head", "query_level", "query_scale", "radius"]
        table = (
            pd.concat(frames)
            .groupby(keys, sort=True)
            .agg(
                n_queries=("n_queries", "sum"),
                mean_distance=("mean_distance", "mean"),
                mass_within_r=("mass_within_r", "mean"),
            )
            .reset_index()
            .assign(model=name)
        )
        path = att_mod.write_attention_csv(table, out / "attention.csv")
        figures.save_figure(figures.attention_distance_figure(table), out / "attention_distance", "column")
        shapes = {tuple((k, tuple(v.shape)) for k, v in m.items()) for m in heatmaps}
        if heatmaps and heatmaps[0] and len(shapes) == 1:  # same-size images: average the maps
            mean = {k: sum(m[k] for m in heatmaps) / len(heatmaps) for k in heatmaps[0]}
            fig = figures.heatmap_panels(
                mean, title="attention of the finest scale's queries to each key scale"
            )
            figures.save_figure(fig, out / "attention_heatmaps", "text")
    elif args.analysis == "accumulation":
        long = acc_mod.results_to_frame(results)
        keys = ["model", "mode", "injected_scale", "scale_index", "scale", "metric"]
        table = long.groupby(keys, sort=False, dropna=False)["error"].mean().reset_index()
        path = acc_mod.write_accumulation_csv(table, out / "accumulation.csv")
        figures.save_figure(figures.accumulation_figure(table), out / "accumulation", "column")
    else:
        path = out
    print(f"{args.analysis}: {n} image(s) of {d_name!r} with {name!r} -> {path}")
    return 0


def _run_plot(args: argparse.Namespace) -> int:
    import pandas as pd

    from harness.analysis.accumulation import read_accumulation_csv
    from harness.analysis.attention import compare_models, read_attention_csv
    from reports import exports, figures

    names = args.names or [p.name if p.name != "analysis" else p.parent.name for p in args.runs]
    if len(names) != len(args.runs):
        raise ValueError(f"{len(names)} --names for {len(args.runs)} runs")
    folders = [
        p if p.name == "analysis" or not (p / "analysis").is_dir() else p / "analysis" for p in args.runs
    ]
    written = []
    for fname, reader, plot in (
        ("attention.csv", read_attention_csv, figures.attention_distance_figure),
        ("accumulation.csv", read_accumulation_csv, figures.accumulation_figure),
    ):
        tables = [reader(f / fname).assign(model=n) for f, n in zip(folders, names) if (f / fname).is_file()]
        if not tables:
            continue
        stem = fname.removesuffix(".csv")
        written += exports.save_figure(
            plot(pd.concat(tables, ignore_index=True)), args.output / stem, "column"
        )
        if stem == "attention" and len(tables) == 2:
            cmp = compare_models(tables[0], tables[1], names=tuple(names[:2])).drop(columns="query_level")
            from harness.atomic import write_text

            for suffix, text in (
                (
                    ".tex",
                    exports.to_latex(
                        cmp, "Attention distance per query scale.", "tab:attention", precision=3
                    ),
                ),
                (".md", exports.to_markdown(cmp, "Attention distance per query scale.", precision=3)),
            ):
                write_text(args.output / f"attention_compare{suffix}", text)
                written.append(args.output / f"attention_compare{suffix}")
    if not written:
        print(
            f"analyze plot: no attention.csv or accumulation.csv in {', '.join(map(str, folders))}",
            file=sys.stderr,
        )
        return 2
    for path in written:
        print(path)
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return _run_plot(args) if args.analysis == "plot" else _run_analysis(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"analyze {args.analysis}: {exc}", file=sys.stderr)
        return 2
