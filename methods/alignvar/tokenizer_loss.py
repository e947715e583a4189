"""Training objective of the multi-scale residual VQ-VAE (VAR's ``VectorQuantizer2`` training path).

For users without VQ-VAE weights (and for CPU tests). Per scale k the remaining residual is quantised exactly as
in tokenisation (area-down, nearest code, ``embed_scale``: bicubic-up + phi, raw at the last scale, VARSR's rule),
and the running reconstruction ``f_hat`` gets the codebook / commitment losses of VQ-VAE:

    L_vq = mean_k [ ||sg(f_hat_k) - f||^2 * beta + ||f_hat_k - sg(f)||^2 ]

The decoder sees the straight-through latent ``f + sg(f_hat_K - f)``, so the reconstruction loss (L1 + MSE on
pixels; LPIPS optional when its weights are available) trains the encoder as well. Codebook entries receive
gradient through the second term, and the phi convs through both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
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


def quantize_straight_through(vae: VQVAE, f: Tensor, schedule: ScaleSchedule) -> tuple[Tensor, Tensor, Tensor]:
    """Multi-scale residual quantisation with gradients. Returns (f_st, vq_loss, used_code_ids)."""
    quantizer = vae.quantize
    B, C, H, W = f.shape
    f_hat = torch.zeros_like(f)
    vq_loss = f.new_zeros(())
    used = []
    for k, (ph, pw) in enumerate(schedule.patch_nums):
        rest = (f - f_hat).detach()
        z = rest if k == schedule.num_scales - 1 else area_down(rest, (ph, pw))
        idx, _ = quantizer.nearest(z.permute(0, 2, 3, 1).reshape(-1, C))
        used.append(idx)
        h = quantizer.embed_scale(k, quantizer.lookup(idx.view(B, ph * pw), (ph, pw)), schedule)
        f_hat = f_hat + h
        vq_loss = vq_loss + quantizer.beta * F.mse_loss(f_hat.detach(), f) + F.mse_loss(f_hat, f.detach())
    vq_loss = vq_loss / schedule.num_scales
    f_st = f + (f_hat - f).detach()
    # codebook + phi gradients come from vq_loss; the decoder path uses the straight-through latent
    return f_st, vq_loss, torch.cat(used).unique()


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
    f_st, vq, used = quantize_straight_through(vae, f, schedule)
    recon = vae.decode(f_st)
    l1 = F.l1_loss(recon, img)
    mse = F.mse_loss(recon, img)
    total = l1 + mse_weight * mse + vq_weight * vq
    usage = torch.tensor(used.numel() / vae.vocab_size, device=img.device)
    return TokenizerLoss(total, l1, mse, vq, usage, recon)
