"""Training objective: per-scale cross-entropy + Hierarchical Consistency Constraint (+ refiner loss).

HCC (AlignVAR): supervise the *accumulated* prediction at every scale, not only the residual tokens. Our
reading of the paper's formulas (docs/ASSUMPTIONS.md has each one next to the paper's words and the knob):

* relaxed prediction of scale k: ê_k = softmax(logits_k / tau) @ E, the softmax-expected codebook vector
  (``softmax``, default), or the straight-through one-hot(argmax) + softmax - sg(softmax) @ E
  (``straight_through``: the forward value is exactly E[argmax]);
* accumulation with the tokenizer's own rules: û_k = û_{k-1} + embed_scale(k, ê_k) (bicubic up + phi, raw at
  the last scale), û_{-1} = 0. Under teacher forcing the logits of scale k are conditioned on the ground-truth
  prefix, but û accumulates the model's predictions of all scales <= k, as in the paper's
  û^k = û^{k-1} + r̂^k;
* target u_gt^k = F_k, the cumulative quantised latent of the HR image after scale k
  (``TokenizerOutput.f_hat``), not a re-quantisation of the downsampled latent Q(Down(z, S_k)) the paper prints;
* term of scale k, ``reduction``: ``sum`` (default, the paper's ||û_k - F_k||_2^2) = the squared error summed
  over (Cvae, H, W) per image, averaged over the batch; ``mean`` = averaged over (B, Cvae, H, W);
* ``latent`` space compares û_k with F_k; ``pixel`` space decodes both with the frozen VQ-VAE decoder
  (differentiable w.r.t. its input; [-1, 1] range, unclamped) and compares the images, optionally on a subset
  of scales (``scales``; the others are NaN in the per-scale terms) and with every decode recomputed in the
  backward pass (``checkpoint_decoder``);
* HCC = sum of the terms over the computed scales.

CE: ``ce`` is VARSR's uniform per-token mean over all L tokens (scale k weighs n_k / L; the last scale ~46 %
at 512 px); ``ce_per_scale`` holds the per-scale means for logging. total = ce + lambda * HCC
(+ refiner_weight * refiner loss, VARSR's diffusion loss on the last-scale residual; 0 disables it). HCC is
computed (detached) at lambda = 0 too, so every run logs it.

``gradient_ratio`` measures how strongly HCC pulls on the logits compared with CE: per scale,
||d HCC / d logits_k|| / ||d CE / d logits_k|| (Frobenius norms over the scale's positions); lambda times it is
HCC's gradient share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from methods.alignvar.quantizer import area_down
from methods.alignvar.scales import ScaleSchedule

if TYPE_CHECKING:
    from methods.alignvar.model import AlignVAR

Relaxation = Literal["softmax", "straight_through"]
Reduction = Literal["sum", "mean"]


@dataclass
class LossOutput:
    """Scalars are 0-d tensors; ``*_per_scale`` are (K,) tensors (detached copies are the caller's job).
    ``hcc`` is detached when lambda is 0 (logged, not trained)."""

    total: Tensor
    ce: Tensor
    hcc: Tensor
    ce_per_scale: Tensor
    hcc_per_scale: Tensor
    logits: Tensor
    refiner: Tensor | None = None
    gradient_ratio: Tensor | None = None  # (K + 1,) ``gradient_ratio``: per scale, then overall
    gate: Tensor | None = None  # (B, L - 1, 1) detached SCA gate (None with SCA off)
    schedule: ScaleSchedule | None = None


def relaxed_embedding(logits: Tensor, codebook: Tensor, relaxation: Relaxation = "softmax", temperature: float = 1.0):
    """Differentiable token embedding (..., V) -> (..., Cvae) (see module docstring)."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if relaxation == "straight_through":
        hard = F.one_hot(probs.argmax(dim=-1), probs.shape[-1]).to(probs.dtype)
        probs = hard + probs - probs.detach()
    elif relaxation != "softmax":
        raise ValueError(f"unknown HCC relaxation {relaxation!r}; valid choices: softmax, straight_through")
    return probs @ codebook.float()


def teacher_input(f_hat: list[Tensor], schedule: ScaleSchedule) -> Tensor:
    """Teacher-forcing input (B, L - 1, Cvae) from the cumulative latents F_0..F_{K-2} of one tokenisation:
    ``area_down(F_k, grid k+1)`` flattened row-major (equals ``MultiScaleQuantizer.idx_to_var_input``)."""
    grids = schedule.patch_nums
    chunks = [rearrange(area_down(f_hat[k], grids[k + 1]), "b c h w -> b (h w) c") for k in range(len(f_hat) - 1)]
    if not chunks:
        return f_hat[0].new_zeros(f_hat[0].shape[0], 0, f_hat[0].shape[1])
    return torch.cat(chunks, dim=1).float()


def ce_per_scale(logits: Tensor, idx: list[Tensor], schedule: ScaleSchedule) -> tuple[Tensor, Tensor]:
    """(per-scale mean CE (K,), uniform per-token mean over all L tokens) for logits (B, L, V)."""
    target = torch.cat(idx, dim=1)
    per_token = F.cross_entropy(logits.float().transpose(1, 2), target, reduction="none")  # (B, L)
    per_scale = torch.stack([per_token[:, b:e].mean() for b, e in schedule.begin_ends])
    return per_scale, per_token.mean()


def _reduce(diff: Tensor, reduction: Reduction) -> Tensor:
    """One scale's term from the difference (B, ...): ``sum`` over non-batch dims then batch mean; ``mean``."""
    if reduction == "sum":
        return diff.pow(2).flatten(1).sum(1).mean()
    if reduction == "mean":
        return diff.pow(2).mean()
    raise ValueError(f"unknown HCC reduction {reduction!r}; valid choices: sum, mean")


def hcc_per_scale(
    logits: Tensor,
    targets: list[Tensor],
    quantizer: torch.nn.Module,
    schedule: ScaleSchedule,
    relaxation: Relaxation = "softmax",
    temperature: float = 1.0,
    space: Literal["latent", "pixel"] = "latent",
    decode: Callable[[Tensor], Tensor] | None = None,
    reduction: Reduction = "sum",
    scales: Sequence[int] | None = None,
    checkpoint_decoder: bool = False,
) -> Tensor:
    """HCC_k for every scale (K,): squared error of the accumulated relaxed prediction û_k vs F_k (module
    docstring), NaN for the scales not in ``scales`` (0-based; None = all).

    logits (B, L, V); targets: F_k (B, Cvae, H, W) per scale; ``decode`` (latent -> image) for ``pixel``
    space; ``checkpoint_decoder`` recomputes each decode in the backward pass instead of storing it.
    """
    if len(targets) != schedule.num_scales:
        raise ValueError(f"{len(targets)} HCC targets for a {schedule.num_scales}-scale schedule")
    if space not in ("latent", "pixel"):
        raise ValueError(f"unknown HCC space {space!r}; valid choices: latent, pixel")
    if space == "pixel" and decode is None:
        raise ValueError("HCC in pixel space needs a decoder (decode=vqvae.decode)")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"unknown HCC reduction {reduction!r}; valid choices: sum, mean")
    wanted = set(range(schedule.num_scales)) if scales is None else {int(k) for k in scales}
    bad = sorted(k for k in wanted if not 0 <= k < schedule.num_scales)
    if bad:
        raise ValueError(f"HCC scales {bad} outside 0..{schedule.num_scales - 1}")
    codebook = quantizer.embedding.weight
    u = None
    terms = []
    last = max(wanted) if wanted else -1
    for k, ((b, e), (h, w)) in enumerate(zip(schedule.begin_ends, schedule.patch_nums)):
        if k > last:  # nothing after the last wanted scale reaches a term
            terms.append(logits.new_full((), float("nan")))
            continue
        emb = relaxed_embedding(logits[:, b:e], codebook, relaxation, temperature)  # (B, n_k, Cvae)
        contrib = quantizer.embed_scale(k, rearrange(emb, "b (h w) c -> b c h w", h=h, w=w), schedule)
        u = contrib if u is None else u + contrib
        if k not in wanted:
            terms.append(logits.new_full((), float("nan")))
            continue
        target = targets[k].to(u.dtype)
        if space == "latent":
            terms.append(_reduce(u - target, reduction))
            continue
        with torch.no_grad():
            target_img = decode(target)
        pred_img = checkpoint(decode, u, use_reentrant=False) if checkpoint_decoder else decode(u)
        terms.append(_reduce(pred_img - target_img, reduction))
    return torch.stack(terms)


def gradient_ratio(ce: Tensor, hcc: Tensor, logits: Tensor, schedule: ScaleSchedule) -> Tensor:
    """(K + 1,): ||d hcc / d logits|| / ||d ce / d logits|| per scale (over the scale's token positions), then
    over all positions; ``retain_graph`` so the training backward still runs. A scale whose CE gradient is 0
    gives inf (or NaN when both are 0)."""
    g_ce, g_hcc = (torch.autograd.grad(loss, logits, retain_graph=True, allow_unused=True)[0] for loss in (ce, hcc))
    g_ce = torch.zeros_like(logits) if g_ce is None else g_ce
    g_hcc = torch.zeros_like(logits) if g_hcc is None else g_hcc
    ratios = [g_hcc[:, b:e].norm() / g_ce[:, b:e].norm() for b, e in schedule.begin_ends]
    ratios.append(g_hcc.norm() / g_ce.norm())
    return torch.stack(ratios).detach()


def alignvar_losses(
    model: AlignVAR,
    hr: Tensor,
    lr_up: Tensor,
    label: Tensor,
    generator: torch.Generator | None = None,
    hcc_lambda: float | None = None,
    refiner_weight: float | None = None,
    measure_gradients: bool = False,
) -> LossOutput:
    """All AlignVAR training losses for one batch (teacher forcing).

    hr, lr_up: (B, 3, H, W) in [-1, 1] (LR already upsampled to H x W); label: (B,) long (0 HQ, 1 low
    quality). The HR image is tokenised once: indices (CE targets), teacher input and HCC targets all come
    from the same ``f_to_idx``; the SCA structure maps come from ``lr_up`` only. HCC settings come from
    ``model.config.hcc``; ``hcc_lambda`` / ``refiner_weight`` override the config's ``hcc.lambda`` /
    ``refiner_weight``. HCC is computed at every lambda (without a graph at 0, unless ``measure_gradients``).
    ``generator`` drives the random SCA map and the refiner loss. ``measure_gradients`` also returns
    ``gradient_ratio`` (HCC vs CE on the logits).
    """
    cfg = model.config
    lam = cfg.hcc.lambda_ if hcc_lambda is None else hcc_lambda
    w_ref = cfg.refiner_weight if refiner_weight is None else refiner_weight
    schedule = ScaleSchedule.for_size(int(hr.shape[-2]), int(hr.shape[-1]), model.vqvae.downsample)
    if lr_up.shape != hr.shape:
        raise ValueError(f"lr_up {tuple(lr_up.shape)} must be upsampled to the HR shape {tuple(hr.shape)}")
    tok = model.vqvae.img_to_idx(hr, schedule)
    x_in = teacher_input(tok.f_hat, schedule)
    gate = model.sca(lr_up, x_in, schedule, generator) if model.sca is not None else None
    tr = model.transformer
    logits, hidden = tr(lr_up, label, x_in, schedule, sca_gate=gate, return_hidden=True)
    ce_k, ce = ce_per_scale(logits, tok.idx, schedule)
    h = cfg.hcc
    scales = h.pixel_scale_set(schedule.num_scales) if h.space == "pixel" else None
    with torch.set_grad_enabled(torch.is_grad_enabled() and (lam > 0 or measure_gradients)):
        hcc_k = hcc_per_scale(
            logits,
            tok.f_hat,
            model.vqvae.quantize,
            schedule,
            h.relaxation,
            h.temperature,
            h.space,
            decode=model.vqvae.decode,
            reduction=h.reduction,
            scales=scales,
            checkpoint_decoder=h.decoder_checkpointing,
        )
    hcc = hcc_k[list(scales)].sum() if scales is not None else hcc_k.sum()  # skipped scales are NaN
    ratio = gradient_ratio(ce, hcc, logits, schedule) if measure_gradients and hcc.requires_grad else None
    total = ce + lam * hcc if lam > 0 else ce
    ref = None
    if w_ref > 0 and tr.diffloss is not None:
        ref = refiner_loss(model, logits, hidden, tok.residual, schedule, generator)
        total = total + w_ref * ref
    gate_out = gate.detach() if gate is not None else None
    return LossOutput(total, ce, hcc, ce_k, hcc_k, logits, ref, ratio, gate_out, schedule)


def refiner_loss(
    model: AlignVAR,
    logits: Tensor,
    hidden: Tensor,
    residual: Tensor,
    schedule: ScaleSchedule,
    generator: torch.Generator | None = None,
) -> Tensor:
    """VARSR's diffusion-refiner loss (``var.py:429-456``): last-scale tokens = the model's own argmax (no
    gradient); target = residual - E[idx]; condition z = decoder_norm(h_last + word_embed(E[idx])), not
    detached (the loss also trains the transformer); every row repeated 4x with independent t and noise."""
    tr = model.transformer
    n_last = schedule.tokens_per_scale[-1]
    with torch.no_grad():
        idx = logits[:, -n_last:].argmax(dim=-1)
    emb = model.vqvae.quantize.embedding(idx)  # (B, n, Cvae)
    z = tr.decoder_norm(hidden[:, -n_last:] + tr.word_embed(emb))
    target = (residual - emb).reshape(-1, emb.shape[-1])
    return tr.diffloss.training_loss(target, z.reshape(-1, z.shape[-1]), generator=generator)
