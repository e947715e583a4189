"""``run.py analyze``: attention distance, error accumulation and SCA masks of a VAR-style method; plots.

A thin command: the model-facing probes are ``harness.analysis.probes`` and the writers
``harness.analysis.stage`` (shared with the sweep's ``analyze`` stage). Results land in
``<run dir>/analysis/`` (the experiment's run dir, i.e. the cell folder for a sweep cell's ``config.yaml``),
where ``reports.sweep`` picks them up.

The knobs come from the config's ``analysis:`` block (``harness.config.experiment``); a flag given explicitly
overrides its key (``--max-images``, ``--device``, ``--query-sample``, ``--radius``, ``--alignment``,
``--perturb-scales``, ``--perturb-fraction``; the flags default to None = "not given"). ``figures`` and
``sca_mask_images`` are for the analyze stage only: here figures are always drawn and ``sca-masks`` draws
every analysed image.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.cli.options import add_offline, add_verbosity, apply_offline
from harness.config.experiment import ALIGNMENTS, AnalysisOptions

log = logging.getLogger(__name__)

HELP = "attention distance, error accumulation and SCA masks of AlignVAR/VARSR; plots from saved analyses"
DESCRIPTION = """\
Analyses of a VAR-style method (AlignVAR / VARSR) from an experiment config, on its dataset's images:

  attention     exact attention probabilities for sampled queries -> analysis/attention.csv (+ figure)
  accumulation  per-scale error of the accumulated latent vs the HR tokenisation: teacher-forced,
                free-running, and after corrupting a fraction of the tokens of one scale
                -> analysis/accumulation.csv (+ figure); needs a dataset with HR images
  sca-masks     structure maps and SCA gates per scale -> analysis/sca_masks_<image>.{pdf,svg,png}
  plot          figures + tables from analysis folders of several runs (e.g. SCA off vs on)

Defaults come from the config's `analysis:` block (max_images, query_sample, radius, alignment,
perturb_scales, perturb_fraction, device); a flag given explicitly overrides it.

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
    common.add_argument(
        "--max-images", type=int, default=None, help="images to analyse (default: analysis.max_images, 4)"
    )
    common.add_argument("--output", type=Path, default=None, help="folder (default: <run dir>/analysis)")
    common.add_argument(
        "--device", default=None, help="auto, cpu, cuda, cuda:N (default: analysis.device, else bench.device)"
    )
    add_offline(
        common,
        help="never download: an hf:// / https:// checkpoint of the method must be cached already "
        "(same as ALIGNVAR_OFFLINE=1); default: downloaded once into its cache",
    )
    att = sub.add_parser("attention", parents=[common], help="attention distance per layer, head and scale")
    att.add_argument("--layers", default=None, help="comma-separated layer ids (default: all)")
    att.add_argument(
        "--query-sample", type=int, default=None, help="query rows per scale (default: analysis.query_sample, 16)"
    )
    att.add_argument(
        "--radius",
        type=float,
        default=None,
        help="radius for the mass, a fraction of the image side (default: analysis.radius, 0.1)",
    )
    att.add_argument(
        "--alignment",
        choices=ALIGNMENTS,
        default=None,
        help="token positions: geometric centres or VARSR's RoPE grid (default: analysis.alignment, center)",
    )
    acc = sub.add_parser("accumulation", parents=[common], help="per-scale error accumulation (needs HR)")
    acc.add_argument(
        "--perturb-scales",
        type=int_list,
        default=None,
        help="comma-separated 0-based scales to corrupt, e.g. 2,4,6; '' for none (default: analysis.perturb_scales, 1)",
    )
    acc.add_argument(
        "--perturb-fraction",
        type=float,
        default=None,
        help="fraction of the tokens replaced (default: analysis.perturb_fraction, 0.1)",
    )
    masks = sub.add_parser("sca-masks", parents=[common], help="structure maps and gates per scale")
    plot = sub.add_parser("plot", help="figures + tables from analysis folders of several runs")
    plot.add_argument("runs", type=Path, nargs="+", help="run dirs or their analysis/ folders")
    plot.add_argument("--names", nargs="+", default=None, help="labels of the runs (default: folder names)")
    plot.add_argument("--output", type=Path, required=True, help="folder for the figures and tables")
    for analysis in (att, acc, masks, plot):  # `run.py analyze attention CFG -v` as well as `analyze -v ...`
        add_verbosity(analysis.add_argument_group("output"), default=argparse.SUPPRESS)


# --------------------------------------------------------------------------------------------------- options
def int_list(text: str) -> tuple[int, ...]:
    """``"2,4,6"`` -> (2, 4, 6); ``""`` -> () (an argparse ``type``)."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def analysis_options(cfg: Any, args: argparse.Namespace) -> AnalysisOptions:
    """The config's ``analysis:`` block with the flags given explicitly on top (a flag's dest is its field's
    name; None = not given). Bad values raise ValueError naming the field."""
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(AnalysisOptions)
        if getattr(args, f.name, None) is not None
    }
    return dataclasses.replace(cfg.analysis, **given)


# --------------------------------------------------------------------------------------------------- commands
@dataclass
class _Target:
    """What one analysis command works on: the method's model, the dataset, where to write, the knobs."""

    model: Any  # the AlignVAR model behind the method
    method: Any  # the method (closed at the end)
    name: str  # the method's name
    dataset: Any
    dataset_name: str
    out: Path
    options: AnalysisOptions


def _setup(args: argparse.Namespace) -> _Target:
    from harness.config.experiment import load_experiment
    from harness.core.device import resolve_device

    cfg = load_experiment(args.config, args.overrides)
    options = analysis_options(cfg, args)
    device = resolve_device(options.device or cfg.bench.device, key="--device / analysis.device")  # before loading
    for kind, want in (("methods", args.method), ("datasets", args.dataset)):
        specs = getattr(cfg, kind)
        if not specs:
            raise ValueError(f"{args.config}: {kind}: empty; the analysis needs one")
        if want is not None and want not in [s.name for s in specs]:
            raise ValueError(f"{args.config}: no {kind[:-1]} named {want!r}; valid: {', '.join(s.name for s in specs)}")
    m_spec = next(s for s in cfg.methods if args.method in (None, s.name))
    d_spec = next(s for s in cfg.datasets if args.dataset in (None, s.name))
    from harness.analysis.probes import var_model
    from harness.analysis.stage import build_for_analysis

    method = build_for_analysis(m_spec).to(device)
    model = var_model(method, m_spec.name)
    model.eval()
    out = args.output or (cfg.run_dir / "analysis")
    return _Target(model, method, m_spec.name, d_spec.create(), d_spec.name, out, options)


def _run_analysis(args: argparse.Namespace) -> int:
    from harness.analysis import probes, stage
    from harness.core.progress import progress

    t = _setup(args)
    opts = t.options
    n = min(opts.max_images, len(t.dataset))
    frames, results, heatmaps = [], [], []
    try:
        for i in progress(range(n), desc=f"{args.analysis} {t.name}", unit="img"):
            sample = t.dataset[i]
            if args.analysis == "attention":
                layers = [int(v) for v in args.layers.split(",")] if args.layers else None
                table, maps = probes.attention_for_image(
                    t.model,
                    sample.lr,
                    layers=layers,
                    query_sample=opts.query_sample,
                    radius=opts.radius,
                    alignment=opts.alignment,
                )
                frames.append(table)
                heatmaps.append(maps)
            elif args.analysis == "accumulation":
                if sample.hr is None:
                    raise ValueError(f"dataset {t.dataset_name!r} has no HR images; accumulation needs them")
                results += probes.accumulation_for_image(
                    t.model,
                    sample.lr,
                    sample.hr,
                    t.name,
                    perturb_scales=opts.perturb_scales,
                    perturb_fraction=opts.perturb_fraction,
                )
            else:
                stage.write_sca_masks(probes.sca_masks_for_image(t.model, sample.lr), t.out, sample.key)
    finally:
        t.method.close()
    if args.analysis == "attention":
        path = stage.write_attention(frames, heatmaps, t.out, t.name)
    elif args.analysis == "accumulation":
        path = stage.write_accumulation(results, t.out)
    else:
        path = t.out
    print(f"{args.analysis}: {n} image(s) of {t.dataset_name!r} with {t.name!r} -> {path}")
    return 0


def _run_plot(args: argparse.Namespace) -> int:
    import pandas as pd

    from harness.analysis.accumulation import read_accumulation_csv
    from harness.analysis.attention.tables import compare_models, read_attention_csv
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
            from harness.core.atomic import write_text

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
        log.error("analyze plot: no attention.csv or accumulation.csv in %s", ", ".join(map(str, folders)))
        return 2
    for path in written:
        print(path)
    return 0


def run(args: argparse.Namespace) -> int:
    apply_offline(args)
    try:
        return _run_plot(args) if args.analysis == "plot" else _run_analysis(args)
    except (ValueError, FileNotFoundError) as exc:
        log.error("analyze %s: %s", args.analysis, exc)
        return 2
