"""Peak memory of pixel-space HCC at 512 px: every scale stored vs decoder checkpointing vs a subset of scales.

Usage::

    python benchmarks/pixel_hcc_memory.py                          # 512 px, batch 1, VARSR's VQ-VAE, CPU
    python benchmarks/pixel_hcc_memory.py --options all,all+ckpt,last --device cuda --batch 4

Each option runs in a fresh interpreter (so one option's allocations cannot inflate the next one's peak): the
VARSR VQ-VAE (ch 160, Cvae 32, random weights: memory does not depend on the values) and random logits over
the 10-scale 512-px schedule, then the pixel-space HCC terms of ``methods.alignvar.hcc.hcc_per_scale`` forward
and backward down to the logits, exactly as training computes them (targets decoded without a graph). Options:

* ``N`` (e.g. ``1``, ``2``, ``all``): the first N scales' terms (``all`` = 10), every decode's activations kept
  for the backward pass;
* ``N+ckpt``: the same terms with ``hcc.decoder_checkpointing`` (each decode recomputed in the backward pass);
* ``last``: only the last scale's term (``hcc.pixel_scales: [-1]``), no checkpointing.

Memory: CPU peak RSS of the worker (``VmHWM``) minus its RSS before the HCC call (weights, inputs); CUDA
``max_memory_allocated`` minus the allocation before. Seconds are the wall time of that call (a loaded shared
CPU makes them noisy; the ratios between options are what to read).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

K = 10  # scales of the 512-px schedule


def parse_option(option: str) -> tuple[list[int], bool]:
    """``"2+ckpt"`` -> (scales [0, 1], checkpointing on); ``"last"`` -> ([9], off)."""
    name, _, flag = option.partition("+")
    if flag not in ("", "ckpt"):
        raise ValueError(f"option {option!r}: expected N, N+ckpt, all, all+ckpt or last")
    if name == "last":
        return [K - 1], flag == "ckpt"
    n = K if name == "all" else int(name)
    return list(range(n)), flag == "ckpt"


def worker(spec: dict) -> None:
    import torch

    from methods.alignvar.configs import VARSR_VQVAE
    from methods.alignvar.hcc import hcc_per_scale
    from methods.alignvar.scales import ScaleSchedule
    from methods.alignvar.vqvae import VQVAE

    torch.manual_seed(0)
    device = torch.device(spec["device"])
    size, batch = spec["size"], spec["batch"]
    scales, ckpt = parse_option(spec["option"])
    vae = VQVAE(**VARSR_VQVAE).to(device).requires_grad_(False).eval()
    schedule = ScaleSchedule.for_size(size, size)
    with torch.no_grad():
        tok = vae.img_to_idx(torch.rand(batch, 3, size, size, device=device) * 2 - 1, schedule)
    logits = torch.randn(batch, schedule.total_tokens, vae.vocab_size, device=device, requires_grad=True)
    peak = C.PeakRSS()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = C.rss_bytes()
        peak.mark()
    t0 = time.perf_counter()
    terms = hcc_per_scale(
        logits,
        tok.f_hat,
        vae.quantize,
        schedule,
        space="pixel",
        decode=vae.decode,
        scales=scales,
        checkpoint_decoder=ckpt,
    )
    terms[scales].sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
        used = torch.cuda.max_memory_allocated() - before
    else:
        used = peak.mark() - before
    C.emit({"option": spec["option"], "terms": len(scales), "peak_GiB": used / C.GIB, "s": time.perf_counter() - t0})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--options", default="1,2,1+ckpt,2+ckpt,last", help="comma-separated (see the docstring)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    print(f"pixel HCC, {args.size} px, batch {args.batch}, {args.device}; load {C.load_average()}")
    rows = []
    for option in args.options.split(","):
        parse_option(option)  # fail fast on a typo
        spec = {"option": option, "size": args.size, "batch": args.batch, "device": args.device}
        rows.append(C.run_worker(Path(__file__), spec))
        print(f"  {option}: {rows[-1]['peak_GiB']:.2f} GiB, {rows[-1]['s']:.0f} s", flush=True)
    print(C.table(rows, ["option", "terms", "peak_GiB", "s"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
