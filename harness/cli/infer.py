"""``run.py infer``: x4 super-resolve one image or a folder with VARSR / AlignVAR weights, writing PNGs."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from harness.cli.options import add_offline, apply_offline

HELP = "x4 super-resolve an image or a folder with VARSR / AlignVAR checkpoints"
DESCRIPTION = """\
x4 super-resolution with the VARSR / AlignVAR model.

Official weights: VARSR.pth and VQVAE.pth on the Hugging Face hub (qyp2000/VARSR, linked from
https://github.com/qyp2000/VARSR): give them as hf:// references and they are downloaded once into the Hugging
Face cache (--offline: use the cache only), or as local paths. https://...#sha256=HEX URLs are downloaded and
checked against the digest. Our checkpoints (.safetensors from run.py train) usually hold the VQ-VAE too, so
--vqvae may be omitted.

examples:
  python run.py infer --method varsr --checkpoint hf://qyp2000/VARSR/VARSR.pth \\
      --vqvae hf://qyp2000/VARSR/VQVAE.pth --input lr.png --output out/
  python run.py infer --method varsr --checkpoint ckpt/VARSR.pth --vqvae ckpt/VQVAE.pth \\
      --input lr.png --output out/ --offline
  python run.py infer --method alignvar --checkpoint runs/x/model.safetensors \\
      --input lr_dir/ --output sr_dir/ --tile 512

Outputs are PNGs named after the inputs (OUT/<stem>.png); with one input image, --output may name the
PNG itself. Weights are never random: a missing checkpoint is an error that says where to get it.

The output folder may not be, or be inside, the input folder; existing outputs are replaced only with
--overwrite; one process writes an output folder at a time. An image that fails is reported and the others
are still written (exit 1).
"""


log = logging.getLogger(__name__)


class OutputExistsError(FileExistsError):
    """Outputs already exist (and --overwrite was not given), or the output would overwrite an input."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=("varsr", "alignvar"), default="varsr", help="default: varsr")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="VARSR.pth or our .safetensors: a path, hf://OWNER/REPO/FILE[@REVISION] or https://...#sha256=HEX",
    )
    parser.add_argument(
        "--vqvae", default=None, help="VQVAE.pth, as --checkpoint (not needed if the checkpoint holds the VQ-VAE)"
    )
    parser.add_argument("--input", required=True, help="an LR image or a folder of LR images")
    parser.add_argument("--output", required=True, help="output folder (or a .png path for a single input)")
    parser.add_argument(
        "--arch",
        default="auto",
        help="auto (from the checkpoint) or a named arch to check: tiny, d2, d16, d20, d24",
    )
    parser.add_argument("--cfg", type=float, default=6.0, help="guidance scale (default 6.0, ramped over scales)")
    parser.add_argument("--top-k", type=int, default=1, help="1 = greedy (default); 0 = no top-k filter")
    parser.add_argument("--top-p", type=float, default=0.75, help="nucleus mass (default 0.75; moot when greedy)")
    parser.add_argument("--temperature", type=float, default=1.0, help="token sampling temperature (default 1)")
    parser.add_argument("--no-refiner", action="store_true", help="skip the diffusion refiner (faster)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling/refiner noise (default 0)")
    parser.add_argument("--tile", type=int, default=None, help="output tile size (multiple of 16) for big images")
    parser.add_argument("--tile-overlap", type=int, default=64, help="output pixels shared by tiles (default 64)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="fp32 (default, exact) or autocast bf16/fp16 for the transformer, refiner and decoder "
        "(fp16: GPU only; bf16 is the fast GPU setting)",
    )
    parser.add_argument(
        "--sca",
        choices=("laplacian", "sobel", "random", "none"),
        default=None,
        help="SCA mask input (alignvar only; default: the mode stored in the checkpoint, none for official VARSR)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    parser.add_argument(
        "--color-fix",
        choices=("adain", "wavelet", "none"),
        default="adain",
        help="colour correction against the upsampled LR (default adain, as the official test)",
    )
    add_offline(
        parser,
        help="never download: an hf:// / https:// checkpoint must be cached already (same as "
        "ALIGNVAR_OFFLINE=1 or HF_HUB_OFFLINE=1); default: downloaded once into its cache",
    )


def _inputs(path: Path) -> list[Path]:
    from harness.core.imageio import is_image_file

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))
        if not files:
            raise FileNotFoundError(f"{path}: no images found (looked for .png/.jpg/... files in this folder)")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"{path}: input not found")
    return [path]


def _targets(inputs: list[Path], output: Path) -> list[Path]:
    from harness.core.imageio import is_image_file

    if len(inputs) == 1 and output.suffix and is_image_file(output):
        return [output.with_suffix(".png")]
    return [output / f"{p.stem}.png" for p in inputs]


def _is_within(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_outputs(inputs: list[Path], targets: list[Path], input_arg: Path, overwrite: bool) -> None:
    """Refuse outputs that would overwrite an input, land in the input folder, or exist (without overwrite)."""
    names: dict[Path, Path] = {}
    for src, dst in zip(inputs, targets):
        if dst in names:
            raise OutputExistsError(f"{names[dst]} and {src} would both be written to {dst}; rename one of them")
        names[dst] = src
    sources = {p.resolve() for p in inputs}
    clash = [t for t in targets if t.resolve() in sources]
    if clash:
        raise OutputExistsError(f"{clash[0]}: the output would overwrite the input image; choose another --output")
    if input_arg.is_dir():
        inside = [t for t in targets if _is_within(t.parent, input_arg)]
        if inside:
            raise OutputExistsError(
                f"--output {inside[0].parent} is (inside) the input folder {input_arg}; outputs there would mix with "
                f"(or replace) the LR originals: choose a folder outside it"
            )
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        shown = ", ".join(str(p) for p in existing[:5]) + (
            f" and {len(existing) - 5} more" if len(existing) > 5 else ""
        )
        raise OutputExistsError(f"{len(existing)} output(s) exist already: {shown}; pass --overwrite to replace them")


def run(args: argparse.Namespace) -> int:
    apply_offline(args)
    import torch

    from harness.core.fetch import FetchError
    from harness.core.imageio import ImageError, load_image, save_image
    from harness.core.progress import progress
    from methods.adapters.alignvar import (
        AlignVARMethod,
        AlignVARMethodConfig,
        MissingCheckpointError,
        VARSRMethodConfig,
    )
    from methods.alignvar.model import autocast_for
    from methods.alignvar.weights import CheckpointError

    if args.sca is not None and args.method != "alignvar":
        log.error("--sca applies to --method alignvar only (varsr is SCA-free by definition)")
        return 2
    from harness.core.device import resolve_device
    from harness.core.runlock import RunLock

    device = str(resolve_device(args.device, key="--device"))  # before anything is loaded
    try:
        inputs = _inputs(Path(args.input))
        targets = _targets(inputs, Path(args.output))
        check_outputs(inputs, targets, Path(args.input), args.overwrite)
        options = dict(
            checkpoint=args.checkpoint,
            vqvae=args.vqvae,
            arch=args.arch,
            device=device,
            cfg=args.cfg,
            top_k=args.top_k,
            top_p=args.top_p,
            temperature=args.temperature,
            seed=args.seed,
            use_refiner=not args.no_refiner,
            color_fix=args.color_fix,
            tile=args.tile,
            tile_overlap=args.tile_overlap,
            precision=args.precision,
        )
        autocast_for(device, args.precision)  # fp16 on a CPU: refused here, before the model loads
        if args.method == "alignvar":
            config = AlignVARMethodConfig(**options, sca=args.sca)
        else:
            config = VARSRMethodConfig(**options)
        method = AlignVARMethod(config, args.method)
    except (MissingCheckpointError, CheckpointError, FetchError, FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    from harness.core.logconfig import note

    for text in method.model.load_notes:
        note(log, "%s", text)
    written, failed = [], []
    with RunLock(targets[0].parent, "infer output folder", leave_no_trace=True):
        check_outputs(inputs, targets, Path(args.input), args.overwrite)  # again, now that the folder is ours
        for src, dst in progress(list(zip(inputs, targets)), desc=f"infer {args.method}", unit="img"):
            try:
                lr = load_image(src)
                sr = method.upscale(lr[None], [src.stem])[0]
            except (ImageError, MemoryError, torch.OutOfMemoryError, ValueError) as exc:
                log.error("%s: %s", src, exc)
                failed.append(src)
                continue
            written.append(save_image(sr.cpu(), dst))
    where = written[0] if len(written) == 1 else Path(args.output)
    print(f"wrote {len(written)} x4 image(s) to {where}")
    if failed:
        log.error("%d of %d image(s) failed (see above)", len(failed), len(inputs))
        return 1
    return 0
