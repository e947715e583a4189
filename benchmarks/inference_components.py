"""Latency and peak memory of AlignVAR inference, per component: LR stem, transformer per scale, refiner, decode.

Usage::

    python benchmarks/inference_components.py                                  # tiny, d16, d24; 512 px; CPU
    python benchmarks/inference_components.py --archs d24 --batches 1 --warmup 0 --repeats 1
    python benchmarks/inference_components.py --archs d16,d24 --device cuda --precision bf16 --batches 1,8

    python benchmarks/inference_components.py --archs d24 --batches 1 --warmup 0 --repeats 1 --checkpoints /tmp/ck

Every (arch, batch) runs in a fresh interpreter so that one configuration's allocations cannot inflate the
next one's peak memory. The worker builds the model with random (constructor) weights (timing does not
depend on weight values; nothing here is a quality number) and releases what inference never reads (the
VQ-VAE encoder and the AdaLN projections, ``AlignVAR.release_training_weights``, as the bench methods and
``run.py infer`` do). With ``--checkpoints DIR`` it instead loads a checkpoint of those random weights (saved
once into DIR) the way ``run.py infer`` does, so the figures include reading the weights from disk: the
whole user-facing path, end to end. It then runs ``warmup`` untimed and ``repeats`` timed ``AlignVAR.upscale``
calls on a seeded random LR of ``size / 4`` pixels, and reports medians.

Components are timed with forward hooks (no change to the model code): ``stem`` = ``con_embedding``;
``scale k`` = from the first block's call of step k to the next step (sampling and next-input building
included); ``refiner`` = first to last call of the refiner MLP; ``decode`` = the VQ-VAE decoder; ``other`` =
the rest of ``upscale`` (bicubic upsampling, SCA maps, colour fix). On CUDA the hooks synchronise the device
(the end-to-end time is measured in the same calls, so it includes those syncs).

Memory. CPU: peak resident set size (``/proc/self/status`` VmHWM, reset per phase) of the whole process,
reported next to the RSS right after ``import torch`` (the interpreter and torch's libraries, ~0.5 GiB for the
CUDA wheel) and after building the model (weights): ``peak - baseline`` is what the model and inference
need. CUDA: ``torch.cuda.max_memory_allocated`` per phase (weights included).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _common as C  # the script's folder is on sys.path; the package comes from its install

DEFAULT_ARCHS = "tiny,d16,d24"
DEFAULT_BATCHES = {"tiny": "1,4", "d16": "1,2", "d24": "1"}


class ComponentTimer:
    """Forward hooks that timestamp the phases of one ``upscale`` call (see module docstring)."""

    def __init__(self, model, device: str, peaks: C.PeakRSS | None) -> None:
        import torch

        self.device, self.peaks, self.cuda = device, peaks, str(device).startswith("cuda")
        self.events: list[tuple[str, float, int | None]] = []
        tr = model.transformer
        self.handles = [
            tr.con_embedding.register_forward_pre_hook(lambda m, a: self._event("stem")),
            tr.con_embedding.register_forward_hook(lambda m, a, o: self._event("after_stem")),
            tr.blocks[0].register_forward_pre_hook(lambda m, a: self._event("scale")),
            model.vqvae.decoder.register_forward_pre_hook(lambda m, a: self._event("decode")),
            model.vqvae.decoder.register_forward_hook(lambda m, a, o: self._event("after_decode")),
        ]
        if tr.diffloss is not None:
            net = tr.diffloss.net
            self.handles += [
                net.register_forward_pre_hook(lambda m, a: self._event("refiner")),
                net.register_forward_hook(lambda m, a, o: self._event("after_refiner")),
            ]
        self._torch = torch

    def _event(self, name: str) -> None:
        if self.cuda:
            self._torch.cuda.synchronize()
            mem = int(self._torch.cuda.max_memory_allocated())
            self._torch.cuda.reset_peak_memory_stats()
        else:
            mem = self.peaks.mark() if self.peaks is not None else None
        self.events.append((name, time.perf_counter(), mem))

    def start(self) -> None:
        self.events = []
        self._event("start")

    def stop(self) -> dict:
        self._event("end")
        return self.phases()

    def phases(self) -> dict:
        """{phase: [seconds, peak bytes during the phase]} with phases stem, scale_k, refiner, decode, other."""
        ev = self.events
        out: dict[str, list] = {}

        def add(name: str, dt: float, mem: int | None) -> None:
            prev = out.get(name, [0.0, None])
            peak = mem if prev[1] is None else (prev[1] if mem is None else max(prev[1], mem))
            out[name] = [prev[0] + dt, peak]

        scale = -1
        current = "other"
        for (name, t, _), (_, t_next, mem_next) in zip(ev[:-1], ev[1:]):
            # the phase that runs from this event to the next one
            if name == "stem":
                current = "stem"
            elif name == "scale":
                scale += 1
                current = f"scale_{scale}"
            elif name == "refiner":
                current = "refiner"
            elif name == "decode":
                current = "decode"
            elif name in ("after_stem", "after_decode", "start"):
                current = "other"
            elif name == "after_refiner":
                current = "refiner"  # between refiner steps (sampling maths) still counts as refiner
            add(current, t_next - t, mem_next)
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def worker(spec: dict) -> dict:
    """Fresh-process measurement of one (arch, batch, device, precision) configuration."""
    base_rss = C.rss_bytes()
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = spec["device"]
    import_rss = C.rss_bytes()
    peaks = C.PeakRSS() if device == "cpu" else None
    t0 = time.perf_counter()
    options = dict(precision=spec["precision"], compile=spec["compile"])
    if spec.get("checkpoint"):
        model = C.load_model(Path(spec["checkpoint"]), device, **options)
    else:
        model = C.build_model(spec["arch"], spec["sca"], device, **options)
    build_s = time.perf_counter() - t0
    load_peak = peaks.mark() if peaks is not None else None
    weights_rss = C.rss_bytes()
    params = model.parameter_counts()
    lr = C.random_lr(spec["batch"], spec["size"] // 4, device)
    if device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        for _ in range(spec["warmup"]):
            model.upscale(lr)
        timer = ComponentTimer(model, device, peaks)
        runs = []
        for _ in range(spec["repeats"]):
            timer.start()
            model.upscale(lr)
            runs.append(timer.stop())
        timer.remove()
    phases = sorted({p for r in runs for p in r}, key=_phase_order)
    result = {
        **spec,
        "env": C.environment(),
        "build_s": build_s,
        "load_peak_rss": load_peak,
        "params": params,
        "rss_start": base_rss,
        "rss_after_import": import_rss,
        "rss_after_build": weights_rss,
        "total_s": [sum(v[0] for v in r.values()) for r in runs],
        "phases": {
            p: {"s": [r[p][0] for r in runs if p in r], "peak": max((r[p][1] or 0) for r in runs)} for p in phases
        },
    }
    if device == "cpu":
        result["peak_rss"] = peaks.overall if peaks.can_reset else None  # the load's peak included
    else:
        result["peak_cuda"] = max(v["peak"] for v in result["phases"].values())
    return result


def _phase_order(name: str) -> tuple[int, int]:
    order = {"stem": 0, "refiner": 2, "decode": 3, "other": 4}
    if name.startswith("scale_"):
        return (1, int(name.split("_")[1]))
    return (order.get(name, 5), 0)


def summarise(results: list[dict]) -> str:
    rows, scale_rows = [], []
    for r in results:
        ph = r["phases"]
        med = {p: C.median(v["s"]) for p, v in ph.items()}
        scales = [p for p in ph if p.startswith("scale_")]
        total = C.median(r["total_s"])
        mem = r.get("peak_rss") or r.get("peak_cuda")
        row = {
            "arch": r["arch"],
            "B": r["batch"],
            "device": r["device"],
            "prec": r["precision"],
            "total s": total,
            "s/img": total / r["batch"],
            "IQR s": C.iqr(r["total_s"]),
            "stem": med.get("stem"),
            "transformer": sum(med[p] for p in scales),
            "refiner": med.get("refiner"),
            "decode": med.get("decode"),
            "other": med.get("other"),
            "peak GiB": mem / C.GIB if mem else None,
        }
        row["load s" if r.get("checkpoint") else "build s"] = r["build_s"]
        if r["device"] == "cpu":
            row["load peak GiB"] = r["load_peak_rss"] / C.GIB if r.get("load_peak_rss") else None
            row["import GiB"] = (r["rss_after_import"] or 0) / C.GIB
            row["weights GiB"] = ((r["rss_after_build"] or 0) - (r["rss_after_import"] or 0)) / C.GIB
            row["peak-import GiB"] = (mem - r["rss_after_import"]) / C.GIB if mem and r["rss_after_import"] else None
        row["n"] = len(r["total_s"])
        rows.append(row)
        srow = {"arch": r["arch"], "B": r["batch"]}
        srow.update({p.replace("scale_", "k"): med[p] for p in scales})
        scale_rows.append(srow)
    cols = list(rows[0]) if rows else []
    scols = list(dict.fromkeys(c for s in scale_rows for c in s))
    return (
        "seconds per upscale call (median), peak memory of the whole process\n"
        + C.table(rows, cols)
        + "\n\ntransformer seconds per scale (k = scale index; k0 = LR prefix + class token step)\n"
        + C.table(scale_rows, scols)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=DEFAULT_ARCHS, help=f"comma-separated (default {DEFAULT_ARCHS})")
    parser.add_argument("--size", type=int, default=512, help="output side in pixels (LR = size/4); default 512")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default per arch)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--sca", default="laplacian", choices=("laplacian", "random", "none"))
    parser.add_argument("--compile", action="store_true", help="AlignVARConfig.compile (torch.compile)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=None,
        help="load the model from a checkpoint of its random weights, saved once into this folder (the whole "
        "run.py infer path: the figures include reading the weights); default: build in memory",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write all raw results as JSON")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        C.emit(worker(json.loads(args.worker)))
        return 0
    results = []
    print(f"load average before: {C.load_average()}", flush=True)
    for arch in args.archs.split(","):
        checkpoint = C.random_checkpoint(arch, args.sca, args.checkpoints) if args.checkpoints else None
        batches = args.batches or DEFAULT_BATCHES.get(arch, "1")
        for batch in [int(b) for b in batches.split(",")]:
            spec = dict(
                arch=arch,
                batch=batch,
                size=args.size,
                device=args.device,
                precision=args.precision,
                sca=args.sca,
                compile=args.compile,
                warmup=args.warmup,
                repeats=args.repeats,
                threads=args.threads,
                checkpoint=str(checkpoint) if checkpoint else None,
            )
            t0 = time.perf_counter()
            res = C.run_worker(Path(__file__), spec)
            print(
                f"  {arch} batch {batch}: {time.perf_counter() - t0:.0f} s wall (load {C.load_average()})", flush=True
            )
            results.append(res)
    print(summarise(results))
    print("random weights: timings only, never quality numbers")
    if args.out:
        from harness.core.atomic import write_json

        write_json(args.out, results)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
