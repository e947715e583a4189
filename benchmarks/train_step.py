"""Training-step time side by side: ours (dense mask / FlexAttention) and, given a checkout, the official VARSR.

Usage::

    python benchmarks/train_step.py --official /tmp/varsr_official          # d16, 128 px LR -> 512 px, batch 2, CPU
    python benchmarks/train_step.py --device cuda --attention dense,flex    # ours only, on a GPU
    python benchmarks/train_step.py --arch tiny --size 64 --quick           # a smoke run (seconds, CPU)

One step = what the trainers do per batch: tokenise the HR batch with the frozen VQ-VAE, the teacher-forced
transformer pass, the loss (token CE + 2 x the diffusion-refiner loss: VARSR's objective; SCA off, HCC lambda 0,
so both sides compute the same thing), backward, AdamW step. HR: DRealSR 512 px photos; LR: their 128 px
counterparts bicubic-upsampled to 512 px; label 0.

* **official** (``--official DIR``, a checkout of qyp2000/VARSR, never edited): ``build_var``, the checkpoint
  loaded strictly, ``trainer.py``'s step (``img_to_idxBl``, ``idxBl_to_var_input``, ``var(...)``, CE + 2 diff
  loss); its ``.cuda()`` calls neutralised on CPU.
* **ours**: ``AlignVAR.from_pretrained`` of the same official-layout checkpoint, ``alignvar_losses``, our AdamW
  (``harness.training.optim``: fused on CUDA); ``--attention dense,flex`` runs one process per mask path
  (FlexAttention has no CPU backward in torch 2.14, so ``flex`` is skipped on CPU with that reason).

Without ``--official`` both our paths start from a random init of the same arch (``--arch``), no checkpoint
needed. Every configuration runs in a fresh process, interleaved in rounds (official, ours-dense, ours-flex, then
the reverse order, ...); each process times ``--steps`` steps after ``--warmup`` steps and reports the median and
its peak memory. Random weights: timing only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from pathlib import Path

import _common as C  # the script's folder is on sys.path; the package comes from its install
import _official as O

HERE = Path(__file__).resolve()
NO_CPU_FLEX = "skipped: torch's FlexAttention has no backward on CPU (torch 2.14); run with --device cuda"


def batch(size: int, n: int, device: str):
    """(hr, lr_up) in [-1, 1], (n, 3, size, size): DRealSR HR photos and their LR bicubic-upsampled."""
    import torch
    import torch.nn.functional as F

    from harness.core.imageio import load_image
    from methods.alignvar.model import upsample_bicubic

    root = Path(os.environ.get("ALIGNVAR_SHARED", "../shared")) / "data" / "drealsr"
    names = sorted(p.name for p in (root / "test_HR").iterdir())[:n]
    hr = torch.stack([load_image(root / "test_HR" / k) for k in names])
    lr = torch.stack([load_image(root / "test_LR" / k) for k in names])
    if hr.shape[-1] != size:
        hr = F.interpolate(hr, size=(size, size), mode="area")
        lr = F.interpolate(lr, size=(size // 4, size // 4), mode="area")
    lr_up = upsample_bicubic(lr, (size, size))
    return (hr * 2 - 1).to(device), (lr_up * 2 - 1).to(device)


def worker(spec: dict) -> None:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(spec["threads"])
    device = spec["device"]
    hr, lr_up = batch(spec["size"], spec["batch"], device)
    label = torch.zeros(hr.shape[0], dtype=torch.long, device=device)
    if spec["side"] == "official":
        vae, var = O.build_official(Path(spec["official"]), spec["arch"], device=device, init=False)
        vae.load_state_dict(torch.load(spec["vqvae"], map_location="cpu", weights_only=True)["trainer"]["vae_local"])
        var.load_state_dict(torch.load(spec["var"], map_location="cpu", weights_only=True)["trainer"]["var_wo_ddp"])
        var.train()
        opt = torch.optim.AdamW([p for p in var.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.05)
        V = vae.vocab_size

        def step() -> float:
            with torch.no_grad():
                gt_idx, idx_n = vae.img_to_idxBl(hr)
                gt = torch.cat(gt_idx[: len(O.VARSR_PATCH_NUMS)], dim=1)
                x_in = vae.quantize.idxBl_to_var_input(idx_n)
            logits, diff_loss, _, keep = var(
                x_in, label, lr_up, None, last_layer_gt=gt_idx[-1], last_layer_gt_discrete=gt_idx[-2]
            )
            n_last = var.last_level_pns
            gt = torch.cat((gt[:, :-n_last], gt[:, -n_last:][keep].view(hr.shape[0], -1)), dim=1)
            ce = F.cross_entropy(logits.reshape(-1, V), gt.reshape(-1), reduction="none").view(hr.shape[0], -1)
            loss = ce.mean(-1).mean() + 2.0 * diff_loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(loss)
    else:
        from harness.training.optim import OptimConfig, build_optimizer
        from methods.alignvar.configs import AlignVARConfig, HCCConfig, SCAConfig
        from methods.alignvar.hcc import alignvar_losses
        from methods.alignvar.model import AlignVAR

        fields = dict(hcc=HCCConfig(lambda_=0.0), refiner_weight=2.0, attention=spec["attention"])
        if spec.get("var"):
            config = AlignVARConfig(arch="auto", checkpoint=spec["var"], sca=SCAConfig("none"), **fields)
            model = AlignVAR.from_pretrained(spec["var"], spec["vqvae"], config=config)
        else:
            model = C.build_model(spec["arch"], "none", inference_only=False, **fields)
        model = model.to(device).train()
        opt = build_optimizer(model, OptimConfig(lr=1e-4))
        gen = torch.Generator(device).manual_seed(0)

        def step() -> float:
            out = alignvar_losses(model, hr, lr_up, label, generator=gen)
            out.total.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(out.total)

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for _ in range(spec["warmup"]):
        step()
    times, cpu, losses = [], [], []
    for _ in range(spec["steps"]):
        u0 = resource.getrusage(resource.RUSAGE_SELF)
        seconds, loss = C.timed(step, device)
        u1 = resource.getrusage(resource.RUSAGE_SELF)
        times.append(seconds)
        cpu.append(u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime)
        losses.append(loss)
    peak = C.status_kib("VmHWM") / 2**20
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**30
    C.emit({"step_s": C.median(times), "cpu_s": C.median(cpu), "times": times, "loss": losses[-1], "peak_gib": peak})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official", type=Path, default=None, help="checkout of github.com/qyp2000/VARSR (optional)")
    ap.add_argument("--arch", default="d16")
    ap.add_argument("--size", type=int, default=512, help="HR side (LR = size / 4)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--attention", default="dense,flex")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds (one process per configuration each)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpoints", type=Path, default=Path("/tmp/varsr_ck"))
    ap.add_argument("--quick", action="store_true", help="tiny arch, 64 px, batch 2, no warm-up: a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.arch, args.size, args.warmup, args.official = "tiny", 64, 0, None

    var = vqvae = None
    if args.official is not None:
        if args.size != 512:
            raise SystemExit("--official runs the official 512 px schedule: --size 512")
        var, vqvae = O.official_checkpoints(args.official, args.arch, args.checkpoints)
    configs = [("official", "dense")] if args.official is not None else []
    configs += [("ours", a.strip()) for a in args.attention.split(",") if a.strip()]
    results: dict[tuple[str, str], list[dict]] = {c: [] for c in configs}
    skipped = {}
    for r in range(args.rounds):
        for side, attention in configs if r % 2 == 0 else configs[::-1]:
            if side == "ours" and attention == "flex" and not args.device.startswith("cuda"):
                skipped[(side, attention)] = NO_CPU_FLEX
                continue
            spec = {
                "side": side, "attention": attention, "arch": args.arch, "size": args.size, "batch": args.batch,
                "device": args.device, "threads": args.threads, "warmup": args.warmup, "steps": args.steps,
                "official": str(args.official) if args.official else None,
                "var": str(var) if var else None, "vqvae": str(vqvae) if vqvae else None,
            }  # fmt: skip
            load0 = C.load_average()
            res = C.run_worker(HERE, spec)
            res["load"] = f"{load0} -> {C.load_average()}"
            results[(side, attention)].append(res)
            print(
                f"round {r} {side}/{attention}: step {res['step_s']:.2f} s (times {res['times']}), cpu "
                f"{res['cpu_s']:.2f} s, loss "
                f"{res['loss']:.4f}, peak {res['peak_gib']:.2f} GiB, load avg {res['load']}",
                flush=True,
            )
    base = C.median([x["step_s"] for x in results.get(("official", "dense"), [])]) if args.official else None
    base_cpu = C.median([x["cpu_s"] for x in results.get(("official", "dense"), [])]) if args.official else None
    dense = C.median([x["step_s"] for x in results.get(("ours", "dense"), [])])
    rows = []
    for (side, attention), res in results.items():
        if not res:
            rows.append({"config": f"{side}/{attention}", "note": skipped.get((side, attention), "not run")})
            continue
        s = C.median([x["step_s"] for x in res])
        cpu = C.median([x["cpu_s"] for x in res])
        rows.append({
            "config": f"{side}/{attention}", "step_s": s, "cpu_s": cpu, "vs_official": s / base if base else None,
            "cpu_vs_official": cpu / base_cpu if base_cpu else None,
            "vs_ours_dense": s / dense if results.get(("ours", "dense")) else None,
            "peak_GiB": C.median([x["peak_gib"] for x in res]), "runs": len(res), "note": "",
        })  # fmt: skip
    mem = "torch.cuda.max_memory_allocated" if args.device.startswith("cuda") else "VmHWM"
    print(f"\n{args.arch}, {args.size // 4} px LR -> {args.size} px, batch {args.batch}, {args.device}, fp32")
    print(f"peak memory: {mem}; {args.threads} threads")
    cols = ["config", "step_s", "cpu_s", "vs_official", "cpu_vs_official", "vs_ours_dense", "peak_GiB", "runs", "note"]
    print(C.table(rows, cols))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(json.loads(sys.argv[2]))
    else:
        main()
