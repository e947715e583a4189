"""Cross-scale error accumulation of next-scale prediction, as pure functions.

AlignVAR's second diagnosis: residual supervision only constrains each scale's increment r_k, so a deviation
at a coarse scale is carried into every accumulated reconstruction u_k = u_{k-1} + r_k after it. HCC
supervises u_k directly. We measure:

* ``per_scale_latent_error(u_pred, u_gt)``: ||u_pred_k - u_gt_k|| per scale k (MSE by default), where u_k are
  the accumulated latents (e.g. ``area_down(F_k, pn_k)`` or the 32x32 ``F_k``; see varsr-internals.md §1.4).
* ``per_scale_psnr(decoded_pred, decoded_gt)``: PSNR of the decoded accumulated images per scale.
* ``accumulation_curves``: the same error for two inputs from the model, *teacher-forced* (every scale
  predicted from the ground-truth previous scales: the one-step error) and *free-running* (from its own
  previous predictions: the accumulated error); their gap is the accumulation.
* ``perturbation_curve(run_fn, j, eps)``: inject a perturbation at scale j and measure how far every scale's
  accumulated latent moves. ``run_fn(perturbations: dict[int, eps]) -> list of K accumulated latents`` is the
  adapter the model provides and decides what "inject" means; ``harness.analysis.probes.corrupting_run_fn``
  replaces a fraction ``eps`` of the scale-j tokens by random codes during a free-running generation, every
  random draw from seeded generators, so the unperturbed and the perturbed run differ only by that
  corruption. Scales before j must not move; a model that corrects deviations shrinks the curve after j, one
  that amplifies them grows it.

Results are ``AccumulationResult`` (one curve) -> long DataFrame rows (model, mode, injected_scale,
scale_index, scale, metric, error); ``analysis/accumulation.csv`` holds those rows (``ACCUMULATION_COLUMNS``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch

Reduction = Literal["mse", "sse", "l2"]
ACCUMULATION_COLUMNS = ("model", "mode", "injected_scale", "scale_index", "scale", "metric", "error")
MODES = ("teacher_forced", "free_running", "perturbation")


def _pairs(pred: Sequence[torch.Tensor], gt: Sequence[torch.Tensor], what: str):
    if len(pred) != len(gt):
        raise ValueError(f"{what}: {len(pred)} predicted scales but {len(gt)} ground-truth scales")
    if not pred:
        raise ValueError(f"{what}: no scales given")
    for k, (p, g) in enumerate(zip(pred, gt)):
        if p.shape != g.shape:
            raise ValueError(f"{what}: scale {k}: prediction {tuple(p.shape)} vs ground truth {tuple(g.shape)}")
        yield k, p.detach().double(), g.detach().double()


def scale_error(pred: torch.Tensor, gt: torch.Tensor, reduction: Reduction = "mse") -> torch.Tensor:
    """Scalar error of one (B, ...) pair: 'mse' mean over all elements; 'sse' per-sample sum of squares
    (the HCC term ||u_pred - u_gt||_2^2) averaged over the batch; 'l2' per-sample L2 norm, batch mean."""
    diff = (pred.double() - gt.double()).flatten(1) if pred.dim() > 1 else (pred.double() - gt.double())[None]
    if reduction == "mse":
        return diff.pow(2).mean()
    if reduction == "sse":
        return diff.pow(2).sum(1).mean()
    if reduction == "l2":
        return diff.pow(2).sum(1).sqrt().mean()
    raise ValueError(f"reduction must be 'mse', 'sse' or 'l2', got {reduction!r}")


def per_scale_latent_error(
    u_pred: Sequence[torch.Tensor], u_gt: Sequence[torch.Tensor], reduction: Reduction = "mse"
) -> torch.Tensor:
    """(K,) float64 error of predicted vs ground-truth accumulated latents u_k (B, C, H_k, W_k) per scale."""
    return torch.stack([scale_error(p, g, reduction) for _, p, g in _pairs(u_pred, u_gt, "per_scale_latent_error")])


def per_scale_psnr(
    decoded_pred: Sequence[torch.Tensor], decoded_gt: Sequence[torch.Tensor], data_range: float = 1.0
) -> torch.Tensor:
    """(K,) float64 PSNR (dB) of decoded accumulated images (B, 3, H, W) per scale: per-image PSNR averaged
    over the batch (inf where identical)."""
    out = []
    for _, p, g in _pairs(decoded_pred, decoded_gt, "per_scale_psnr"):
        mse = (p - g).pow(2).flatten(1).mean(1)
        out.append((10 * torch.log10(data_range**2 / mse)).mean())
    return torch.stack(out)


def perturbation_curve(
    run_fn: Callable[[Mapping[int, Any]], Sequence[torch.Tensor]],
    j: int,
    eps: Any,
    *,
    reduction: Reduction = "mse",
    reference: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """(K,) error of every scale's accumulated latent after injecting ``eps`` at scale ``j`` vs none.

    ``run_fn({})`` is the unperturbed run (reused from ``reference`` when given), ``run_fn({j: eps})`` the
    perturbed one; both must return the K accumulated latents.
    """
    base = list(reference) if reference is not None else list(run_fn({}))
    if not 0 <= j < len(base):
        raise ValueError(f"perturbation_curve: scale {j} is outside 0..{len(base) - 1}")
    perturbed = list(run_fn({j: eps}))
    return per_scale_latent_error(perturbed, base, reduction)


@dataclass
class AccumulationResult:
    """One error curve over scales."""

    errors: torch.Tensor  # (K,)
    mode: str  # teacher_forced | free_running | perturbation
    model: str = ""
    metric: str = "mse"
    scales: Sequence[str] | None = None  # labels per scale, e.g. '13x13'; default 0..K-1
    injected_scale: int | None = None  # for mode='perturbation'
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "perturbation" and self.injected_scale is None:
            raise ValueError("mode='perturbation' needs injected_scale")
        if self.scales is not None and len(self.scales) != len(self.errors):
            raise ValueError(f"{len(self.scales)} scale labels for {len(self.errors)} errors")

    def to_frame(self) -> pd.DataFrame:
        k = len(self.errors)
        labels = list(self.scales) if self.scales is not None else [str(i) for i in range(k)]
        return pd.DataFrame(
            {
                "model": [self.model] * k,
                "mode": [self.mode] * k,
                "injected_scale": pd.array([self.injected_scale] * k, dtype="Int64"),
                "scale_index": list(range(k)),
                "scale": labels,
                "metric": [self.metric] * k,
                "error": [float(e) for e in self.errors],
            }
        )


def accumulation_curves(
    u_gt: Sequence[torch.Tensor],
    u_teacher_forced: Sequence[torch.Tensor],
    u_free_running: Sequence[torch.Tensor],
    *,
    model: str = "",
    reduction: Reduction = "mse",
    scales: Sequence[str] | None = None,
) -> list[AccumulationResult]:
    """Teacher-forced and free-running error curves against the same ground truth."""
    return [
        AccumulationResult(per_scale_latent_error(u, u_gt, reduction), mode, model, reduction, scales)
        for mode, u in (("teacher_forced", u_teacher_forced), ("free_running", u_free_running))
    ]


def perturbation_results(
    run_fn: Callable[[Mapping[int, Any]], Sequence[torch.Tensor]],
    injected: Sequence[int],
    eps: Any,
    *,
    model: str = "",
    reduction: Reduction = "mse",
    scales: Sequence[str] | None = None,
) -> list[AccumulationResult]:
    """``perturbation_curve`` for each injected scale, sharing one unperturbed reference run."""
    reference = list(run_fn({}))
    return [
        AccumulationResult(
            perturbation_curve(run_fn, j, eps, reduction=reduction, reference=reference),
            "perturbation",
            model,
            reduction,
            scales,
            injected_scale=int(j),
        )
        for j in injected
    ]


def results_to_frame(results: Sequence[AccumulationResult]) -> pd.DataFrame:
    """Long table (ACCUMULATION_COLUMNS) of several curves."""
    if not results:
        return pd.DataFrame(columns=list(ACCUMULATION_COLUMNS))
    return pd.concat([r.to_frame() for r in results], ignore_index=True)


def write_accumulation_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``analysis/accumulation.csv`` atomically, checking the schema."""
    from harness.core.atomic import atomic_path

    missing = [c for c in ACCUMULATION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: accumulation table lacks columns {missing}")
    with atomic_path(path) as tmp:
        df[list(ACCUMULATION_COLUMNS)].to_csv(tmp, index=False)
    return Path(path)


def read_accumulation_csv(path: str | Path) -> pd.DataFrame:
    """Read ``analysis/accumulation.csv``; a bad column or mode raises ValueError naming the file."""
    df = pd.read_csv(path, dtype={"scale": str, "model": str})
    missing = [c for c in ACCUMULATION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}: not an accumulation table, missing columns {missing}; expected {list(ACCUMULATION_COLUMNS)}"
        )
    bad = sorted(set(df["mode"]) - set(MODES))
    if bad:
        raise ValueError(f"{path}: unknown mode(s) {bad}; valid: {', '.join(MODES)}")
    df["model"] = df["model"].fillna("")
    df["injected_scale"] = df["injected_scale"].astype("Int64")
    return df
