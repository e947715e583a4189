"""The GPU figures of docs/PERFORMANCE.md in one run, printed as one table (``benchmarks/gpu_check.sh`` calls it).

Usage::

    python benchmarks/gpu_check.py --device cuda          # d24 at 512 px, d16 training step; ~5 min on one H100/H200
    python benchmarks/gpu_check.py --device cpu --quick   # the same code paths on tiny / 64 px (a smoke run)

Rows (random weights: timing and agreement only):

* **latency, batch 1**: ``AlignVAR.upscale`` of a 128 px LR (``--quick``: 16 px) at fp32, bf16 and bf16 +
  ``compile``, each in a fresh process (compilation included in the warm-up, not in the timed calls); target on
  one H100/H200: <= 0.15 s per 512 px image in bf16;
* **throughput**: images per second at batch 8 and 16, bf16 (target >= 20 images/s);
* **agreement**: PSNR of the bf16 output against the fp32 output (same weights, same seed, refiner off);
* **training step**: ``train_step.py`` at d16, 512 px, batch 2, dense mask vs FlexAttention (fused AdamW on CUDA).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import _common as C  # the script's folder is on sys.path; the package comes from its install

HERE = Path(__file__).resolve()


def worker(spec: dict) -> None:
    import numpy as np
    import torch

    device = spec["device"]
    model = C.build_model(spec["arch"], "laplacian", device=device, precision=spec["precision"])
    model.config.compile = spec["compile"]
    lr = C.random_lr(spec["batch"], spec["lr_side"], device)
    kwargs = {} if spec["refiner"] else {"use_refiner": False}
    for _ in range(spec["warmup"]):
        model.upscale(lr, **kwargs)
    times = []
    out = None
    for _ in range(spec["repeats"]):
        seconds, out = C.timed(lambda: model.upscale(lr, **kwargs), device)
        times.append(seconds)
    if spec.get("save"):
        np.save(spec["save"], out.float().cpu().numpy())
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else C.status_kib("VmHWM") / 2**20
    C.emit({"s": C.median(times), "times": times, "peak_gib": peak})


def psnr(a, b) -> float:
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny arch, 64 px, few calls: checks the code paths")
    ap.add_argument("--out", type=Path, default=Path("/tmp/gpu_check"), help="folder for outputs and the JSON")
    ap.add_argument("--no-train", action="store_true", help="skip the training-step rows")
    ap.add_argument("--no-compile", action="store_true", help="skip the bf16 + compile row")
    args = ap.parse_args()
    import numpy as np

    arch, lr_side = ("tiny", 16) if args.quick else ("d24", 128)
    warmup, repeats = (1, 1) if args.quick else (2, 5)
    batches = (2, 4) if args.quick else (8, 16)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []

    def run(label: str, **spec) -> dict:
        full = {"device": args.device, "arch": arch, "lr_side": lr_side, "batch": 1, "precision": "fp32",
                "compile": False, "refiner": True, "warmup": warmup, "repeats": repeats} | spec  # fmt: skip
        t0 = time.perf_counter()
        res = C.run_worker(HERE, full)
        res["wall_s"] = time.perf_counter() - t0
        print(f"{label}: {res['s']:.3f} s per call (times {res['times']}), peak {res['peak_gib']:.2f} GiB", flush=True)
        return res

    for label, precision, compiled in (
        ("fp32", "fp32", False),
        ("bf16", "bf16", False),
        ("bf16+compile", "bf16", True),
    ):
        if compiled and args.no_compile:
            rows.append({"what": f"latency b1 {label}", "unit": "", "target": "skipped: --no-compile"})
            continue
        r = run(f"latency {label}", precision=precision, compile=compiled)
        rows.append({"what": f"latency b1 {label}", "value": r["s"], "unit": "s/image", "target": "<= 0.15 (bf16)",
                     "peak_GiB": r["peak_gib"]})  # fmt: skip
    for b in batches:
        r = run(f"throughput b{b}", precision="bf16", batch=b)
        rows.append({"what": f"throughput b{b} bf16", "value": b / r["s"], "unit": "images/s", "target": ">= 20",
                     "peak_GiB": r["peak_gib"]})  # fmt: skip
    outs = {}
    for precision in ("fp32", "bf16"):
        outs[precision] = args.out / f"agree_{precision}.npy"
        run(
            f"agreement {precision}", precision=precision, refiner=False, warmup=0, repeats=1, save=str(outs[precision])
        )
    agree = psnr(np.load(outs["fp32"]), np.load(outs["bf16"]))
    rows.append({"what": "bf16 vs fp32 (refiner off)", "value": agree, "unit": "dB PSNR", "target": ">= 35"})
    if not args.no_train:
        cmd = [sys.executable, str(HERE.parent / "train_step.py"), "--device", args.device, "--attention", "dense,flex"]
        cmd += (
            ["--quick"]
            if args.quick
            else ["--arch", "d16", "--size", "512", "--batch", "2", "--warmup", "2", "--steps", "5"]
        )
        proc = subprocess.run(cmd, capture_output=True, text=True)
        print(proc.stdout[-3000:], proc.stderr[-3000:] if proc.returncode else "", flush=True)
        for line in proc.stdout.splitlines():
            if line.startswith("round ") and ": step " in line:
                config = line.split()[2].rstrip(":")
                seconds = float(line.split(": step ")[1].split()[0])
                rows.append({"what": f"train step {config}", "value": seconds, "unit": "s/step", "target": ""})
            elif "skipped:" in line and line.split()[0].startswith("ours/"):
                rows.append({"what": f"train step {line.split()[0]}", "unit": "", "target": line.split("skipped:")[1]})
    env = C.environment()
    print(f"\n{env['cuda'] or env['cpu']}, torch {env['torch']}, arch {arch}, {4 * lr_side} px output")
    print(C.table(rows, ["what", "value", "unit", "target", "peak_GiB"], floatfmt="{:.4g}"))
    (args.out / "gpu_check.json").write_text(json.dumps({"env": env, "rows": rows}, default=str))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(json.loads(sys.argv[2]))
    else:
        main()
