"""Training objective: per-scale cross-entropy + Hierarchical Consistency Constraint (+ refiner loss).

HCC (AlignVAR): supervise the *accumulated* prediction at every scale, not only the residual tokens.

* relaxed prediction of scale k: ê_k = softmax(logits_k / tau) @ E (``softmax``, default) or the
  straight-through one-hot(argmax) + softmax - sg(softmax) @ E (``straight_through``: the forward value is
  exactly E[argmax]);
* accumulation with the tokenizer's own rules: û_k = û_{k-1} + embed_scale(k, ê_k) (bicubic up + phi, raw at
  the last scale), û_{-1} = 0. Under teacher forcing the logits of scale k are conditioned on the ground-truth
  prefix, but û accumulates the model's predictions of all scales <= k, as in the paper's
  û^k = û^{k-1} + r̂^k;
* target u_gt^k = F_k, the cumulative quantised latent of the HR image after scale k
  (``TokenizerOutput.f_hat``);
* ``latent`` space: HCC_k = mean over (B, Cvae, H, W) of (û_k - F_k)^2; ``pixel`` space: decode both with the
  frozen VQ-VAE decoder (differentiable w.r.t. its input) and take the mean squared error of the images
  ([-1, 1] range, unclamped);
* HCC = sum_k HCC_k (summed over scales as in the paper's L_HCC; each term is a mean, so the sum does not grow
  with the image size).

CE: ``ce`` is VARSR's uniform per-token mean over all L tokens (scale k weighs n_k / L; the last scale ~46 %
at 512 px); ``ce_per_scale`` holds the per-scale means for logging. total = ce + lambda * HCC
(+ refiner_weight * refiner loss, VARSR's diffusion loss on the last-scale residual; 0 disables it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from methods.alignvar.quantizer import area_down
from methods.alignvar.scales import ScaleSchedule

if TYPE_CHECKING:
    from methods.alignvar.model import AlignVAR

Relaxation = Literal["softmax", "straight_through"]


@dataclass
class LossOutput:
    """Scalars are 0-d tensors; ``*_per_scale`` are (K,) tensors (detached copies are the caller's job)."""

    total: Tensor
    ce: Tensor
    hcc: Tensor
    ce_per_scale: Tensor
    hcc_per_scale: Tensor
    logits: Tensor
    refiner: Tensor | None = None


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
    chunks = [area_down(f_hat[k], schedule.patch_nums[k + 1]).flatten(2).transpose(1, 2) for k in range(len(f_hat) - 1)]
    if not chunks:
        return f_hat[0].new_zeros(f_hat[0].shape[0], 0, f_hat[0].shape[1])
    return torch.cat(chunks, dim=1).float()


def ce_per_scale(logits: Tensor, idx: list[Tensor], schedule: ScaleSchedule) -> tuple[Tensor, Tensor]:
    """(per-scale mean CE (K,), uniform per-token mean over all L tokens) for logits (B, L, V)."""
    target = torch.cat(idx, dim=1)
    per_token = F.cross_entropy(logits.float().transpose(1, 2), target, reduction="none")  # (B, L)
    per_scale = torch.stack([per_token[:, b:e].mean() for b, e in schedule.begin_ends])
    return per_scale, per_token.mean()


def hcc_per_scale(
    logits: Tensor,
    targets: list[Tensor],
    quantizer: torch.nn.Module,
    schedule: ScaleSchedule,
    relaxation: Relaxation = "softmax",
    temperature: float = 1.0,
    space: Literal["latent", "pixel"] = "latent",
    decode: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """HCC_k for every scale (K,): MSE of the accumulated relaxed prediction û_k vs F_k (module docstring).

    logits (B, L, V); targets: F_k (B, Cvae, H, W) per scale; ``decode`` (latent -> image) for ``pixel``
    space.
    """
    if len(targets) != schedule.num_scales:
        raise ValueError(f"{len(targets)} HCC targets for a {schedule.num_scales}-scale schedule")
    if space == "pixel" and decode is None:
        raise ValueError("HCC in pixel space needs a decoder (decode=vqvae.decode)")
    if space not in ("latent", "pixel"):
        raise ValueError(f"unknown HCC space {space!r}; valid choices: latent, pixel")
    B = logits.shape[0]
    codebook = quantizer.embedding.weight
    u = None
    terms = []
    for k, ((b, e), (h, w)) in enumerate(zip(schedule.begin_ends, schedule.patch_nums)):
        emb = relaxed_embedding(logits[:, b:e], codebook, relaxation, temperature)  # (B, n_k, Cvae)
        contrib = quantizer.embed_scale(k, emb.transpose(1, 2).reshape(B, -1, h, w), schedule)
        u = contrib if u is None else u + contrib
        target = targets[k].to(u.dtype)
        if space == "latent":
            terms.append(F.mse_loss(u, target))
        else:
            with torch.no_grad():
                target_img = decode(target)
            terms.append(F.mse_loss(decode(u), target_img))
    return torch.stack(terms)


def alignvar_losses(
    model: AlignVAR,
    hr: Tensor,
    lr_up: Tensor,
    label: Tensor,
    generator: torch.Generator | None = None,
    hcc_lambda: float | None = None,
    refiner_weight: float | None = None,
) -> LossOutput:
    """All AlignVAR training losses for one batch (teacher forcing).

    hr, lr_up: (B, 3, H, W) in [-1, 1] (LR already upsampled to H x W); label: (B,) long (0 HQ, 1 low
    quality). The HR image is tokenised once: indices (CE targets), teacher input and HCC targets all come
    from the same ``f_to_idx``. HCC settings come from ``model.config.hcc``; ``hcc_lambda`` /
    ``refiner_weight`` override the config's ``hcc.lambda`` / ``refiner_weight``. ``generator`` drives the
    random SCA map and the refiner loss.
    """
    cfg = model.config
    lam = cfg.hcc.lambda_ if hcc_lambda is None else hcc_lambda
    w_ref = cfg.refiner_weight if refiner_weight is None else refiner_weight
    schedule = ScaleSchedule.for_size(int(hr.shape[-2]), int(hr.shape[-1]))
    if lr_up.shape != hr.shape:
        raise ValueError(f"lr_up {tuple(lr_up.shape)} must be upsampled to the HR shape {tuple(hr.shape)}")
    tok = model.vqvae.img_to_idx(hr, schedule)
    x_in = teacher_input(tok.f_hat, schedule)
    gate = model.sca(lr_up, x_in, schedule, generator) if model.sca is not None else None
    tr = model.transformer
    logits, hidden = tr(lr_up, label, x_in, schedule, sca_gate=gate, return_hidden=True)
    ce_k, ce = ce_per_scale(logits, tok.idx, schedule)
    if lam > 0:
        hcc_k = hcc_per_scale(
            logits,
            tok.f_hat,
            model.vqvae.quantize,
            schedule,
            cfg.hcc.relaxation,
            cfg.hcc.temperature,
            cfg.hcc.space,
            decode=model.vqvae.decode,
        )
    else:
        hcc_k = logits.new_zeros(schedule.num_scales)
    hcc = hcc_k.sum()
    total = ce + lam * hcc
    ref = None
    if w_ref > 0 and tr.diffloss is not None:
        ref = refiner_loss(model, logits, hidden, tok.residual, schedule, generator)
        total = total + w_ref * ref
    return LossOutput(total, ce, hcc, ce_k, hcc_k, logits, ref)


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
