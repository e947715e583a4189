"""Cost of the tokenizer ceiling (``harness.bench.ceiling``) next to the model's own ``upscale``, per image.

Usage::

    python benchmarks/ceiling_cost.py                     # tiny at 128 px and d16 at 256 px, CPU
    python benchmarks/ceiling_cost.py --archs tiny --sizes 128 --repeats 5

The bench computes the ceiling for every VARSR / AlignVAR method: the HR image through the model's VQ-VAE
(encode, quantise every scale, decode), the VQ-VAE read again from the checkpoint once per method after the
inference-only release of its encoder. This script measures, on a random-weight checkpoint (timing only): the
one-off re-read, the median seconds of ``tokenizer_reconstruct`` on one HR image, and of ``upscale`` of its LR
image (x4), and their ratio.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _common as C  # the script's folder is on sys.path; the package comes from its install


def measure(arch: str, size: int, repeats: int) -> dict:
    import torch

    from harness.core import registry

    registry.load_plugins()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = C.random_checkpoint(arch, "laplacian", Path(tmp))
        method = registry.create("methods", "alignvar", {"checkpoint": str(ckpt)})
        gen = torch.Generator().manual_seed(0)
        hr = torch.rand(1, 3, size, size, generator=gen)
        lr = torch.nn.functional.interpolate(hr, scale_factor=0.25, mode="area")
        reread, _ = C.timed(method.tokenizer)
        method.tokenizer_reconstruct(hr)  # warm-up
        method.upscale(lr, ["x"])
        ceiling = [C.timed(lambda: method.tokenizer_reconstruct(hr))[0] for _ in range(repeats)]
        upscale = [C.timed(lambda: method.upscale(lr, ["x"]))[0] for _ in range(repeats)]
    return {
        "arch": arch,
        "size": size,
        "reread_s": reread,
        "ceiling_s": C.median(ceiling),
        "upscale_s": C.median(upscale),
        "ratio": C.median(ceiling) / C.median(upscale),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["tiny", "d16"])
    parser.add_argument("--sizes", nargs="+", type=int, default=None, help="HR side per arch (default 128, 256)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sizes = args.sizes or [128 if a == "tiny" else 256 for a in args.archs]
    print(f"load average before: {C.load_average()}")
    rows = [measure(a, s, args.repeats) for a, s in zip(args.archs, sizes)]
    print(C.table(rows, ["arch", "size", "reread_s", "ceiling_s", "upscale_s", "ratio"]))
    print(f"load average after: {C.load_average()}")


if __name__ == "__main__":
    main()
