"""Training objective of the multi-scale residual VQ-VAE (VAR's ``VectorQuantizer2`` training path).

For users without VQ-VAE weights (and for CPU tests). Per scale k the remaining residual is quantised exactly as
in tokenisation (area-down, nearest code, ``embed_scale``: bicubic-up + phi, raw at the last scale, VARSR's rule),
and the running reconstruction ``f_hat`` gets the codebook / commitment losses of VQ-VAE:

    L_vq = mean_k [ ||sg(f_hat_k) - f||^2 * beta + ||f_hat_k - sg(f)||^2 ]

The decoder sees the straight-through latent ``f + sg(f_hat_K - f)``, so the reconstruction loss (L1 + MSE on
pixels; LPIPS optional when its weights are available) trains the encoder as well. Codebook entries receive
gradient through the second term, and the phi convs through both.

Codebook collapse (a handful of codes doing all the work) is the usual failure of small VQ-VAEs. The quantizer's
``ema_vocab_hit_SV`` buffer (per-scale code usage, kept in the official key layout) is updated with an EMA of the
code histogram every step (``update_code_usage``), and ``restart_dead_codes`` re-seeds codes whose usage fell far
below uniform with residual vectors of the current batch. Both are part of the state dict, so resuming a run
reproduces them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from methods.alignvar.quantizer import area_down
from methods.alignvar.scales import ScaleSchedule
from methods.alignvar.vqvae import VQVAE


@dataclass
class TokenizerLoss:
    total: Tensor
    recon_l1: Tensor
    recon_mse: Tensor
    vq: Tensor
    codebook_usage: Tensor  # fraction of codebook entries used in this batch (diagnostic)
    reconstruction: Tensor  # decoded straight-through image (B, 3, H, W), [-1, 1] range (unclamped)
    codes: list[Tensor]  # per scale, the chosen code of every position (N_k,)
    residuals: list[Tensor]  # per scale, the residual vectors that were quantised (N_k, Cvae), detached


def quantize_straight_through(
    vae: VQVAE, f: Tensor, schedule: ScaleSchedule
) -> tuple[Tensor, Tensor, list[Tensor], list[Tensor]]:
    """Multi-scale residual quantisation with gradients. Returns (f_st, vq_loss, codes, residuals) per scale."""
    quantizer = vae.quantize
    B, C, H, W = f.shape
    f_hat = torch.zeros_like(f)
    vq_loss = f.new_zeros(())
    used, residuals = [], []
    for k, (ph, pw) in enumerate(schedule.patch_nums):
        rest = (f - f_hat).detach()
        z = rest if k == schedule.num_scales - 1 else area_down(rest, (ph, pw))
        z_rows = rearrange(z, "b c h w -> (b h w) c")
        idx, _ = quantizer.nearest(z_rows)
        used.append(idx)
        residuals.append(z_rows)
        h = quantizer.embed_scale(k, quantizer.lookup(idx.view(B, ph * pw), (ph, pw)), schedule)
        f_hat = f_hat + h
        vq_loss = vq_loss + quantizer.beta * F.mse_loss(f_hat.detach(), f) + F.mse_loss(f_hat, f.detach())
    vq_loss = vq_loss / schedule.num_scales
    f_st = f + (f_hat - f).detach()
    # codebook + phi gradients come from vq_loss; the decoder path uses the straight-through latent
    return f_st, vq_loss, used, residuals


def tokenizer_loss(
    vae: VQVAE,
    img: Tensor,
    schedule: ScaleSchedule | None = None,
    mse_weight: float = 1.0,
    vq_weight: float = 1.0,
) -> TokenizerLoss:
    """Loss for one batch of images in [-1, 1]."""
    if schedule is None:
        schedule = ScaleSchedule.for_size(int(img.shape[-2]), int(img.shape[-1]), vae.downsample)
    f = vae.encode(img)
    f_st, vq, codes, residuals = quantize_straight_through(vae, f, schedule)
    recon = vae.decode(f_st)
    l1 = F.l1_loss(recon, img)
    mse = F.mse_loss(recon, img)
    total = l1 + mse_weight * mse + vq_weight * vq
    usage = torch.tensor(torch.cat(codes).unique().numel() / vae.vocab_size, device=img.device)
    return TokenizerLoss(total, l1, mse, vq, usage, recon, codes, residuals)


@torch.no_grad()
def update_code_usage(vae: VQVAE, codes: list[Tensor], decay: float = 0.99) -> None:
    """EMA of each scale's code histogram (as a fraction of positions) into ``quantize.ema_vocab_hit_SV``.

    Under torch.distributed the histograms are averaged over the ranks first, so every rank holds the same
    usage statistics (and ``restart_dead_codes`` finds the same dead codes on every rank)."""
    hits = vae.quantize.ema_vocab_hit_SV
    used = codes[: hits.shape[0]]
    if not used:
        return
    vocab = hits.shape[1]
    hist = torch.stack([torch.bincount(idx, minlength=vocab).to(hits.dtype) / max(1, idx.numel()) for idx in used])
    if _distributed():
        torch.distributed.all_reduce(hist)
        hist /= torch.distributed.get_world_size()
    hits[: len(used)].mul_(decay).add_(hist, alpha=1 - decay)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


@torch.no_grad()
def restart_dead_codes(vae: VQVAE, residuals: list[Tensor], threshold: float = 0.03) -> int:
    """Re-seed codes used less than ``threshold`` x uniform (summed over scales) with random residual vectors of
    the batch (global torch RNG, which the training loop seeds per step). Returns how many were restarted.

    Under torch.distributed every rank finds the same dead codes (``update_code_usage`` keeps the usage equal)
    and takes rank 0's new codebook, so the replicas stay identical."""
    hits = vae.quantize.ema_vocab_hit_SV
    usage = hits.sum(0)
    vocab = usage.numel()
    dead = torch.nonzero(usage < threshold * usage.sum() / vocab).flatten()
    pool = torch.cat(residuals)
    if dead.numel() == 0 or pool.shape[0] == 0:
        return 0
    pick = torch.randint(pool.shape[0], (dead.numel(),), device=pool.device)
    weight = vae.quantize.embedding.weight
    noise = torch.randn(dead.numel(), weight.shape[1], device=pool.device) * 1e-3
    weight[dead] = (pool[pick] + noise).to(weight.dtype)
    hits[:, dead] = usage.sum() / (vocab * hits.shape[0])  # give them a fair start
    if _distributed():
        torch.distributed.broadcast(weight, src=0)  # every rank keeps the same codebook
        torch.distributed.broadcast(hits, src=0)
    return int(dead.numel())
