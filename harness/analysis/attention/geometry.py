"""Token geometry of multi-scale (VAR/VARSR) sequences: where every token sits in the image.

The sequence is ``[prefix grid (LR tokens) | scale 1 | scale 2 | ... | scale K]`` with each scale a row-major
(h_k, w_k) token map. In VAR/VARSR the slot of scale 1 (1x1) is the class token (``include_class=True``; see
``methods.alignvar.rope.token_positions``). Coordinates are (row, col) in [0, 1], rows divided by the image
height and columns by its width (so distances are isotropic for square images, the VARSR case).

* ``alignment='center'`` (default, the geometry): token (i, j) of an h x w map covers [i/h, (i+1)/h) and sits
  at its centre ((i + 0.5)/h, (j + 0.5)/w). Tokens of every scale that cover the same region share the same
  centre.
* ``alignment='topleft'``: (i/h, j/w), the RoPE grid of VARSR (``i * G / pn`` on a G = 32 grid, divided by G).
  It places the tokens of coarse scales towards the top-left of the region they cover (a 2x2 token sits at 0
  and 0.5 instead of 0.25 and 0.75); use it to measure distances "as the position encoding sees them".

Levels: -1 for the prefix grid, k (0-based) for scale k; the class token is level 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

HW = tuple[int, int]
LEVEL_PREFIX = -1
Alignment = Literal["center", "topleft"]


def _as_hw(pn: int | Sequence[int], what: str) -> HW:
    if isinstance(pn, (int, np.integer)):
        hw = (int(pn), int(pn))
    else:
        hw = tuple(int(v) for v in pn)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"{what}: expected a positive int or an (h, w) pair, got {pn!r}")
    return hw  # type: ignore[return-value]


def _grid_coords(hw: HW, alignment: Alignment) -> torch.Tensor:
    h, w = hw
    offset = {"center": 0.5, "topleft": 0.0}[alignment]
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    return torch.stack([(rows.flatten() + offset) / h, (cols.flatten() + offset) / w], dim=1)


@dataclass(frozen=True)
class TokenLayout:
    """Geometry of a token sequence: centre coordinates (L, 2) float64, levels (L,) int64, grids per level."""

    coords: torch.Tensor
    levels: torch.Tensor
    grids: Mapping[int, HW]  # level -> (h, w) of its token map
    include_class: bool = True
    alignment: Alignment = "center"

    def __len__(self) -> int:
        return int(self.levels.numel())

    def level_slice(self, level: int) -> slice:
        idx = torch.nonzero(self.levels == level).flatten()
        if idx.numel() == 0:
            raise KeyError(f"level {level} is not in this layout; levels: {sorted(self.grids)}")
        return slice(int(idx[0]), int(idx[-1]) + 1)

    def label(self, level: int) -> str:
        """Human-readable scale name: 'prefix 32x32', '1x1 (class)', '13x13'."""
        h, w = self.grids[level]
        if level == LEVEL_PREFIX:
            return f"prefix {h}x{w}"
        return f"{h}x{w} (class)" if (level == 0 and self.include_class) else f"{h}x{w}"


def token_layout(
    patch_nums: Sequence[int | Sequence[int]],
    prefix_hw: int | Sequence[int] | None = None,
    include_class: bool = True,
    alignment: Alignment = "center",
) -> TokenLayout:
    """The layout ``[prefix | scale 1 | ... | scale K]``; with ``include_class`` scale 1 (1x1) is the class.

    VARSR at 512 px: ``token_layout((1, 2, 3, 4, 6, 9, 13, 18, 24, 32), prefix_hw=32)`` -> 3264 tokens.
    """
    if alignment not in ("center", "topleft"):
        raise ValueError(f"alignment must be 'center' or 'topleft', got {alignment!r}")
    hws = [_as_hw(pn, f"patch_nums[{i}]") for i, pn in enumerate(patch_nums)]
    if not hws:
        raise ValueError("patch_nums is empty")
    if include_class and hws[0] != (1, 1):
        raise ValueError(
            f"include_class=True: the first scale is the class token's slot and must be 1x1, "
            f"got {hws[0]}; pass include_class=False for a sequence without a class token"
        )
    grids: dict[int, HW] = {}
    coords, levels = [], []
    if prefix_hw is not None:
        grids[LEVEL_PREFIX] = _as_hw(prefix_hw, "prefix_hw")
    for level, hw in ([(LEVEL_PREFIX, grids[LEVEL_PREFIX])] if prefix_hw is not None else []) + list(enumerate(hws)):
        grids[level] = hw
        coords.append(_grid_coords(hw, alignment))
        levels.append(torch.full((hw[0] * hw[1],), level, dtype=torch.int64))
    return TokenLayout(torch.cat(coords), torch.cat(levels), grids, include_class, alignment)


def token_coordinates(
    patch_nums: Sequence[int | Sequence[int]],
    prefix_hw: int | Sequence[int] | None = None,
    include_class: bool = True,
    alignment: Alignment = "center",
) -> torch.Tensor:
    """(L, 2) float64 (row, col) centres in [0, 1] of every token; see ``token_layout``."""
    return token_layout(patch_nums, prefix_hw, include_class, alignment).coords


def token_levels(
    patch_nums: Sequence[int | Sequence[int]], prefix_hw: int | Sequence[int] | None = None
) -> torch.Tensor:
    """(L,) int64 level of every token: -1 prefix, k for scale k (0-based)."""
    return token_layout(patch_nums, prefix_hw, include_class=False).levels


def visible_keys(q_levels: torch.Tensor, k_levels: torch.Tensor) -> torch.Tensor:
    """(Q, K) bool: which keys each query may attend to under VAR's block-causal mask.

    The context (LR prefix, level -1, and the class token, level 0) is one block that sees itself; a token of
    scale k >= 1 sees the context and every scale <= k: key j is visible from query i iff
    max(level_j, 0) <= max(level_i, 0).
    """
    return k_levels.clamp_min(0)[None, :] <= q_levels.clamp_min(0)[:, None]


KEY_GROUPS = ("prefix", "class", "coarser", "own")
"""Key groups of a query of level q: the LR prefix (level -1), the class token (level 0), coarser scales
(1 <= level < q) and the query's own scale (level == q >= 1). They partition the keys a query of scale q >= 1
can see; a prefix or class query sees only the first two."""


def key_groups(q_levels: torch.Tensor, k_levels: torch.Tensor) -> dict[str, torch.Tensor]:
    """{group: (Q, K) bool} for ``KEY_GROUPS`` (see there)."""
    q, k = q_levels[:, None], k_levels[None, :]
    shape = (q_levels.numel(), k_levels.numel())
    return {
        "prefix": (k == LEVEL_PREFIX).expand(shape),
        "class": (k == 0).expand(shape),
        "coarser": (k >= 1) & (k < q),
        "own": (k == q) & (q >= 1),
    }
