"""Efficiency table (the paper's Table 2 plus spread, memory, device) for the methods of an experiment YAML.

Usage::

    python benchmarks/efficiency_table.py experiments/demo.yaml --lr-size 128 --out results/efficiency.csv
    python benchmarks/efficiency_table.py experiments/demo.yaml bench.device=cuda --repeats 10

Every method of the experiment is built, moved to ``bench.device`` and timed at batch 1 on a seeded random
``lr-size`` input (see ``harness.bench.efficiency`` for what each column means). Precomputed output folders appear
with their reported timings and unknown parameters. ``--batch-sizes 1,2,4`` adds a throughput table.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", help="experiment YAML whose methods are measured")
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. bench.device=cuda")
    parser.add_argument("--lr-size", type=int, default=128, help="LR side in pixels (default 128 -> 512 at x4)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--batch-sizes", default="", help="comma-separated batch sizes for throughput")
    parser.add_argument("--out", type=Path, help="write the table as CSV (atomically)")
    args = parser.parse_args(argv)

    import pandas as pd

    from harness.bench.efficiency import efficiency_table, throughput_vs_batch
    from harness.config.experiment import load_experiment
    from harness.core.atomic import write_with
    from harness.core.device import resolve_device

    cfg = load_experiment(args.experiment, args.overrides)
    device = resolve_device(cfg.bench.device)
    methods = {spec.name: spec.create().to(device) for spec in cfg.methods}
    try:
        table = efficiency_table(
            methods,
            args.lr_size,
            repeats=args.repeats,
            warmup=args.warmup,
            memory=not args.no_memory,
            progress=True,
        )
        with pd.option_context("display.max_columns", None, "display.width", 200):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        if args.out:
            write_with(args.out, lambda tmp: table.to_csv(tmp, index=False))
            print(f"wrote {args.out}")
        if args.batch_sizes:
            sizes = [int(s) for s in args.batch_sizes.split(",") if s]
            for name, method in methods.items():
                if method.precomputed:
                    continue
                rows = throughput_vs_batch(method, args.lr_size, sizes, repeats=args.repeats, warmup=1)
                print(f"\n{name}: throughput vs batch size ({device})")
                print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    finally:
        for method in methods.values():
            method.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
