"""The tiny recipe's tokenizer ceiling: encode-quantise-decode PSNR-Y of the held-out bundled photographs.

Usage::

    python benchmarks/tiny_recipe.py runs/tiny_tokenizer/train/tokenizer.safetensors
    python benchmarks/tiny_recipe.py experiments/checkpoints/tiny/tokenizer.safetensors --split eval

The images are the bundled dataset's ``eval`` split (``harness.data.bundled.SPLITS``) at ``--hr-size`` cut into
``--tile`` px tiles, as ``experiments/tiny_recipe.yaml`` evaluates them. Every HR tile is tokenised with the
schedule of its size (``ScaleSchedule.for_size`` at the tokenizer's downsampling) and decoded from its last
accumulated latent, clamped and quantised to 8 bits like a method's output; PSNR-Y is the registered ``psnr_y``
metric. It prints the mean ceiling, bicubic's PSNR-Y on the same tiles, the share of the codebook the tiles use
and the schedule. A model checkpoint (ours, VQ-VAE inside) works too: its ``vqvae.`` tensors are read.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402, F401  (puts the repository on sys.path)


def load_tokenizer(path: Path):
    from methods.alignvar.weights import load_vqvae, read_state_dict

    sd = read_state_dict(str(path))
    if any(k.startswith("vqvae.") for k in sd):
        sd = {k[len("vqvae.") :]: v for k, v in sd.items() if k.startswith("vqvae.")}
    return load_vqvae(sd, source=str(path)).eval()


def ceiling(path: Path, split: str, hr_size: int, tile: int) -> dict:
    import torch
    import torch.nn.functional as F

    from harness.core import registry
    from harness.core.imageio import quantize_8bit
    from methods.alignvar.scales import ScaleSchedule

    vae = load_tokenizer(path)
    data = registry.create("datasets", "bundled", {"split": split, "hr_size": hr_size, "tile": tile})
    metric = registry.create("metrics", "psnr_y", {})
    recon, bicubic, used = [], [], set()
    schedule = ScaleSchedule.for_size(tile, tile, vae.downsample)
    with torch.no_grad():
        for sample in data.samples():
            hr, lr = sample.hr[None], sample.lr[None]
            tok = vae.img_to_idx(hr * 2 - 1, schedule)
            out = quantize_8bit((vae.decode(tok.f_hat[-1]).clamp(-1, 1) + 1) / 2)
            up = quantize_8bit(F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1))
            recon.append(float(metric.score(out, hr)[0]))
            bicubic.append(float(metric.score(up, hr)[0]))
            used.update(int(i) for idx in tok.idx for i in idx.flatten())
    return {
        "n": len(recon),
        "ceiling_psnr_y": statistics.fmean(recon),
        "bicubic_psnr_y": statistics.fmean(bicubic),
        "codebook_used": len(used) / vae.vocab_size,
        "schedule": str(schedule),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tokenizer", type=Path, help="tokenizer.safetensors (or a model.safetensors with its VQ-VAE)")
    parser.add_argument("--split", default="eval", choices=("eval", "train", "all"))
    parser.add_argument("--hr-size", type=int, default=256)
    parser.add_argument("--tile", type=int, default=64)
    args = parser.parse_args(argv)
    res = ceiling(args.tokenizer, args.split, args.hr_size, args.tile)
    print(
        f"{args.split} split, {res['n']} tiles of {args.tile} px (schedule {res['schedule']}): tokenizer ceiling "
        f"PSNR-Y {res['ceiling_psnr_y']:.2f} dB, bicubic {res['bicubic_psnr_y']:.2f} dB, codebook used "
        f"{100 * res['codebook_used']:.1f} %"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
