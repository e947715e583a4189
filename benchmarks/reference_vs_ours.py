"""Our KV-cached next-scale inference vs a straightforward reference (no cache: every scale recomputes the whole
sequence so far with the block-causal mask), with a token-identity check.

Usage::

    python benchmarks/reference_vs_ours.py                          # d16 and d24 at 256 px, CPU
    python benchmarks/reference_vs_ours.py --archs d16 --size 512 --repeats 2

Both paths are ``VARTransformer.generate`` (``kv_cache=True`` / ``False``, i.e. ``generate_reference``) on
the same model, LR, SCA gate and greedy 2-branch CFG, without the refiner and the decoder (identical in both,
so they would only dilute the ratio). Calls are interleaved (ours/reference, then reference/ours, ...); the
ratio is the median of per-pair ratios. Tokens must be identical and the token latents ``f_hat`` close: the
script exits with status 1 otherwise. Random weights: timing only, never quality.
"""

from __future__ import annotations

import argparse
import sys
import time

import _common as C  # the script's folder is on sys.path; the package comes from its install


def compare(arch: str, size: int, repeats: int, device: str) -> dict:
    import torch

    model = C.build_model(arch, "laplacian", device)
    lr = C.random_lr(1, size, device) * 2 - 1  # the model-size LR in [-1, 1] (already "upsampled")
    tr, q = model.transformer, model.vqvae.quantize
    schedule = tr.schedule_for(lr)
    gate = model.sca.gate_fn(model.sca.guidance(lr, schedule))

    def run(kv_cache: bool):
        with torch.inference_mode():
            return tr.generate(lr, q, schedule, cfg=6.0, top_k=1, use_refiner=False, sca=gate, kv_cache=kv_cache)

    ours_s, ref_s, ratios = [], [], []
    out = {}
    for i in range(repeats):
        order = (True, False) if i % 2 == 0 else (False, True)
        t = {}
        for kv in order:
            dt, out[kv] = C.timed(lambda kv=kv: run(kv), device)
            t[kv] = dt
        ours_s.append(t[True])
        ref_s.append(t[False])
        ratios.append(t[False] / t[True])
    same = all(torch.equal(a, b) for a, b in zip(out[True].tokens, out[False].tokens))
    fdiff = float((out[True].f_hat_tokens - out[False].f_hat_tokens).abs().max())
    return {
        "arch": arch,
        "size": size,
        "tokens": schedule.total_tokens,
        "ours_s": C.median(ours_s),
        "reference_s": C.median(ref_s),
        "speedup": C.median(ratios),
        "speedup_iqr": C.iqr(ratios),
        "same_tokens": same,
        "f_hat_maxdiff": fdiff,
        "pairs": repeats,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="d16,d24")
    parser.add_argument("--size", type=int, default=256, help="output side in pixels (default 256)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved pairs (default 2)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    print(f"load average before: {C.load_average()}", flush=True)
    rows = []
    for arch in args.archs.split(","):
        t0 = time.perf_counter()
        rows.append(compare(arch, args.size, args.repeats, args.device))
        print(f"  {arch}: {time.perf_counter() - t0:.0f} s (load {C.load_average()})", flush=True)
    cols = list(rows[0])
    print(C.table(rows, cols, floatfmt="{:.4g}"))
    print("speedup = reference seconds / ours (transformer generation only, greedy CFG, refiner/decoder excluded)")
    ok = all(r["same_tokens"] and r["f_hat_maxdiff"] < 1e-3 for r in rows)
    if not ok:
        print("MISMATCH: the reference path and the KV-cached path disagree", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
