"""Attention-distance statistics on attention probabilities: pure functions of (probs, token coordinates).

AlignVAR's first diagnosis is that VAR attention is *locally biased*: a query attends almost only to keys near
it in the image. We measure that as the attention-weighted distance between query and key centres in
normalised image coordinates (``harness.analysis.attention.geometry``), per layer, head and query scale, and
as the attention mass within a radius; plus per-scale heatmaps on the key / query grids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch

from harness.analysis.attention.geometry import TokenLayout

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
