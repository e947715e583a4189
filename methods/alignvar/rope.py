"""Scale-aligned 2-D rotary position embedding (VARSR's RoPE), as pure functions.

Every token gets a 2-D position on one common grid, so that tokens of different scales that cover the same
image region get (nearly) the same rotation:

* the LR prefix grid (h_p, w_p) (1/16 of the model input; 32x32 at 512 px): token (i, j) -> (i, j);
* the class token: position (0, 0), i.e. the identity rotation;
* scale k with a (h_k, w_k) token map: token (i, j) -> (i / h_k * G_h, j / w_k * G_w).

The official code hard-codes G = 32 for both axes (``basic_var.py:85``), which is the latent side at 512 px.
For other schedules (``ScaleSchedule.for_size``) we define the grid as the latent (h, w) grid, ``G_h = h_lat``,
``G_w = w_lat``: the official model is the special case h_lat = w_lat = 32, and for any size the last
scale and the LR prefix land on integer positions 0..h_lat-1 / 0..w_lat-1, exactly like the official 512-px
layout. The prefix grid equals the latent grid when both are 1/16 of the model input; with a downsampling-8
tokenizer the 1/16 prefix is coarser and its token (i, j) sits at (i / h_p * G_h, j / w_p * G_w), like a scale.

Frequencies (head_dim D = 64 in every VARSR size): ``w_m = theta^(-4m/D)``, m = 0..D/4-1. A head vector is
viewed as D/2 complex numbers from *adjacent* real pairs (2p, 2p+1); pairs 0..D/4-1 rotate by ``row * w_m``
and pairs D/4..D/2-1 by ``col * w_m``. The position arithmetic follows the official order (``index / n * G``
in float32, then ``outer`` with the frequencies) so that angles agree bit for bit; the rotation itself is done
in real arithmetic in float32 (portable to devices without complex support), equal to the complex product up
to rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch

HW = tuple[int, int]


def rope_frequencies(head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """(head_dim // 4,) float32 frequencies ``theta^(-4m/head_dim)`` (official formula and float order)."""
    if head_dim % 4:
        raise ValueError(f"2-D RoPE needs head_dim divisible by 4, got {head_dim}")
    exponents = torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim
    return 1.0 / (theta**exponents)


def _grid_positions(h: int, w: int, grid_h: int, grid_w: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return rows.flatten() / h * grid_h, cols.flatten() / w * grid_w


def token_positions(prefix_hw: HW, patch_hws: Sequence[HW], grid_hw: HW) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column positions (float32) of the whole sequence [prefix | class | scales 2..K].

    ``patch_hws`` are the K scale shapes; scale 1's slot is the class token (its position is (0, 0) because
    scale 1 is a single token), scales 2..K follow in order. Length = h_p*w_p + 1 + sum_{k>=2} h_k*w_k.
    """
    if tuple(patch_hws[0]) != (1, 1):
        raise ValueError(f"the first scale must be 1x1 (its slot is the class token), got {patch_hws[0]}")
    rows, cols = [], []
    # the prefix uses its own grid as reference when it is the latent grid, which makes its positions the integer
    # (i, j) exactly; a coarser prefix (a downsampling-8 tokenizer) is placed on the latent grid like a scale
    prefix_ref = tuple(prefix_hw) if tuple(prefix_hw) == tuple(grid_hw) else tuple(grid_hw)
    for (h, w), (gh, gw) in [(prefix_hw, prefix_ref), *[(hw, grid_hw) for hw in patch_hws]]:
        r, c = _grid_positions(h, w, gh, gw)
        rows.append(r)
        cols.append(c)
    return torch.cat(rows), torch.cat(cols)


@lru_cache(maxsize=32)
@torch.inference_mode(False)  # a table first built during inference must still serve training (autograd)
def _rope_table(head_dim: int, prefix_hw: HW, patch_hws: tuple[HW, ...], grid_hw: HW, theta: float):
    freqs = rope_frequencies(head_dim, theta)
    rows, cols = token_positions(prefix_hw, patch_hws, grid_hw)
    angles = torch.cat([torch.outer(rows, freqs).float(), torch.outer(cols, freqs).float()], dim=1)  # (L, D/2)
    # polar(1, a) computes (cos a, sin a) in float32, like the official complex table
    table = torch.polar(torch.ones_like(angles), angles)
    return torch.stack([table.real, table.imag], dim=0).contiguous()  # (2, L, D/2): cos, sin


def rope_table(
    head_dim: int, prefix_hw: HW, patch_hws: Sequence[HW], grid_hw: HW | None = None, theta: float = 10000.0
) -> torch.Tensor:
    """(2, L_total, head_dim/2) float32 [cos; sin] for the sequence [prefix | class | scales 2..K].

    ``grid_hw`` defaults to the last scale's shape (the latent grid; 32x32 for the official schedule). The
    result is cached (a pure function of its arguments); treat it as read-only.
    """
    patch_hws = tuple((int(h), int(w)) for h, w in patch_hws)
    grid_hw = tuple(grid_hw) if grid_hw is not None else patch_hws[-1]
    return _rope_table(int(head_dim), (int(prefix_hw[0]), int(prefix_hw[1])), patch_hws, grid_hw, float(theta))


def apply_rope(x: torch.Tensor, table: torch.Tensor, seq_dim: int = -2, inplace: bool = False) -> torch.Tensor:
    """Rotate adjacent pairs of ``x`` (..., L at ``seq_dim``, ..., D) by ``table`` (2, L, D/2); in float32, cast back.

    ``inplace``: ``x`` is a temporary of the caller and may be overwritten (only used without autograd and when
    ``x`` is already float32; the result is the same either way).

    ``seq_dim=-2`` is the (B, H, L, D) layout; the attention uses (B, L, 2, H, D) (q and k together,
    ``seq_dim=1``). Computed as ``x * [c0 c0 c1 c1 ..] + swap_pairs(x) * [-s0 s0 -s1 s1 ..]``: four full-width
    passes instead of seven strided half-width ones, and bit-identical to the pairwise complex-style formula
    ``(x0 c - x1 s, x0 s + x1 c)`` (IEEE: a + (-b) = a - b, and addition commutes).
    """
    L, half = table.shape[1], table.shape[2]
    shape = [1] * x.ndim
    shape[seq_dim], shape[-1] = L, 2 * half
    cos = table[0].unsqueeze(-1).expand(L, half, 2).reshape(shape)  # c0 c0 c1 c1 ... (no host sync on GPU)
    sin = torch.stack([-table[1], table[1]], dim=-1).view(shape)
    xf = x.float()
    swapped = xf.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # (x1, x0) per pair; a fresh tensor
    # without autograd a float32 x that the caller hands over (``inplace``) is rotated in its own memory
    out = xf.mul_(cos) if inplace and xf is x and not torch.is_grad_enabled() else xf * cos
    return out.add_(swapped.mul_(sin)).to(x.dtype)
