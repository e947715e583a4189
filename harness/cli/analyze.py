"""``run.py analyze``: attention distance, error accumulation and SCA masks of a VAR-style method; plots.

A thin command: the model-facing probes are ``harness.analysis.probes`` and the writers
``harness.analysis.stage`` (shared with the sweep's ``analyze`` stage). Results land in
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
            raise ValueError(f"{args.config}: no {kind[:-1]} named {want!r}; valid: {', '.join(s.name for s in specs)}")
    m_spec = next(s for s in cfg.methods if args.method in (None, s.name))
    d_spec = next(s for s in cfg.datasets if args.dataset in (None, s.name))
    from harness.analysis.probes import var_model

    method = m_spec.build().to(resolve_device(args.device))
    model = var_model(method, m_spec.name)
    model.eval()
    out = args.output or (cfg.run_dir / "analysis")
    return model, d_spec.build(), m_spec.name, method, out, d_spec.name


def _run_analysis(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from harness.analysis import probes, stage

    model, dataset, name, method, out, d_name = _setup(args)
    n = min(args.max_images, len(dataset))
    frames, results, heatmaps = [], [], []
    try:
        for i in tqdm(range(n), desc=f"{args.analysis} {name}", unit="img"):
            sample = dataset[i]
            if args.analysis == "attention":
                layers = [int(v) for v in args.layers.split(",")] if args.layers else None
                table, maps = probes.attention_for_image(
                    model,
                    sample.lr,
                    layers=layers,
                    query_sample=args.query_sample,
                    radius=args.radius,
                    alignment=args.alignment,
                )
                frames.append(table)
                heatmaps.append(maps)
            elif args.analysis == "accumulation":
                if sample.hr is None:
                    raise ValueError(f"dataset {d_name!r} has no HR images; accumulation needs them")
                scales = [int(v) for v in args.perturb_scales.split(",") if v.strip()]
                results += probes.accumulation_for_image(
                    model,
                    sample.lr,
                    sample.hr,
                    name,
                    perturb_scales=scales,
                    perturb_fraction=args.perturb_fraction,
                )
            else:
                stage.write_sca_masks(probes.sca_masks_for_image(model, sample.lr), out, sample.key)
    finally:
        method.close()
    if args.analysis == "attention":
        path = stage.write_attention(frames, heatmaps, out, name)
    elif args.analysis == "accumulation":
        path = stage.write_accumulation(results, out)
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
    folders = [p if p.name == "analysis" or not (p / "analysis").is_dir() else p / "analysis" for p in args.runs]
    written = []
    for fname, reader, plot in (
        ("attention.csv", read_attention_csv, figures.attention_distance_figure),
        ("accumulation.csv", read_accumulation_csv, figures.accumulation_figure),
    ):
        tables = [reader(f / fname).assign(model=n) for f, n in zip(folders, names) if (f / fname).is_file()]
        if not tables:
            continue
        stem = fname.removesuffix(".csv")
        written += exports.save_figure(plot(pd.concat(tables, ignore_index=True)), args.output / stem, "column")
        if stem == "attention" and len(tables) == 2:
            cmp = compare_models(tables[0], tables[1], names=tuple(names[:2])).drop(columns="query_level")
            from harness.atomic import write_text

            for suffix, text in (
                (
                    ".tex",
                    exports.to_latex(cmp, "Attention distance per query scale.", "tab:attention", precision=3),
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
