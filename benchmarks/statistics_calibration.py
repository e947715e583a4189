"""Calibration of the bench statistics: false-verdict rate on null data, detection rate of the minimum effect.

Usage::

    python benchmarks/statistics_calibration.py                      # the documented design, 9999 resamples
    python benchmarks/statistics_calibration.py --repetitions 1000 --n-images 50 --resamples 999

For each test (sign-flip permutation, Wilcoxon) and noise (normal, Student t with 4 degrees of freedom) it runs
``--repetitions`` synthetic paired comparisons (``harness.core.calibration``: n images, paired-difference sd
of 3 minimum effects, alpha 0.05) and prints

* the false-verdict rate on null data (both arms from one distribution) with the 99 % quantile of
  Binomial(R, alpha) that a correct procedure stays under with 99 % probability,
* the detection rate of a planted effect of the minimum size (PSNR-Y: 0.05 dB) with its one-sided 99 %
  Clopper-Pearson lower bound (>= 80 % is the target),
* the family-wise false-verdict rate of a table of ``--family`` null metrics adjusted with Holm.

Deterministic: repetition r uses the generator ``default_rng([seed, r])``. tests/test_statistics_calibration.py
asserts the same checks with fewer resamples.
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> int:
    from scipy import stats as st

    from harness.core.calibration import (
        DESIGN_N_IMAGES,
        DESIGN_SD_IN_MIN_EFFECTS,
        Design,
        familywise_rate,
        verdict_rate,
    )
    from harness.core.stats import DEFAULT_N_RESAMPLES, StatisticsOptions, min_effect

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=400, help="synthetic comparisons per rate (400)")
    parser.add_argument("--n-images", type=int, default=DESIGN_N_IMAGES, help=f"images ({DESIGN_N_IMAGES})")
    parser.add_argument("--resamples", type=int, default=DEFAULT_N_RESAMPLES, help="bootstrap/permutation resamples")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--family", type=int, default=4, help="null metrics per table for the Holm check (4)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    delta = min_effect("psnr_y")
    sd = DESIGN_SD_IN_MIN_EFFECTS * delta
    reps = args.repetitions
    print(
        f"design: n = {args.n_images} images, paired-difference sd = {sd:g} dB, minimum effect = {delta:g} dB "
        f"(PSNR-Y), alpha = {args.alpha:g}, {args.resamples} resamples, {reps} repetitions per rate"
    )
    null_bound = int(st.binom.ppf(0.99, reps, args.alpha))
    header = f"{'test':<12} {'noise':<7} {'false verdicts (null)':>28} {'detected (planted)':>30} {'seconds':>8}"
    print(header)
    print("-" * len(header))
    for test in ("permutation", "wilcoxon"):
        opts = StatisticsOptions(alpha=args.alpha, test=test, n_resamples=args.resamples, seed=args.seed)
        for noise in ("normal", "t4"):
            start = time.perf_counter()
            null = verdict_rate(Design(args.n_images, sd, 0.0, noise=noise), reps, options=opts, seed=args.seed)
            planted = verdict_rate(
                Design(args.n_images, sd, delta, noise=noise), reps, options=opts, count=("better",), seed=args.seed
            )
            low = st.binomtest(planted.hits, reps).proportion_ci(confidence_level=0.98, method="exact").low
            print(
                f"{test:<12} {noise:<7} {null.hits:>5}/{reps} = {null.rate:6.1%} (bound {null_bound:>3})"
                f" {planted.hits:>5}/{reps} = {planted.rate:6.1%} (>= {low:5.1%})"
                f" {time.perf_counter() - start:8.1f}"
            )
        fw = familywise_rate(Design(args.n_images, sd), reps, args.family, options=opts, seed=args.seed)
        print(
            f"{test:<12} family-wise, {args.family} null metrics, Holm: {fw.hits}/{reps} = {fw.rate:.1%} "
            f"(bound {null_bound})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
