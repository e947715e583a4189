"""Overhead of AlignVAR's two additions, measured side by side: SCA at inference, HCC in a training step.

Usage::

    python benchmarks/sca_hcc_overhead.py                       # tiny + d16, CPU, default sizes and repeats
    python benchmarks/sca_hcc_overhead.py --archs tiny --sca-repeats 20 --hcc-repeats 30

* **SCA** (target <= 2 %): ``AlignVAR.upscale`` end to end (stem, 2-branch CFG transformer, refiner, decode,
  colour fix) with the Laplacian SCA gate on vs off, on the *same* model object and weights (the gate module
  is detached for the "off" calls, which is exactly VARSR's path).
* **HCC** (target <= 5 %): one full training step (``alignvar_losses`` forward, backward, AdamW step) with
  ``hcc.lambda`` = 1 (latent-space HCC, the paper's default) vs 0 (HCC skipped entirely), same model and batch.

Two estimates of each overhead, in the same run:

1. **A/B ratio**: interleaved pairs (on/off, then off/on, ...) after warm-up calls, so slow drifts of a shared
   machine hit both sides alike; the figure is the median of the per-pair ratios (with its IQR), plus the median
   seconds of each side. This is the end-to-end definition, but on a loaded machine its noise (IQR) can exceed
   a 2 % effect.
2. **Direct share**: the time spent inside the added code itself, divided by the rest of the call: for SCA the
   ``SCAGate.guidance`` (structure maps) and ``SCAGate.gate`` (MLP per scale) calls, plus the gating multiply;
   for HCC the ``hcc_per_scale`` forward plus its backward down to the logits (a separate
   ``autograd.grad(hcc, logits)`` on the same graph: HCC's gradient only reaches the parameters through the
   logits, whose backward is shared with the CE loss). Much less sensitive to machine load.

``--threads 1`` runs the whole measurement single-threaded, which removes OpenMP barrier stalls when other
processes share the cores. Random weights and inputs: timing only, never quality.
"""

from __future__ import annotations

import argparse
import time

import _common as C  # the script's folder is on sys.path; the package comes from its install

SCA_SIZES = {"tiny": 128, "d16": 256, "d24": 256}
HCC_SIZES = {"tiny": 64, "d16": 128, "d24": 128}
HCC_BATCH = {"tiny": 4, "d16": 2, "d24": 1}


def interleaved(run_on, run_off, repeats: int, warmup: int = 1) -> dict:
    """Median per-pair ratio on/off of interleaved timed calls (order alternates every pair)."""
    for _ in range(warmup):
        run_on()
        run_off()
    on, off, ratios = [], [], []
    for i in range(repeats):
        order = (("on", run_on), ("off", run_off)) if i % 2 == 0 else (("off", run_off), ("on", run_on))
        t = {}
        for name, fn in order:
            t0 = time.perf_counter()
            fn()
            t[name] = time.perf_counter() - t0
        on.append(t["on"])
        off.append(t["off"])
        ratios.append(t["on"] / t["off"])
    return {
        "on_s": C.median(on),
        "off_s": C.median(off),
        "ratio": C.median(ratios),
        "ratio_iqr": C.iqr(ratios),
        "overhead_%": (C.median(ratios) - 1) * 100,
        "pairs": repeats,
    }


class Stopwatch:
    """Accumulates the wall time of wrapped calls (device-synchronised)."""

    def __init__(self, device: str) -> None:
        self.device, self.total = device, 0.0

    def wrap(self, fn):
        def timed_fn(*args, **kwargs):
            C.sync(self.device)
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            C.sync(self.device)
            self.total += time.perf_counter() - t0
            return out

        return timed_fn


def sca_overhead(arch: str, size: int, repeats: int, device: str) -> dict:
    import torch

    model = C.build_model(arch, "laplacian", device)
    gate = model.sca
    lr = C.random_lr(1, size // 4, device)

    def run(on: bool):
        def fn():
            model.sca = gate if on else None
            with torch.inference_mode():
                model.upscale(lr)
            C.sync(device)

        return fn

    try:
        res = interleaved(run(True), run(False), repeats)
        # direct share: time inside the SCA calls (instance attributes shadow the methods for this measurement)
        watch = Stopwatch(device)
        gate.guidance, gate.gate = watch.wrap(gate.guidance), watch.wrap(gate.gate)
        shares = []
        for _ in range(max(2, repeats)):
            watch.total = 0.0
            dt, _ = C.timed(run(True), device)
            shares.append(watch.total / (dt - watch.total))
    finally:
        model.sca = gate
        del gate.guidance, gate.gate
    return {
        "what": "SCA inference (upscale)",
        "arch": arch,
        "size": size,
        "batch": 1,
        **res,
        "direct_%": 100 * C.median(shares),
    }


def hcc_overhead(arch: str, size: int, batch: int, repeats: int, device: str) -> dict:
    import torch

    import methods.alignvar.hcc as hcc_mod
    from harness.training.optim import OptimConfig, build_optimizer
    from methods.alignvar.hcc import alignvar_losses

    model = C.build_model(arch, "laplacian", device, inference_only=False).train()
    opt = build_optimizer(model, OptimConfig(lr=1e-6, weight_decay=0.0))
    g = torch.Generator().manual_seed(0)
    hr = (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).to(device)
    lr_up = (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).to(device)
    label = torch.zeros(batch, dtype=torch.long, device=device)

    def run(lam: float):
        def fn():
            opt.zero_grad(set_to_none=True)
            gen = torch.Generator(device=device).manual_seed(1)
            out = alignvar_losses(model, hr, lr_up, label, generator=gen, hcc_lambda=lam)
            out.total.backward()
            opt.step()
            C.sync(device)

        return fn

    res = interleaved(run(1.0), run(0.0), repeats)

    # direct share: hcc_per_scale forward + its backward to the logits, over the rest of the step
    watch = Stopwatch(device)
    original = hcc_mod.hcc_per_scale
    hcc_mod.hcc_per_scale = watch.wrap(original)
    shares = []
    try:
        for _ in range(max(2, repeats // 2)):
            watch.total = 0.0
            C.sync(device)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            gen = torch.Generator(device=device).manual_seed(1)
            out = alignvar_losses(model, hr, lr_up, label, generator=gen, hcc_lambda=1.0)
            C.sync(device)
            tb = time.perf_counter()
            torch.autograd.grad(out.hcc, out.logits, retain_graph=True)
            C.sync(device)
            hcc_bwd = time.perf_counter() - tb
            out.total.backward()
            opt.step()
            C.sync(device)
            step = time.perf_counter() - t0 - hcc_bwd  # the step as trained (without the measuring grad)
            # the step's own backward also ran HCC's backward once: take it out of the denominator too
            shares.append((watch.total + hcc_bwd) / (step - watch.total - hcc_bwd))
    finally:
        hcc_mod.hcc_per_scale = original
    return {
        "what": "HCC training step",
        "arch": arch,
        "size": size,
        "batch": batch,
        **res,
        "direct_%": 100 * C.median(shares),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="tiny,d16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sca-repeats", type=int, default=None, help="pairs (default tiny 12, else 3)")
    parser.add_argument("--hcc-repeats", type=int, default=None, help="pairs (default tiny 20, else 5)")
    parser.add_argument("--sca-size", type=int, default=None, help="output side (default tiny 128, d16 256)")
    parser.add_argument("--hcc-size", type=int, default=None, help="crop side (default tiny 64, d16 128)")
    parser.add_argument("--skip", choices=("sca", "hcc"), default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows = []
    print(f"load average before: {C.load_average()}", flush=True)
    for arch in args.archs.split(","):
        if args.skip != "sca":
            reps = args.sca_repeats or (12 if arch == "tiny" else 3)
            rows.append(sca_overhead(arch, args.sca_size or SCA_SIZES[arch], reps, args.device))
            print(f"  done SCA {arch} (load {C.load_average()})", flush=True)
        if args.skip != "hcc":
            reps = args.hcc_repeats or (20 if arch == "tiny" else 5)
            size = args.hcc_size or HCC_SIZES[arch]
            rows.append(hcc_overhead(arch, size, HCC_BATCH[arch], reps, args.device))
            print(f"  done HCC {arch} (load {C.load_average()})", flush=True)
    cols = ["what", "arch", "size", "batch", "on_s", "off_s", "ratio", "ratio_iqr", "overhead_%", "direct_%", "pairs"]
    print(C.table(rows, cols, floatfmt="{:.4g}"))
    import torch

    print(
        f"targets: SCA <= 2 %, HCC <= 5 %  (device {args.device}, {torch.get_num_threads()} threads, "
        f"load average after: {C.load_average()})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
