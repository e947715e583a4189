"""The multi-scale token-grid schedule of VAR/VARSR (``patch_nums``), generalised to any size and aspect
ratio.

VARSR works at a fixed 512x512 output: a 32x32 latent (VQ-VAE downsampling 16) tokenised at the 10 square
scales (1, 2, 3, 4, 6, 9, 13, 18, 24, 32) -> 2240 tokens. ``ScaleSchedule`` holds the (h, w) grid of every
scale, coarse to fine, and the derived quantities the tokenizer and the transformer need (token offsets, phi
selection).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

OFFICIAL_PATCH_NUMS: tuple[int, ...] = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)
DOWNSAMPLE = 16  # VQ-VAE spatial downsampling (4 stride-2 stages)
NUM_SHARED_PHI = 4  # VARSR's share_quant_resi: 4 phi convs shared across the scales


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def phi_ticks(num_phi: int = NUM_SHARED_PHI) -> list[float]:
    """Anchor positions in [0, 1] of the shared phi convs (VAR's ``PhiPartiallyShared.ticks``).

    Computed with ``np.linspace`` exactly as the official code: scale 2 of 10 (at 2/9) is an exact tie between
    ticks 0 and 1 in real arithmetic, and the official float rounding resolves it to tick 1.
    """
    lo = 1 / 3 / num_phi if num_phi == 4 else 1 / 2 / num_phi  # VAR special-cases 4 shared convs
    return [float(t) for t in np.linspace(lo, 1 - lo, num_phi)]


@dataclass(frozen=True)
class ScaleSchedule:
    """Token grid (h, w) per scale, coarse -> fine; the last grid is the full latent (image size / 16).

    Invariants (checked): at least one scale, every side >= 1, each side non-decreasing from scale to scale
    and every scale differs from the previous one (so token counts are strictly increasing).
    """

    patch_nums: tuple[tuple[int, int], ...]
    downsample: int = DOWNSAMPLE

    def __post_init__(self) -> None:
        pns = tuple((int(h), int(w)) for h, w in self.patch_nums)
        object.__setattr__(self, "patch_nums", pns)
        if not pns:
            raise ValueError("ScaleSchedule needs at least one scale")
        for k, (h, w) in enumerate(pns):
            if h < 1 or w < 1:
                raise ValueError(f"ScaleSchedule scale {k} has grid {h}x{w}; sides must be >= 1")
            if k and (h < pns[k - 1][0] or w < pns[k - 1][1] or (h, w) == pns[k - 1]):
                raise ValueError(
                    f"ScaleSchedule scale {k} grid {h}x{w} does not grow from scale {k - 1} "
                    f"({pns[k - 1][0]}x{pns[k - 1][1]}); sides must be non-decreasing and scales distinct"
                )

    # ----------------------------------------------------------------------------------------- constructors
    @classmethod
    def official(cls) -> ScaleSchedule:
        """VARSR's schedule at 512x512: squares (1,2,3,4,6,9,13,18,24,32), 2240 tokens."""
        return cls(tuple((p, p) for p in OFFICIAL_PATCH_NUMS))

    @classmethod
    def from_sides(cls, sides: str | list | tuple, downsample: int = DOWNSAMPLE) -> ScaleSchedule:
        """From square sides (``"1_2_3"``, ``[1, 2, 3]``) or explicit ``[(h, w), ...]`` pairs."""
        if isinstance(sides, str):
            try:
                sides = [int(s) for s in sides.replace(",", "_").split("_") if s.strip()]
            except ValueError:
                raise ValueError(f"cannot parse scale sides {sides!r}; expected e.g. '1_2_3_4_6_9'") from None
        pairs = [(s, s) if isinstance(s, int) else tuple(s) for s in sides]
        return cls(tuple(pairs), downsample=downsample)

    @classmethod
    def for_size(cls, height: int, width: int, downsample: int = DOWNSAMPLE) -> ScaleSchedule:
        """Schedule for an image of ``height`` x ``width`` pixels (both multiples of ``downsample``).

        Rule: latent grid (H, W) = (height, width) / downsample. For each official scale ``pn`` the grid is
        ``(round(pn/32 * H), round(pn/32 * W))`` (round half up, each side at least 1); the first scale is
        always (1, 1) (one token, predicted from the class-token position as in VARSR), the last is exactly
        (H, W), and a scale equal to its predecessor is dropped (small images get fewer than 10 scales). At
        512x512 this is exactly ``official()``; at 256x384 it is
        (1,1),(1,2),(2,2),(2,3),(3,5),(5,7),(7,10),(9,14),(12,18),(16,24).
        """
        for name, v in (("height", height), ("width", width)):
            if not isinstance(v, int) or v <= 0 or v % downsample:
                raise ValueError(
                    f"image size {height}x{width} is not supported: {name}={v} must be a positive multiple "
                    f"of {downsample} (the VQ-VAE downsampling); pad or crop the image first"
                )
        lat_h, lat_w = height // downsample, width // downsample
        top = OFFICIAL_PATCH_NUMS[-1]
        grids: list[tuple[int, int]] = []
        for k, pn in enumerate(OFFICIAL_PATCH_NUMS):
            if k == 0:
                hw = (1, 1)
            elif k == len(OFFICIAL_PATCH_NUMS) - 1:
                hw = (lat_h, lat_w)
            else:
                hw = (
                    min(lat_h, max(1, _round_half_up(pn * lat_h / top))),
                    min(lat_w, max(1, _round_half_up(pn * lat_w / top))),
                )
            if grids and hw == grids[-1]:
                continue
            grids.append(hw)
        return cls(tuple(grids), downsample=downsample)

    # ----------------------------------------------------------------------------------------- properties
    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    @property
    def total_tokens(self) -> int:
        """Number of predicted tokens, sum of h*w over scales (2240 for the official schedule)."""
        return sum(h * w for h, w in self.patch_nums)

    @property
    def latent_hw(self) -> tuple[int, int]:
        return self.patch_nums[-1]

    @property
    def image_hw(self) -> tuple[int, int]:
        h, w = self.latent_hw
        return h * self.downsample, w * self.downsample

    @property
    def tokens_per_scale(self) -> tuple[int, ...]:
        return tuple(h * w for h, w in self.patch_nums)

    @cached_property
    def begin_ends(self) -> tuple[tuple[int, int], ...]:
        """(begin, end) offsets of every scale in the flattened token sequence: ((0,1), (1,5), (5,14),
        ...)."""
        out, cur = [], 0
        for n in self.tokens_per_scale:
            out.append((cur, cur + n))
            cur += n
        return tuple(out)

    def phi_index(self, k: int, num_phi: int = NUM_SHARED_PHI) -> int:
        """Which shared phi conv scale ``k`` uses: argmin_i |ticks_i - k/(K-1)| (VAR's
        ``PhiPartiallyShared``).

        For K=10 and 4 convs this is [0,0,1,1,1,2,2,3,3,3]. (VARSR applies no phi on the last scale at all;
        this index is still defined there, as in the official code.) Scales 2 and 7 of 10 are exact ties in
        real arithmetic; the official float64 ``np.linspace`` ticks resolve them to 1 and 3, and so does this.
        """
        if not 0 <= k < self.num_scales:
            raise IndexError(f"scale index {k} out of range for a {self.num_scales}-scale schedule")
        at = k / (self.num_scales - 1) if self.num_scales > 1 else 0.0
        return int(np.argmin(np.abs(np.asarray(phi_ticks(num_phi)) - at)))

    def __str__(self) -> str:
        return "_".join(f"{h}" if h == w else f"{h}x{w}" for h, w in self.patch_nums)
