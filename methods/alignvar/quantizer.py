"""VARSR's multi-scale residual vector quantizer (VAR's ``VectorQuantizer2`` with VARSR's no-phi last scale).

A latent ``f`` (B, Cvae, H, W) is explained coarse to fine: at scale k the remaining residual is
area-downsampled to the scale's grid, every position takes its nearest codebook entry (squared L2), the
entries are bicubic-upsampled back to (H, W) and passed through a shared refinement conv ``phi``, and the
result is added to the running reconstruction ``f_hat`` and subtracted from the residual. The last scale is
already at (H, W) and VARSR adds its entries raw (no resize, no phi); the residual left just before it is the
diffusion refiner's target.

State-dict keys (official): ``embedding.weight`` (V, Cvae), ``quant_resi.qresi_ls.{0..3}.{weight,bias}``,
buffer ``ema_vocab_hit_SV`` (K, V) (training statistics, unused here, may be absent from a checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from methods.alignvar.scales import ScaleSchedule


def area_down(x: Tensor, hw: tuple[int, int]) -> Tensor:
    """Area (box-average) downsampling to ``hw``, as the official code (``F.interpolate(mode='area')``)."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=tuple(hw), mode="area")


def bicubic_up(x: Tensor, hw: tuple[int, int]) -> Tensor:
    """Bicubic upsampling to ``hw`` (align_corners=False, no antialias), as the official code."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=tuple(hw), mode="bicubic", align_corners=False)


class Phi(nn.Conv2d):
    """phi(h) = (1 - r) h + r conv3x3(h), r = |quant_resi| (0.5 in VARSR). Keys: ``weight``, ``bias``."""

    def __init__(self, channels: int, quant_resi: float) -> None:
        super().__init__(channels, channels, kernel_size=3, stride=1, padding=1)
        self.resi_ratio = abs(quant_resi)

    def forward(self, h: Tensor) -> Tensor:
        return h.mul(1 - self.resi_ratio) + super().forward(h).mul(self.resi_ratio)


class PhiPartiallyShared(nn.Module):
    """``qresi_ls``: the shared phi convs; scale k uses ``qresi_ls[schedule.phi_index(k)]``."""

    def __init__(self, channels: int, quant_resi: float, count: int) -> None:
        super().__init__()
        self.qresi_ls = nn.ModuleList([Phi(channels, quant_resi) for _ in range(count)])

    def for_scale(self, k: int, schedule: ScaleSchedule) -> Phi:
        return self.qresi_ls[schedule.phi_index(k, num_phi=len(self.qresi_ls))]


@dataclass
class TokenizerOutput:
    """Result of tokenising a latent with ``MultiScaleQuantizer.f_to_idx``.

    idx:      per scale (B, h_k*w_k) int64 codebook indices, row-major inside a scale.
    f_hat:    per scale the cumulative quantised latent F_k after scale k, at full latent size (B, Cvae, H,
    W);
              ``f_hat[-1]`` is the final reconstruction latent.
    residual: (B, H*W, Cvae) continuous residual f - F_{K-2} (what the last scale and the refiner explain);
              the last element of VARSR's ``img_to_idxBl`` tuple.
    """

    idx: list[Tensor]
    f_hat: list[Tensor]
    residual: Tensor
    gaps: list[Tensor] | None = None  # per scale (B, h*w) 2nd-best minus best distance, if requested


class MultiScaleQuantizer(nn.Module):
    """Multi-scale residual VQ with a codebook ``embedding`` (V, Cvae) and 4 partially shared phi convs."""

    def __init__(
        self,
        vocab_size: int = 4096,
        z_channels: int = 32,
        beta: float = 0.25,
        quant_resi: float = 0.5,
        share_quant_resi: int = 4,
        ema_scales: int = 10,
    ) -> None:
        super().__init__()
        if share_quant_resi < 1:
            raise ValueError(f"share_quant_resi must be >= 1 (VARSR uses 4), got {share_quant_resi}")
        self.vocab_size, self.z_channels, self.beta = vocab_size, z_channels, beta
        # registration order = official state-dict order (buffer, quant_resi, embedding)
        self.quant_resi = PhiPartiallyShared(z_channels, quant_resi, share_quant_resi)
        self.embedding = nn.Embedding(vocab_size, z_channels)
        # Training-time codebook-usage statistics of the official model; kept only for key compatibility.
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(ema_scales, vocab_size))

    # ------------------------------------------------------------------------------------------- helpers
    def lookup(self, idx_k: Tensor, hw: tuple[int, int]) -> Tensor:
        """Codebook entries of row-major indices ``idx_k`` (B, h*w) as a map (B, Cvae, h, w)."""
        h, w = hw
        return rearrange(self.embedding(idx_k), "b (h w) c -> b c h w", h=h, w=w)

    def nearest(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Nearest codebook index (squared L2) of every row of ``z`` (N, Cvae), plus the gap to the runner-up.

        Distances are ||z||^2 + ||E||^2 - 2 z E^T in float32 (autocast off), the official formula, so
        near-ties resolve as in the official code. Returns (idx (N,) int64, gap (N,) = second - smallest
        distance).
        """
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            emb = self.embedding.weight.detach().float()
            d = torch.sum(z.square(), dim=1, keepdim=True) + torch.sum(emb.square(), dim=1)
            d = torch.addmm(d, z, emb.T, beta=1, alpha=-2)
            if d.shape[1] >= 2:
                top2 = torch.topk(d, 2, dim=1, largest=False)
                return torch.argmin(d, dim=1), top2.values[:, 1] - top2.values[:, 0]
            return torch.argmin(d, dim=1), torch.full((d.shape[0],), float("inf"), device=d.device)

    @staticmethod
    def _check_latent(f: Tensor, schedule: ScaleSchedule) -> None:
        if f.ndim != 4 or tuple(f.shape[-2:]) != tuple(schedule.latent_hw):
            raise ValueError(
                f"latent of shape {tuple(f.shape)} does not match the schedule's latent grid "
                f"{schedule.latent_hw} (schedule {schedule}); expected (B, C, {schedule.latent_hw[0]}, "
                f"{schedule.latent_hw[1]})"
            )

    # ------------------------------------------------------------------------------------------- encoding
    @torch.no_grad()
    def f_to_idx(self, f: Tensor, schedule: ScaleSchedule, return_gaps: bool = False) -> TokenizerOutput:
        """Tokenise latent ``f`` (B, Cvae, H, W) with VARSR's algorithm (no phi on the last scale). No
        gradient.

        With ``return_gaps`` the output's ``gaps`` holds per scale (B, h*w) the distance gap between the best
        and second-best codebook entry (near-tie diagnostic, like the golden ``vq_gap``).
        """
        self._check_latent(f, schedule)
        B, C, H, W = f.shape
        K = schedule.num_scales
        f_rest = f.detach().float().clone()
        f_hat = torch.zeros_like(f_rest)
        idx_list: list[Tensor] = []
        fhat_list: list[Tensor] = []
        gaps: list[Tensor] = []
        residual = f_rest
        for k, (ph, pw) in enumerate(schedule.patch_nums):
            last = k == K - 1
            z = f_rest if last else area_down(f_rest, (ph, pw))
            idx_n, gap = self.nearest(rearrange(z, "b c h w -> (b h w) c"))
            idx_k = idx_n.view(B, ph * pw)
            h = self.embed_scale(k, self.lookup(idx_k, (ph, pw)), schedule)
            if last:
                residual = rearrange(f_rest, "b c h w -> b (h w) c").clone()
            f_hat = f_hat + h
            f_rest = f_rest - h
            idx_list.append(idx_k)
            fhat_list.append(f_hat)
            gaps.append(gap.view(B, ph * pw))
        return TokenizerOutput(idx=idx_list, f_hat=fhat_list, residual=residual, gaps=gaps if return_gaps else None)

    # ------------------------------------------------------------------------------------------- decoding
    def embed_scale(self, k: int, h_BChw: Tensor, schedule: ScaleSchedule) -> Tensor:
        """Contribution of scale ``k`` to f_hat: phi_sel(k)(bicubic_up(h)) for k < K-1, raw ``h`` at the last.

        ``h_BChw`` (B, Cvae, h_k, w_k) may be any embedding map (hard codebook entries, or softmax-weighted
        ones for HCC); the operation is differentiable.
        """
        if k == schedule.num_scales - 1:
            if tuple(h_BChw.shape[-2:]) != tuple(schedule.latent_hw):
                raise ValueError(f"last-scale map {tuple(h_BChw.shape)} is not at the latent grid {schedule.latent_hw}")
            return h_BChw
        up = bicubic_up(h_BChw, schedule.latent_hw)
        return self.quant_resi.for_scale(k, schedule)(up)

    def next_ar_input(
        self, k: int, f_hat: Tensor, h_BChw: Tensor, schedule: ScaleSchedule
    ) -> tuple[Tensor, Tensor | None]:
        """One inference step: returns (f_hat + embed_scale(k, h), area_down(new f_hat, grid k+1) or None).

        The second value is the next scale's transformer input (None after the last scale). ``f_hat`` is not
        modified in place.
        """
        f_hat = f_hat + self.embed_scale(k, h_BChw, schedule)
        if k == schedule.num_scales - 1:
            return f_hat, None
        return f_hat, area_down(f_hat, schedule.patch_nums[k + 1])

    def cumulative_targets(self, idx: list[Tensor], schedule: ScaleSchedule) -> list[Tensor]:
        """F_k for every scale k from per-scale indices (B, h_k*w_k): the HCC full-scale targets
        (B,Cvae,H,W)."""
        if len(idx) != schedule.num_scales:
            raise ValueError(f"got indices for {len(idx)} scales but the schedule has {schedule.num_scales}")
        B = idx[0].shape[0]
        H, W = schedule.latent_hw
        f_hat = self.embedding.weight.new_zeros(B, self.z_channels, H, W)
        out = []
        for k, hw in enumerate(schedule.patch_nums):
            f_hat = f_hat + self.embed_scale(k, self.lookup(idx[k], hw), schedule)
            out.append(f_hat)
        return out

    def idx_to_var_input(self, idx: list[Tensor], schedule: ScaleSchedule) -> Tensor:
        """Teacher-forcing input (B, total_tokens - h0*w0, Cvae) from indices of (at least) scales 0..K-2.

        For k = 0..K-2: F_k area-downsampled to the grid of scale k+1, flattened row-major, concatenated
        (VAR's ``idxBl_to_var_input``). Float32.
        """
        K = schedule.num_scales
        if len(idx) < K - 1:
            raise ValueError(f"need indices for at least {K - 1} scales, got {len(idx)}")
        B = idx[0].shape[0]
        H, W = schedule.latent_hw
        f_hat = self.embedding.weight.new_zeros(B, self.z_channels, H, W)
        chunks = []
        for k in range(K - 1):
            f_hat = f_hat + self.embed_scale(k, self.lookup(idx[k], schedule.patch_nums[k]), schedule)
            nxt = area_down(f_hat, schedule.patch_nums[k + 1])
            chunks.append(rearrange(nxt, "b c h w -> b (h w) c"))
        if not chunks:
            return f_hat.new_zeros(B, 0, self.z_channels)
        return torch.cat(chunks, dim=1).float()
