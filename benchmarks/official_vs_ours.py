"""Inference side by side with the official VARSR code: whole processes, interleaved official / ours.

Usage::

    python benchmarks/official_vs_ours.py --official /tmp/varsr_official --archs d16 --pairs 2
    python benchmarks/official_vs_ours.py --official DIR --archs d24 --pairs 1 --refiner off --ours-precision bf16

``--official`` is a checkout of github.com/qyp2000/VARSR (never edited, nothing copied from it: it is imported in
the official worker process with ``Tensor.cuda`` neutralised, see ``_official.py``). Both sides load the same
official-layout checkpoint of random weights (``VARSR_<arch>_random.pth`` + ``VQVAE_random.pth`` in
``--checkpoints``, written once from the official classes' key list by the public golden generator) and upscale the
same 128 px DRealSR LR photo (bicubic-upsampled to 512 px once, by the parent, and handed to both as the same
tensor) at batch 1: cfg 6, greedy (top_k 1), 2 torch threads, no colour fix.

* **official**: ``build_var`` + ``load_state_dict(strict=True)`` as ``test_varsr.py`` does, then
  ``autoregressive_infer_cfg`` under ``inference_mode``;
* **ours**: ``AlignVAR.from_pretrained`` (SCA off: plain VARSR) + ``release_training_weights``, then ``generate``.

Each run is a fresh process; rounds alternate the order (official first, then ours first, ...). Printed per run:
whole-process wall seconds (imports and loading included), its CPU seconds (user + system: on a shared machine
the steadier measure of work), the generation seconds alone, per-component seconds
(LR stem, transformer + sampling, refiner, VQ-VAE decode), peak RSS (VmHWM); per pair the ratios ours/official;
then medians, and the agreement of the two outputs as PSNR (dB, on [0, 1] float outputs). Agreement needs
``--refiner off`` (the official refiner noise is unseeded; with the refiner off both sides are deterministic), in
which case the refiner call is skipped on both sides. ``--ours-precision bf16`` runs our side under bf16 autocast
(on CPUs with AVX512-BF16 / AMX oneDNN uses bf16 matmuls) and reports its agreement with the official fp32
output. Random weights: timing and agreement only, never quality.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

import _common as C  # the script's folder is on sys.path; the package comes from its install
import _official as O

HERE = Path(__file__).resolve()


# ----------------------------------------------------------------------------------------------- worker
class _Clock:
    """Adds up the seconds of wrapped calls per component."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, obj, attr: str, name: str) -> None:
        fn = getattr(obj, attr)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

        setattr(obj, attr, timed)


def worker(spec: dict) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(spec["threads"])
    lr = torch.from_numpy(np.load(spec["lr"]))  # (1, 3, 512, 512) in [-1, 1]
    clock = _Clock()
    t0 = time.perf_counter()
    refiner = spec["refiner"]
    if spec["side"] == "official":
        vae, var = O.build_official(Path(spec["official"]), spec["arch"])
        vae.load_state_dict(torch.load(spec["vqvae"], map_location="cpu", weights_only=True)["trainer"]["vae_local"])
        sd = torch.load(spec["var"], map_location="cpu", weights_only=True)["trainer"]["var_wo_ddp"]
        var.load_state_dict(sd, strict=True)
        del sd
        vae.eval(), var.eval()
        if not refiner:
            var.diffloss.sample = lambda z, temperature=1.0, cfg=1.0: z.new_zeros(z.shape[0], 32)
        clock.wrap(var.con_embedding, "forward", "stem")
        clock.wrap(var.diffloss, "sample", "refiner")
        clock.wrap(vae, "fhat_to_img", "decode")
        load_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        with torch.inference_mode():
            sr = var.autoregressive_infer_cfg(
                B=1, text_hidden=None, lr_inp=lr, negative_text=None, label_B=torch.tensor([0]),
                cfg=6.0, top_k=1, top_p=0.75, more_smooth=False,
            )  # fmt: skip
    else:
        from methods.alignvar.configs import AlignVARConfig, SCAConfig
        from methods.alignvar.model import AlignVAR

        config = AlignVARConfig(
            arch="auto",
            checkpoint=spec["var"],
            sca=SCAConfig("none"),
            color_fix="none",
            cfg=6.0,
            top_k=1,
            top_p=0.75,
            use_refiner=refiner,
            precision=spec["precision"],
        )
        model = AlignVAR.from_pretrained(spec["var"], spec["vqvae"], config=config)
        model.release_training_weights()
        tr = model.transformer
        clock.wrap(tr.con_embedding, "forward", "stem")
        if tr.diffloss is not None:
            clock.wrap(tr.diffloss, "sample", "refiner")
        clock.wrap(model, "decode", "decode")
        load_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        with torch.inference_mode():
            sr = model.generate(lr)
    gen_s = time.perf_counter() - t1
    np.save(spec["out"], sr.float().numpy())
    parts = dict(clock.seconds)
    parts["transformer"] = gen_s - sum(parts.values())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    C.emit({
        "load_s": load_s, "generate_s": gen_s, "parts": parts, "peak_gib": C.status_kib("VmHWM") / 2**20,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    })  # fmt: skip


# ----------------------------------------------------------------------------------------------- parent
def psnr(a, b) -> float:
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def prepare_lr(path: Path, out: Path) -> Path:
    import numpy as np

    from harness.core.imageio import load_image
    from methods.alignvar.model import upsample_bicubic

    lr = load_image(path)[None]
    if tuple(lr.shape[-2:]) != (128, 128):
        raise SystemExit(f"{path}: expected a 128 x 128 LR image (the 512 px official schedule), got {lr.shape}")
    np.save(out, (upsample_bicubic(lr, (512, 512)) * 2 - 1).numpy())
    return out


def run(side: str, arch: str, args, var: Path, vqvae: Path, lr: Path, out: Path, precision: str = "fp32") -> dict:
    spec = {
        "side": side,
        "arch": arch,
        "official": str(args.official),
        "var": str(var),
        "vqvae": str(vqvae),
        "lr": str(lr),
        "out": str(out),
        "refiner": args.refiner == "on",
        "threads": args.threads,
        "precision": precision,
    }
    load0 = C.load_average()
    t0 = time.perf_counter()
    res = C.run_worker(HERE, spec)
    res["wall_s"] = time.perf_counter() - t0
    res["load"] = f"{load0} -> {C.load_average()}"
    return res


def main() -> None:
    shared = Path(os.environ.get("ALIGNVAR_SHARED", "../shared"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official", type=Path, required=True, help="checkout of github.com/qyp2000/VARSR")
    ap.add_argument("--archs", default="d16")
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--refiner", choices=("on", "off"), default="off")
    ap.add_argument("--ours-precision", default="fp32", help="fp32, bf16 or both (fp32,bf16): one ours run each")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpoints", type=Path, default=Path("/tmp/varsr_ck"))
    ap.add_argument("--lr-image", type=Path, default=shared / "data" / "drealsr" / "test_LR" / "Canon_10_x1.png")
    ap.add_argument("--json", type=Path, default=None, help="also write every run's figures here")
    args = ap.parse_args()

    import numpy as np

    work = args.checkpoints
    work.mkdir(parents=True, exist_ok=True)
    lr = prepare_lr(args.lr_image, work / "lr_m11.npy")
    summary, everything = [], []
    for arch in [a.strip() for a in args.archs.split(",") if a.strip()]:
        var, vqvae = O.official_checkpoints(args.official, arch, work)
        rows = []
        precisions = [p.strip() for p in args.ours_precision.split(",") if p.strip()]
        for i in range(args.pairs):
            sides = ["official"] + [f"ours-{p}" for p in precisions]
            order = sides if i % 2 == 0 else sides[::-1]
            res, outs = {}, {}
            for side in order:
                outs[side] = work / f"sr_{arch}_{side}_{i}.npy"
                kind, _, precision = side.partition("-")
                res[side] = run(kind, arch, args, var, vqvae, lr, outs[side], precision or "fp32")
                r = res[side]
                parts = " ".join(f"{k} {v:.1f}" for k, v in sorted(r["parts"].items()))
                print(
                    f"{arch} round {i} {side:9s}: wall {r['wall_s']:.1f} s, cpu {r['cpu_s']:.1f} s, load "
                    f"{r['load_s']:.1f} s, generate {r['generate_s']:.1f} s ({parts}), peak {r['peak_gib']:.2f} GiB, "
                    f"load avg {r['load']}",
                    flush=True,
                )
            official = res["official"]
            ref = np.load(outs["official"])
            for side in sides[1:]:
                ours = res[side]
                row = {
                    "arch": arch,
                    "pair": i,
                    "ours": side,
                    "official_s": official["wall_s"],
                    "ours_s": ours["wall_s"],
                    "ratio": ours["wall_s"] / official["wall_s"],
                    "cpu_ratio": ours["cpu_s"] / official["cpu_s"],
                    "gen_ratio": ours["generate_s"] / official["generate_s"],
                    "peak_official_GiB": official["peak_gib"],
                    "peak_ours_GiB": ours["peak_gib"],
                    "mem_ratio": ours["peak_gib"] / official["peak_gib"],
                    "PSNR_dB": psnr(ref, np.load(outs[side])),
                }
                rows.append(row)
            everything.append({"arch": arch, "round": i, "order": order, "runs": res})
        cols = list(rows[0])
        print(C.table(rows, cols, floatfmt="{:.3g}"))
        for side in sorted({r["ours"] for r in rows}):
            mine = [r for r in rows if r["ours"] == side]
            med = {k: C.median([r[k] for r in mine]) for k in cols if k not in ("arch", "pair", "ours")}
            med.update(arch=arch, ours=side, pairs=len(mine))
            summary.append(med)
    print()
    print(
        f"medians (refiner {args.refiner}, {args.threads} threads, "
        f"{C.environment()['cpu']}, torch {C.environment()['torch']}):"
    )
    cols = ["arch", "ours", "pairs", "official_s", "ours_s", "ratio", "cpu_ratio", "gen_ratio", "peak_official_GiB"]
    cols += ["peak_ours_GiB"]
    cols += ["mem_ratio", "PSNR_dB"]
    print(C.table(summary, cols, floatfmt="{:.3g}"))
    if args.refiner == "on":
        print("PSNR with the refiner on compares two different refiner noises (official: unseeded): not agreement")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args), "runs": everything}, default=str))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(json.loads(sys.argv[2]))
    else:
        main()
