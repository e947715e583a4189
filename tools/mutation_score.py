"""Mutation score per module from a ``mutmut run`` (``make mutate``): reads ``mutants/**/*.py.meta``.

    python tools/mutation_score.py            # table: killed / timeout / survived / no tests / not checked
    python tools/mutation_score.py --survivors methods/alignvar/sca.py   # the surviving mutant names
    python tools/mutation_score.py --only 'methods.alignvar.transformer.xǁVARTransformerǁgenerate*'  # a subset
    python tools/mutation_score.py --sample 100 --seed 0 harness/analysis/probes.py > sample.txt  # a sample
    mutmut run $(cat sample.txt); python tools/mutation_score.py --names sample.txt   # its score

Score = killed / (killed + survived), with timeouts listed apart (a timeout can be a real kill, an infinite
loop, or a slow machine; docs/TESTING.md says which). Mutants without a covering test count as survivors.
When some mutants of a module were not run (a random sample, ``--sample``), the table adds the 95 % Wilson
interval of the module's score (the sample's mutants drawn uniformly without replacement).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import random
import sys
from collections import Counter
from pathlib import Path

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 37: "killed"}
TIMEOUT = {-24, 24, 36, 152, 255}


def status(code: int | None) -> str:
    if code is None:
        return "not checked"
    if code in TIMEOUT:
        return "timeout"
    return STATUS.get(code, "suspicious")


def _codes(meta: Path, only: list[str] | None, names: set[str] | None = None) -> dict[str, int | None]:
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    if only:
        codes = {k: v for k, v in codes.items() if any(fnmatch.fnmatchcase(k, g) for g in only)}
    if names is not None:
        codes = {k: v for k, v in codes.items() if k in names}
    return codes


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k / n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def sample_names(meta: Path, n: int, seed: int, only: list[str] | None) -> list[str]:
    """``n`` mutant names of one module drawn uniformly without replacement (``random.Random(seed)``)."""
    names = sorted(_codes(meta, only))
    return sorted(random.Random(seed).sample(names, min(n, len(names))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=Path, default=Path("mutants"), help="mutmut's work folder")
    parser.add_argument("--survivors", default=None, help="list the surviving mutants of this module path")
    parser.add_argument(
        "--only", action="append", default=None, help="count only the mutants whose name matches this glob"
    )
    parser.add_argument(
        "--names", type=Path, default=None, help="count only the mutants named in this file (one per line: a sample)"
    )
    parser.add_argument("--sample", type=int, default=None, help="print this many random mutant names of MODULE")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample")
    parser.add_argument("module", nargs="?", default=None, help="module path for --sample")
    args = parser.parse_args(argv)
    names = set(args.names.read_text().split()) if args.names else None
    metas = sorted(args.mutants.rglob("*.py.meta"))
    if not metas:
        print(f"{args.mutants}: no mutmut results (run `make mutate` first)", file=sys.stderr)
        return 2
    if args.sample is not None:
        for meta in metas:
            if meta.relative_to(args.mutants).as_posix().removesuffix(".meta") == args.module:
                print("\n".join(sample_names(meta, args.sample, args.seed, args.only)))
                return 0
        print(f"{args.module}: not among the mutated modules", file=sys.stderr)
        return 2
    if args.survivors:
        for meta in metas:
            if meta.relative_to(args.mutants).as_posix().removesuffix(".meta") == args.survivors:
                codes = _codes(meta, args.only, names)
                for name, code in sorted(codes.items()):
                    if status(code) in ("survived", "no tests"):
                        print(name)
                return 0
        print(f"{args.survivors}: not among the mutated modules", file=sys.stderr)
        return 2
    print(f"{'module':<45} {'mutants':>7} {'killed':>7} {'timeout':>7} {'survived':>8} {'no tests':>8} "
          f"{'unchecked':>9} {'score':>6}  95% CI (sampled)")  # fmt: skip
    for meta in metas:
        module = meta.relative_to(args.mutants).as_posix().removesuffix(".meta")
        codes = _codes(meta, args.only, names)
        if (args.only or names is not None) and not codes:
            continue
        counts = Counter(status(c) for c in codes.values())
        done = counts["killed"] + counts["survived"] + counts["no tests"]
        score = f"{100 * counts['killed'] / done:.1f}" if done else "-"
        ci = ""
        if done and counts["not checked"]:
            lo, hi = wilson(counts["killed"], done)
            ci = f"  {100 * lo:.1f}-{100 * hi:.1f}"
        print(
            f"{module:<45} {len(codes):>7} {counts['killed']:>7} {counts['timeout']:>7} {counts['survived']:>8} "
            f"{counts['no tests']:>8} {counts['not checked']:>9} {score:>6}{ci}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
