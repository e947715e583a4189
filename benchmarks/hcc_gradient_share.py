"""HCC's pull on the logits relative to CE's, measured on real images: what a lambda grid has to span.

Usage::

    python benchmarks/hcc_gradient_share.py runs/tiny/train/model.safetensors --sizes 64,128,256,512
    python benchmarks/hcc_gradient_share.py VARSR_AlignVAR.safetensors --images /data/DRealSR/test_HR --sizes 512

For each image size it takes ``--count`` images (a folder of HR images, centre-cropped and resized; default
the DRealSR HR crops in ../shared or the bundled photographs), makes the LR by x4 area down + bicubic up (the
model input), runs ``alignvar_losses`` in teacher forcing, batch ``--batch``, and measures the unweighted ratio
r = ||dHCC/dlogits|| / ||dCE/dlogits|| (``methods.alignvar.hcc.gradient_ratio``) with the model's ``hcc``
settings (``--reduction`` overrides). HCC's gradient share at weight lambda is lambda * r, so it prints the
median r (and its range over batches) per size and the lambda giving a 1 %, 10 % and 100 % share.

r depends on how confident the model is (CE's gradient shrinks as it learns, HCC's depends on the softmax), so
measure it on the checkpoint training starts from, and watch ``hcc_share`` in ``metrics.csv`` during training.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def images(folder: Path | None, count: int):
    """(3, H, W) float tensors in [0, 1]: the folder's images (sorted), else DRealSR HR, else bundled photos."""
    import torch

    from harness.core.imageio import load_image

    shared = Path(os.environ.get("ALIGNVAR_SHARED", C.REPO.parent / "shared")) / "data" / "drealsr" / "test_HR"
    folder = folder or (shared if shared.is_dir() else None)
    if folder is not None:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:count]
        return [load_image(p) for p in files]
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    return [torch.from_numpy(p.copy()).permute(2, 0, 1).float() / 255 for p in photos[:count]]


def square(img, size: int):
    import torch.nn.functional as F

    side = min(img.shape[-2:])
    top, left = (img.shape[-2] - side) // 2, (img.shape[-1] - side) // 2
    crop = img[None, :, top : top + side, left : left + side]
    return F.interpolate(crop, size=(size, size), mode="area", antialias=False)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="an AlignVAR checkpoint (ours, or official with --vqvae)")
    parser.add_argument("--vqvae", type=Path, default=None, help="VQVAE.pth for an official VARSR.pth")
    parser.add_argument("--images", type=Path, default=None, help="folder of HR images")
    parser.add_argument("--sizes", default="64,128,256,512", help="comma-separated square sizes (multiples of 16)")
    parser.add_argument("--count", type=int, default=4, help="images per size")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--reduction", choices=("sum", "mean"), default=None, help="override hcc.reduction")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from methods.alignvar.hcc import alignvar_losses
    from methods.alignvar.model import AlignVAR, upsample_bicubic

    if args.threads:
        torch.set_num_threads(args.threads)
    model = AlignVAR.from_pretrained(args.checkpoint, args.vqvae).train()
    if args.reduction:
        model.config.hcc.reduction = args.reduction
    h = model.config.hcc
    print(
        f"{args.checkpoint}: hcc {h.space}, reduction {h.reduction}, relaxation {h.relaxation}, "
        f"trained lambda {h.lambda_}; load {C.load_average()}"
    )
    pics = images(args.images, args.count)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        hr = torch.stack([square(p, size) for p in pics])
        lr = upsample_bicubic(F.interpolate(hr, scale_factor=0.25, mode="area"), (size, size))
        ratios = []
        for i in range(0, len(hr), args.batch):
            out = alignvar_losses(
                model,
                hr[i : i + args.batch] * 2 - 1,
                lr[i : i + args.batch] * 2 - 1,
                torch.zeros(len(hr[i : i + args.batch]), dtype=torch.long),
                refiner_weight=0.0,
                measure_gradients=True,
            )
            ratios.append(float(out.gradient_ratio[-1]))
        r = statistics.median(ratios)
        rows.append(
            {
                "size": size,
                "scales": out.schedule.num_scales,
                "tokens": out.schedule.total_tokens,
                "ratio": r,
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "lambda_1%": 0.01 / r,
                "lambda_10%": 0.1 / r,
                "lambda_100%": 1.0 / r,
            }
        )
    print(C.table(rows, list(rows[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
