"""Tiled inference with overlap blending, for any ``(B, C, h, w) -> (B, C, h*s, w*s)`` function.

Large images do not fit a network's memory (or a transformer's window grid) in one pass, so the LR image is
cut into overlapping ``tile`` x ``tile`` tiles, each tile is upscaled on its own, and the outputs are blended
back into an output of exactly ``(H*s, W*s)``. Generic on purpose: feed-forward baselines (spandrel) and
AlignVAR both use it.

Blending. Neighbouring tiles share ``overlap`` LR pixels. Across that shared strip each tile's weight is:

    0 over an outer *margin* | raised-cosine ramp 0 -> 1 | 1 over the tile interior

with ``margin = floor(overlap * (1 - ramp) / 2)`` LR pixels and the ramp filling the rest of the strip, so the
two tiles' weights sum to exactly 1 (a partition of unity) wherever tiles overlap by the nominal amount; the
sum is renormalised anyway for the last, edge-flush tile, which may overlap more. Edges on the image border
get no ramp. Why a margin: a convolutional network's output within its receptive-field radius ``R`` of a tile
edge sees zero/reflect padding instead of the true neighbours, so it differs from the untiled output; pixels
that close to an interior edge get weight 0. Hence tiled == untiled (to float rounding) whenever
``margin >= R``. Why a ramp: generative methods (sampling, or tiles that disagree slightly) would show a hard
seam; the cross-fade hides it. ``ramp=0`` is Real-ESRGAN's scheme (hard seam in the middle of the overlap,
``tile_pad = overlap / 2``); ``ramp=1`` is a full linear-style cross-fade with no margin.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from harness.core.progress import progress as progress_bar

UpscaleFn = Callable[[torch.Tensor], torch.Tensor]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of ``tile``-sized tiles covering ``[0, length)``, neighbours sharing >= ``overlap`` px.

    Tiles advance by ``tile - overlap``; the last tile is placed flush with the end, so every tile is full
    size (when ``length >= tile``). ``length <= tile`` gives one tile ``[0, length)``.
    """
    if tile <= 0:
        raise ValueError(f"tile must be > 0, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must satisfy 0 <= overlap < tile ({tile}), got {overlap}")
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def blend_profile(
    length: int,
    scale: int,
    overlap: int,
    ramp: float,
    ramp_start: bool,
    ramp_end: bool,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """1-D blending weights (``length * scale`` output pixels) for one tile along one axis.

    ``ramp_start``/``ramp_end`` say whether that edge is shared with a neighbouring tile (border edges keep
    weight 1). See the module docstring for the margin/ramp layout.
    """
    n = length * scale
    w = torch.ones(n, dtype=torch.float32, device=device)
    margin_lr = math.floor(overlap * (1.0 - ramp) / 2.0)
    margin = margin_lr * scale
    ramp_len = (overlap - 2 * margin_lr) * scale
    i = torch.arange(ramp_len, dtype=torch.float64, device=device)
    # raised cosine sampled at pixel centres: values[i] + values[ramp_len-1-i] == 1 exactly in float64
    values = (0.5 - 0.5 * torch.cos(math.pi * (i + 0.5) / max(ramp_len, 1))).to(torch.float32)
    if ramp_start:
        w[:margin] = 0.0
        w[margin : margin + ramp_len] = torch.minimum(w[margin : margin + ramp_len], values)
    if ramp_end:
        end = n - margin
        w[end:] = 0.0
        w[end - ramp_len : end] = torch.minimum(w[end - ramp_len : end], values.flip(0))
    return w


def tiled_upscale(
    fn: UpscaleFn,
    lr: torch.Tensor,
    scale: int,
    tile: int,
    overlap: int,
    *,
    ramp: float = 0.5,
    progress: bool = False,
) -> torch.Tensor:
    """Upscale ``lr`` (B, C, H, W) by ``scale``, applying ``fn`` to overlapping tiles -> (B, C', H*s, W*s).

    ``fn`` maps a (B, C, h, w) tile to (B, C', h*scale, w*scale) (any other size raises ValueError). An image
    no larger than ``tile`` in both dimensions is passed to ``fn`` whole. ``ramp`` in [0, 1] is the fraction
    of the overlap that is cross-faded (the rest is an ignored margin, split between both sides); tiled
    output equals untiled output wherever the model's receptive-field radius is at most
    ``floor(overlap * (1 - ramp) / 2)``. The result is accumulated in float32 on ``lr.device``.
    """
    if lr.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(lr.shape)}")
    if not 0.0 <= ramp <= 1.0:
        raise ValueError(f"ramp must be in [0, 1], got {ramp}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    _, _, height, width = lr.shape
    ys = tile_starts(height, tile, overlap)
    xs = tile_starts(width, tile, overlap)
    if len(ys) == 1 and len(xs) == 1:
        return _checked(fn(lr), lr, scale)

    th, tw = min(tile, height), min(tile, width)
    out: torch.Tensor | None = None
    weight_sum = torch.zeros(1, 1, height * scale, width * scale, dtype=torch.float32, device=lr.device)
    bar = progress_bar(total=len(ys) * len(xs), desc="tiles", unit="tile", enabled=progress, leave=False)
    for yi, y0 in enumerate(ys):
        wy = blend_profile(th, scale, overlap, ramp, yi > 0, yi < len(ys) - 1, device=lr.device)
        for xi, x0 in enumerate(xs):
            wx = blend_profile(tw, scale, overlap, ramp, xi > 0, xi < len(xs) - 1, device=lr.device)
            sr = _checked(fn(lr[:, :, y0 : y0 + th, x0 : x0 + tw]), lr[:, :, :th, :tw], scale).float()
            if out is None:
                out = torch.zeros(
                    lr.shape[0],
                    sr.shape[1],
                    height * scale,
                    width * scale,
                    dtype=torch.float32,
                    device=lr.device,
                )
            weight = (wy[:, None] * wx[None, :])[None, None]
            ys_, xs_ = slice(y0 * scale, (y0 + th) * scale), slice(x0 * scale, (x0 + tw) * scale)
            out[:, :, ys_, xs_] += sr * weight
            weight_sum[:, :, ys_, xs_] += weight
            bar.update(1)
    bar.close()
    assert out is not None
    if bool((weight_sum <= 0).any()):  # cannot happen with tile_starts' layout; guard against future edits
        raise RuntimeError("tiled_upscale: some output pixels received no tile weight")
    return out / weight_sum


def _checked(sr: torch.Tensor, lr: torch.Tensor, scale: int) -> torch.Tensor:
    expected = (lr.shape[0], lr.shape[2] * scale, lr.shape[3] * scale)
    got = (sr.shape[0], sr.shape[2], sr.shape[3]) if sr.dim() == 4 else None
    if got != expected:
        raise ValueError(
            f"upscale function returned shape {tuple(sr.shape)} for input {tuple(lr.shape)}; "
            f"expected (B={expected[0]}, C, {expected[1]}, {expected[2]}) at scale {scale}"
        )
    return sr
