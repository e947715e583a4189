"""Attention distance of multi-scale (VAR/VARSR) transformers: token geometry, statistics and capture.

AlignVAR's first diagnosis is that VAR attention is *locally biased*: a query attends almost only to keys near
it in the image. We measure that as the attention-weighted distance between query and key centres in
normalised image coordinates, per layer, head and query scale, and as the attention mass within a radius.

Token geometry
--------------
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

Capture protocol (for model authors)
------------------------------------
An attention module that supports capture has an attribute ``record_attention`` (``None`` by default) and an
integer ``layer_idx``. In ``forward``, with ``q`` (B, H, Lq, d) and ``k`` (B, H, Lk, d) exactly as they enter
``scaled_dot_product_attention`` (after q/k normalisation and RoPE), the additive float mask or
boolean keep-mask ``attn_bias`` (broadcastable to (B, H, Lq, Lk), or None) and the softmax ``scale`` it uses::

    rec = self.record_attention
    if rec is not None and rec.wants(self.layer_idx):
        rec.record(self.layer_idx, q, k, attn_bias, scale)

``with AttentionRecorder(model, ...) as rec:`` sets ``record_attention`` on every such module (and restores it
on exit); then run the model normally. ``record`` recomputes softmax(q k^T * scale + mask) exactly, in float32
on the CPU, for a sample of query rows only (the full 3264 x 3264 map of a d24 model is 24 layers x 24 heads x
43 MB), and accumulates the batch mean across calls. Queries are taken to be the last Lq positions of the key
sequence, true both for full-sequence training passes (Lq = Lk) and for KV-cached inference (the current scale
attends to all cached keys); pass ``q_start`` otherwise. Probabilities are linear in everything we report, so
averaging them over images first loses nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

HW = tuple[int, int]
LEVEL_PREFIX = -1
Alignment = Literal["center", "topleft"]

ATTENTION_COLUMNS = (
    "layer",
    "head",
    "query_level",
    "query_scale",
    "n_queries",
    "radius",
    "mean_distance",
    "mass_within_r",
)
"""Columns of ``analysis/attention.csv`` (one row per layer x head x query scale); an optional ``model``
column names the model when several are stored together."""


# --------------------------------------------------------------------------------------------------- geometry
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


# ------------------------------------------------------------------------------------------------- statistics
def _check(probs: torch.Tensor, q_coords: torch.Tensor, k_coords: torch.Tensor) -> torch.Tensor:
    if probs.dim() < 2 or probs.shape[-2:] != (q_coords.shape[0], k_coords.shape[0]):
        raise ValueError(
            f"probs (..., Q, K) = {tuple(probs.shape)} does not match q_coords {tuple(q_coords.shape)} "
            f"and k_coords {tuple(k_coords.shape)}"
        )
    return torch.cdist(q_coords.double(), k_coords.double())  # (Q, K)


def per_query_distance(probs: torch.Tensor, q_coords: torch.Tensor, k_coords: torch.Tensor) -> torch.Tensor:
    """(..., Q): sum_k p_qk ||c_q - c_k|| for every query (float64)."""
    dist = _check(probs, q_coords, k_coords)
    return (probs.double() * dist).sum(-1)


def mean_attention_distance(probs: torch.Tensor, q_coords: torch.Tensor, k_coords: torch.Tensor) -> torch.Tensor:
    """(...,): sum_k p_qk ||c_q - c_k||, averaged over the Q queries. ``probs`` (..., Q, K) rows sum to 1."""
    return per_query_distance(probs, q_coords, k_coords).mean(-1)


def mass_within_radius(probs: torch.Tensor, q_coords: torch.Tensor, k_coords: torch.Tensor, r: float) -> torch.Tensor:
    """(...,): attention mass on keys with ||c_q - c_k|| <= r (1e-9 slack), averaged over queries."""
    dist = _check(probs, q_coords, k_coords)
    near = (dist <= r + 1e-9).double()
    return (probs.double() * near).sum(-1).mean(-1)


def attention_distance_by_scale(
    probs: torch.Tensor,
    q_levels: torch.Tensor,
    q_coords: torch.Tensor,
    k_coords: torch.Tensor,
    *,
    radius: float = 0.1,
    layers: Sequence[int] | None = None,
    labels: Mapping[int, str] | None = None,
) -> pd.DataFrame:
    """Per layer x head x query scale: mean attention distance and mass within ``radius``.

    ``probs`` (layers, heads, Q, K); ``q_levels`` (Q,) the level of each query; ``layers`` the layer ids of
    the first axis (default 0..); ``labels`` level -> scale name (``TokenLayout.label``). Columns:
    ATTENTION_COLUMNS.
    """
    if probs.dim() != 4:
        raise ValueError(f"probs must be (layers, heads, Q, K), got shape {tuple(probs.shape)}")
    n_layers, n_heads, n_q, _ = probs.shape
    if q_levels.shape != (n_q,):
        raise ValueError(f"q_levels must have shape ({n_q},), got {tuple(q_levels.shape)}")
    layer_ids = list(range(n_layers)) if layers is None else list(layers)
    if len(layer_ids) != n_layers:
        raise ValueError(f"{len(layer_ids)} layer ids for {n_layers} layers")
    dist = per_query_distance(probs, q_coords, k_coords)  # (layers, heads, Q)
    near = (_check(probs, q_coords, k_coords) <= radius + 1e-9).double()
    mass = (probs.double() * near).sum(-1)  # (layers, heads, Q)
    rows = []
    for level in torch.unique(q_levels).tolist():
        sel = q_levels == level
        d = dist[..., sel].mean(-1)
        m = mass[..., sel].mean(-1)
        for li, layer in enumerate(layer_ids):
            for head in range(n_heads):
                rows.append(
                    {
                        "layer": int(layer),
                        "head": head,
                        "query_level": int(level),
                        "query_scale": (labels or {}).get(level, str(level)),
                        "n_queries": int(sel.sum()),
                        "radius": float(radius),
                        "mean_distance": float(d[li, head]),
                        "mass_within_r": float(m[li, head]),
                    }
                )
    return pd.DataFrame(rows, columns=list(ATTENTION_COLUMNS))


def attention_mass_by_key_scale(probs: torch.Tensor, q_levels: torch.Tensor, k_levels: torch.Tensor) -> torch.Tensor:
    """(..., n_query_levels, n_key_levels): mean attention mass a query of each level puts on each key level.

    Levels are sorted ascending (``torch.unique``) on both axes; rows sum to 1 when ``probs`` rows do.
    """
    q_lv, k_lv = torch.unique(q_levels), torch.unique(k_levels)
    onehot = (k_levels[:, None] == k_lv[None, :]).double()  # (K, n_k)
    per_query = probs.double() @ onehot  # (..., Q, n_k)
    return torch.stack([per_query[..., q_levels == lv, :].mean(-2) for lv in q_lv], dim=-2)


# --------------------------------------------------------------------------------------------------- heatmaps
def key_scale_attention_map(
    probs: torch.Tensor, query_index: torch.Tensor, layout: TokenLayout, query_level: int, key_level: int
) -> torch.Tensor:
    """(h_k, w_k): attention from queries of ``query_level`` to keys of ``key_level``, on the key grid.

    ``probs`` (..., Q, K) is averaged over its leading axes and over the sampled queries of ``query_level``
    (``query_index`` are their absolute sequence positions); keys are the first K tokens of ``layout``.
    """
    probs = probs.double().reshape(-1, *probs.shape[-2:]).mean(0)
    q_sel = layout.levels[query_index] == query_level
    if not bool(q_sel.any()):
        raise ValueError(f"no sampled query at level {query_level} ({layout.label(query_level)})")
    k_slice = layout.level_slice(key_level)
    if k_slice.stop > probs.shape[-1]:
        raise ValueError(f"key level {key_level} ({layout.label(key_level)}) is beyond the {probs.shape[-1]} keys")
    return probs[q_sel, k_slice].mean(0).reshape(layout.grids[key_level])


def query_distance_map(
    probs: torch.Tensor, query_index: torch.Tensor, layout: TokenLayout, query_level: int
) -> torch.Tensor:
    """(h_q, w_q): mean attention distance per query position of ``query_level``; NaN if not sampled."""
    probs = probs.double().reshape(-1, *probs.shape[-2:]).mean(0)
    dist = per_query_distance(probs, layout.coords[query_index], layout.coords[: probs.shape[-1]])
    q_slice = layout.level_slice(query_level)
    h, w = layout.grids[query_level]
    out = torch.full((h * w,), float("nan"), dtype=torch.float64)
    sel = (query_index >= q_slice.start) & (query_index < q_slice.stop)
    out[query_index[sel] - q_slice.start] = dist[sel]
    return out.reshape(h, w)


# ---------------------------------------------------------------------------------------------------- capture
@dataclass
class AttentionRecord:
    """Batch-mean attention probabilities of one layer for a set of query rows."""

    layer: int
    query_index: torch.Tensor  # (Q,) absolute sequence positions of the rows
    probs: torch.Tensor  # (H, Q, K) float32, mean over ``count`` samples
    count: int

    @property
    def num_keys(self) -> int:
        return int(self.probs.shape[-1])


@dataclass
class _Accum:
    query_index: torch.Tensor
    total: torch.Tensor  # (H, Q, K) float64 sum over samples
    count: int = 0


@dataclass
class AttentionRecorder:
    """Captures exact attention probabilities for sampled queries; see the module docstring for the protocol.

    ``model``: a module (or modules) whose submodules with a ``record_attention`` attribute get hooked while
    the recorder is active (``None``: pass the recorder to the model yourself). ``layers``: layer ids to
    record (None: all). ``query_sample``: an int = at most that many query rows per level (chosen at random,
    reproducibly from ``seed``; levels from ``layout``, or the whole query block as one level when no layout
    is given), explicit absolute positions, or None for every row. ``batch_rows``: record only the first rows
    of every batch (with VARSR's CFG the batch is [conditional | negative]: pass the image batch size). Memory
    per record: heads x queries x keys x 8 bytes.
    """

    model: torch.nn.Module | Iterable[torch.nn.Module] | None = None
    layers: Iterable[int] | None = None
    query_sample: int | Sequence[int] | torch.Tensor | None = 16
    layout: TokenLayout | None = None
    seed: int = 0
    batch_rows: int | None = None
    _accum: dict[tuple[int, int, int, int], _Accum] = field(default_factory=dict, init=False, repr=False)
    _hooked: list[tuple[torch.nn.Module, object]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self._layers = None if self.layers is None else {int(v) for v in self.layers}
        if isinstance(self.query_sample, int) and self.query_sample < 1:
            raise ValueError(f"query_sample must be >= 1, got {self.query_sample}")

    # -- hooking
    def __enter__(self) -> AttentionRecorder:
        if self.model is None:
            return self
        models = [self.model] if isinstance(self.model, torch.nn.Module) else list(self.model)
        for model in models:
            for module in model.modules():
                if hasattr(module, "record_attention"):
                    self._hooked.append((module, module.record_attention))
                    module.record_attention = self
        if not self._hooked:
            raise ValueError(
                "AttentionRecorder: no submodule has a 'record_attention' attribute; the model's "
                "attention must follow the capture protocol in harness.analysis.attention"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for module, previous in reversed(self._hooked):
            module.record_attention = previous
        self._hooked.clear()

    # -- protocol
    def wants(self, layer: int) -> bool:
        return self._layers is None or int(layer) in self._layers

    def _select(self, q_start: int, n_q: int) -> torch.Tensor:
        lo, hi = q_start, q_start + n_q
        sample = self.query_sample
        if sample is None:
            return torch.arange(lo, hi)
        if not isinstance(sample, int):
            idx = torch.as_tensor(sample, dtype=torch.int64).flatten()
            return idx[(idx >= lo) & (idx < hi)].unique()
        if self.layout is not None:
            if hi > len(self.layout):
                raise ValueError(f"query rows {lo}..{hi} exceed the layout's {len(self.layout)} tokens")
            levels = self.layout.levels[lo:hi]
        else:
            levels = torch.zeros(n_q, dtype=torch.int64)
        chosen = []
        for level in torch.unique(levels).tolist():
            pos = torch.nonzero(levels == level).flatten() + lo
            if pos.numel() > sample:
                gen = torch.Generator().manual_seed(self.seed * 1_000_003 + level + 7)
                pos = pos[torch.randperm(pos.numel(), generator=gen)[:sample]].sort().values
            chosen.append(pos)
        return torch.cat(chosen)

    @torch.no_grad()
    def record(
        self,
        layer: int,
        q: torch.Tensor,
        k: torch.Tensor,
        mask: torch.Tensor | None = None,
        scale: float | None = None,
        *,
        q_start: int | None = None,
    ) -> None:
        """softmax(q k^T * scale + mask) of the sampled rows (float32, CPU), added to the running mean."""
        if q.dim() != 4 or k.dim() != 4 or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
            raise ValueError(
                f"record: expected q (B, H, Lq, d) and k (B, H, Lk, d), got {tuple(q.shape)} and {tuple(k.shape)}"
            )
        n_q, n_k, d = q.shape[-2], k.shape[-2], q.shape[-1]
        q_start = n_k - n_q if q_start is None else int(q_start)
        if q_start < 0 or q_start + n_q > n_k:
            raise ValueError(f"record: query rows {q_start}..{q_start + n_q} do not fit in {n_k} keys")
        index = self._select(q_start, n_q)
        if index.numel() == 0:
            return
        local = index - q_start
        scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
        rows = q.shape[0] if self.batch_rows is None else min(int(self.batch_rows), q.shape[0])
        qs = q.detach()[:rows, :, local.to(q.device)].float().cpu()
        logits = qs @ k.detach()[:rows].float().cpu().transpose(-1, -2) * scale  # (B, H, Q, Lk)
        if mask is not None:
            m = mask.detach().cpu()
            if m.dtype == torch.bool:
                m = torch.zeros(m.shape, dtype=torch.float32).masked_fill(~m, float("-inf"))
            if m.shape[-1] != n_k or m.shape[-2] not in (1, n_q):
                raise ValueError(f"record: mask shape {tuple(m.shape)} is not broadcastable to (..., {n_q}, {n_k})")
            if m.shape[-2] == n_q:
                m = m[..., local, :]
            if m.dim() == 4 and m.shape[0] > 1:
                m = m[:rows]
            logits = logits + m.float()
        probs = torch.softmax(logits, dim=-1)
        key = (int(layer), q_start, n_q, n_k)
        acc = self._accum.get(key)
        if acc is None:
            acc = self._accum[key] = _Accum(index, torch.zeros(probs.shape[1:], dtype=torch.float64))
        acc.total += probs.double().sum(0)
        acc.count += probs.shape[0]

    # -- results
    @property
    def records(self) -> list[AttentionRecord]:
        return [
            AttentionRecord(key[0], acc.query_index, (acc.total / acc.count).float(), acc.count)
            for key, acc in sorted(self._accum.items())
        ]

    def clear(self) -> None:
        self._accum.clear()

    def distance_table(self, layout: TokenLayout | None = None, radius: float = 0.1) -> pd.DataFrame:
        """ATTENTION_COLUMNS for every record (queries of one level never span two records)."""
        layout = layout or self.layout
        if layout is None:
            raise ValueError("distance_table needs a TokenLayout (pass layout= here or to the recorder)")
        frames = []
        for rec in self.records:
            if int(rec.query_index.max()) >= len(layout) or rec.num_keys > len(layout):
                raise ValueError(f"layer {rec.layer}: {rec.num_keys} keys do not fit the {len(layout)}-token layout")
            labels = {lv: layout.label(lv) for lv in layout.grids}
            frames.append(
                attention_distance_by_scale(
                    rec.probs[None],
                    layout.levels[rec.query_index],
                    layout.coords[rec.query_index],
                    layout.coords[: rec.num_keys],
                    radius=radius,
                    layers=[rec.layer],
                    labels=labels,
                )
            )
        if not frames:
            return pd.DataFrame(columns=list(ATTENTION_COLUMNS))
        return pd.concat(frames, ignore_index=True).sort_values(["layer", "head", "query_level"], ignore_index=True)


# -------------------------------------------------------------------------------------------- comparison, I/O
def compare_models(
    records_a: pd.DataFrame,
    records_b: pd.DataFrame,
    names: tuple[str, str] = ("A", "B"),
    by: Sequence[str] = ("query_level", "query_scale"),
) -> pd.DataFrame:
    """Side-by-side attention statistics of two models on the same images (e.g. SCA off vs on).

    Inputs are distance tables (``AttentionRecorder.distance_table`` / ``read_attention_csv``); rows are
    averaged over everything not in ``by`` (layers x heads by default). Columns: ``by``, then
    ``mean_distance[name]`` and ``mass_within_r[name]`` for both models and ``delta_*`` = B - A.
    """
    for name, df in zip(names, (records_a, records_b)):
        missing = [c for c in (*by, "mean_distance", "mass_within_r", "radius") if c not in df.columns]
        if missing:
            raise ValueError(f"compare_models: table {name!r} lacks columns {missing}")
    radii = {float(r) for df in (records_a, records_b) for r in df["radius"].unique()}
    if len(radii) > 1:
        raise ValueError(f"compare_models: the tables use different radii {sorted(radii)}")
    agg = [df.groupby(list(by), sort=True)[["mean_distance", "mass_within_r"]].mean() for df in (records_a, records_b)]
    if not agg[0].index.equals(agg[1].index):

        def listing(keys: set) -> str:
            return ", ".join(sorted("/".join(map(str, k)) if isinstance(k, tuple) else str(k) for k in keys)) or "-"

        only_a = listing(set(agg[0].index) - set(agg[1].index))
        only_b = listing(set(agg[1].index) - set(agg[0].index))
        raise ValueError(
            f"compare_models: different scales; only in {names[0]!r}: {only_a}; only in {names[1]!r}: {only_b}"
        )
    out = pd.DataFrame(index=agg[0].index)
    for col in ("mean_distance", "mass_within_r"):
        out[f"{col}[{names[0]}]"] = agg[0][col]
        out[f"{col}[{names[1]}]"] = agg[1][col]
        out[f"delta_{col}"] = agg[1][col] - agg[0][col]
    return out.reset_index()


def write_attention_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a distance table to ``path`` (atomic), checking the ATTENTION_COLUMNS schema."""
    from harness.atomic import atomic_path

    missing = [c for c in ATTENTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: attention table lacks columns {missing}")
    cols = (["model"] if "model" in df.columns else []) + list(ATTENTION_COLUMNS)
    with atomic_path(path) as tmp:
        df[cols].to_csv(tmp, index=False)
    return Path(path)


def read_attention_csv(path: str | Path) -> pd.DataFrame:
    """Read ``analysis/attention.csv``; a missing column raises ValueError naming the file."""
    df = pd.read_csv(path)
    missing = [c for c in ATTENTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}: not an attention table, missing columns {missing}; expected {list(ATTENTION_COLUMNS)}"
        )
    df["query_scale"] = df["query_scale"].astype(str)
    return df
