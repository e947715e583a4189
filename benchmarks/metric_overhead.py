"""Overhead of bench's metric stage over a plain loop of pyiqa calls, measured side by side in one process.

Usage::

    ALIGNVAR_OFFLINE=1 python benchmarks/metric_overhead.py                      # psnr, ssim; 8 DRealSR pairs
    python benchmarks/metric_overhead.py --metrics psnr,ssim,lpips --images 16 --repeats 15 --device cuda

Both sides score the same 8-bit SR/HR pairs (OSEDiff's DRealSR outputs against their HR images, from
``$ALIGNVAR_SHARED/data/drealsr``; ``--sr-dir``/``--hr-dir`` for other folders) with the same pyiqa models:

* **bench**: ``harness.bench.evaluate.score_batch`` on metrics built through the registry, exactly as
  ``run.py bench`` builds and calls them (input checks, clamping, ``inference_mode``, per-image floats,
  finiteness checks);
* **plain**: ``model(sr, hr)`` on the very same ``pyiqa`` ``InferenceModel`` objects, then ``.tolist()``: what a
  hand-written evaluation loop does.

Repetitions are interleaved (bench/plain, then plain/bench, ...) after a warm-up pass of each, so the load of a
shared machine hits both alike; the figure is the median of the per-repetition ratios bench/plain - 1 (target
<= 5 %), with its IQR. On a loaded machine that IQR can be larger than the effect, so the run also gives the
**direct share**: inside the bench side, the time spent in the pyiqa model calls themselves is measured, and
the rest of the stage (checks, clamping, conversions) is divided by it. The metric values of both sides are
checked to be equal.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import _common as C  # the script's folder is on sys.path; the package comes from its install


def load_pairs(sr_dir: Path, hr_dir: Path, n: int):
    import torch

    from harness.core.imageio import is_image_file, load_image

    hr_files = sorted(p for p in hr_dir.iterdir() if is_image_file(p))
    pairs = []
    for hr_path in hr_files:
        sr_path = sr_dir / hr_path.name
        if not sr_path.is_file():
            continue
        sr, hr = load_image(sr_path), load_image(hr_path)
        if sr.shape != hr.shape:
            continue
        pairs.append((hr_path.stem, sr[None], hr[None]))
        if len(pairs) == n:
            break
    if not pairs:
        raise SystemExit(f"no SR/HR pairs of equal size with the same file name in {sr_dir} and {hr_dir}")
    # every image is an 8-bit PNG already: the values are k/255, as bench's quantize_8bit gives
    return [(k, sr.to(torch.float32), hr.to(torch.float32)) for k, sr, hr in pairs]


class _Timed:
    """Stands in for a pyiqa model inside the bench side: forwards the call and adds up its seconds."""

    def __init__(self, model, device: str) -> None:
        self.model, self.device, self.seconds = model, device, 0.0

    def __call__(self, *args):
        C.sync(self.device)
        t0 = time.perf_counter()
        out = self.model(*args)
        C.sync(self.device)
        self.seconds += time.perf_counter() - t0
        return out

    def __getattr__(self, name: str):
        return getattr(self.model, name)


def main() -> None:
    shared = Path(os.environ.get("ALIGNVAR_SHARED", "../shared")) / "data" / "drealsr"
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metrics", default="psnr,ssim", help="registered metric names (lpips needs its weights)")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=9, help="interleaved repetitions (each: all images, both sides)")
    ap.add_argument("--sr-dir", type=Path, default=shared / "results_osediff")
    ap.add_argument("--hr-dir", type=Path, default=shared / "test_HR")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    import torch

    from harness.bench.evaluate import score_batch
    from harness.bench.prepare import MetricFlags
    from harness.core.registry import create

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.metrics.split(",") if n.strip()]
    metrics = {n: create("metrics", n, {"device": args.device}) for n in names}
    flags = {n: MetricFlags.of(m) for n, m in metrics.items()}
    loaded = load_pairs(args.sr_dir, args.hr_dir, args.images)
    pairs = [(k, sr.to(args.device), hr.to(args.device)) for k, sr, hr in loaded]

    def bench() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {n: [] for n in names}
        for _, sr, hr in pairs:
            for n, v in score_batch(metrics, flags, sr, hr).items():
                out[n] += v
        C.sync(args.device)
        return out

    def plain() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {n: [] for n in names}
        for _, sr, hr in pairs:
            for n, m in metrics.items():
                model = m.model  # the same pyiqa InferenceModel
                scores = model(sr, hr) if flags[n].needs_reference else model(sr)
                out[n] += scores.reshape(-1).double().cpu().tolist()
        C.sync(args.device)
        return out

    ref_b, ref_p = bench(), plain()  # warm-up, and the values must agree
    for n in names:
        if ref_b[n] != ref_p[n]:
            diff = max(abs(a - b) for a, b in zip(ref_b[n], ref_p[n]))
            raise SystemExit(f"{n}: bench and plain pyiqa values differ (max |diff| {diff:.3g})")
    load0 = C.load_average()
    t_b, t_p, ratios, shares = [], [], [], []
    plain_models = {n: m.model for n, m in metrics.items()}

    def bench_timed() -> None:
        timers = {n: _Timed(m.model, args.device) for n, m in metrics.items()}
        for n, m in metrics.items():
            m.model = timers[n]
        try:
            t0 = time.perf_counter()
            bench()
            total = time.perf_counter() - t0
        finally:
            for n, m in metrics.items():
                m.model = plain_models[n]
        inside = sum(t.seconds for t in timers.values())
        shares.append((total - inside) / inside)

    for i in range(args.repeats):
        order = (("bench", bench), ("plain", plain)) if i % 2 == 0 else (("plain", plain), ("bench", bench))
        t = {}
        for side, fn in order:
            t0 = time.perf_counter()
            fn()
            t[side] = time.perf_counter() - t0
        t_b.append(t["bench"])
        t_p.append(t["plain"])
        ratios.append(t["bench"] / t["plain"])
    for _ in range(3):  # direct share: separate calls, so that the timers' syncs do not touch the A/B above
        bench_timed()
    overhead = C.median(ratios) - 1
    row = {
        "metrics": ",".join(names),
        "images": len(pairs),
        "size": "x".join(str(s) for s in pairs[0][1].shape[-2:]),
        "bench_s": C.median(t_b),
        "plain_s": C.median(t_p),
        "overhead_%": 100 * overhead,
        "IQR_%": 100 * C.iqr(ratios),
        "direct_%": 100 * C.median(shares),
        "repeats": args.repeats,
        "load": f"{load0} -> {C.load_average()}",
    }
    print(C.table([row], list(row), floatfmt="{:.4g}"))
    print(f"same values on both sides: yes; torch threads {torch.get_num_threads()}, device {args.device}")
    direct = C.median(shares)
    for what, value in (("A/B", overhead), ("direct share", direct)):
        verdict = "met" if value <= 0.05 else "NOT met"
        print(f"metric-stage overhead, {what}: {100 * value:+.2f} % (target <= 5 %): {verdict}")


if __name__ == "__main__":
    main()
