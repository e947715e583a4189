"""Attention-distance statistics on attention probabilities: pure functions of (probs, token geometry).

AlignVAR's first diagnosis is that VAR attention is *locally biased*: a query attends almost only to keys near
it in the image. A mean over every visible key does not isolate that: the LR prefix, the class token (at the
image centre) and the coarse scales (whole-image tokens) all sit "far" from a fine query, so attending to them
scores as long-range. Per layer, head and query scale we therefore report, on normalised image coordinates
(``harness.analysis.attention.geometry``):

* ``mean_distance``: sum_j p_qj ||c_q - c_j|| over every key, and ``mass_within_r``;
* ``within_scale_distance``: the same over the keys of the query's own scale only, the probabilities
  renormalised to sum to 1 there (the locality the paper's diagnosis is about);
* ``mass_prefix``, ``mass_class``, ``mass_coarser``, ``mass_own``: attention mass per key group
  (``KEY_GROUPS``);
* ``uniform_*``: every statistic for uniform attention over the keys the query can see (block-causal), the
  baseline a value has to be compared with (on a fine grid uniform attention has mean distance ~0.52).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch

from harness.analysis.attention.geometry import KEY_GROUPS, TokenLayout, key_groups, visible_keys

STATISTICS = (
    "mean_distance",
    "within_scale_distance",
    "mass_within_r",
    *(f"mass_{g}" for g in KEY_GROUPS),
)
"""The per-query statistics, averaged over the sampled queries of a scale; each has a ``uniform_`` twin."""
UNIFORM = tuple(f"uniform_{s}" for s in STATISTICS)
ATTENTION_COLUMNS = ("layer", "head", "query_level", "query_scale", "n_queries", "radius", *STATISTICS, *UNIFORM)
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


def per_query_statistics(
    probs: torch.Tensor,
    q_levels: torch.Tensor,
    q_coords: torch.Tensor,
    k_levels: torch.Tensor,
    k_coords: torch.Tensor,
    radius: float = 0.1,
) -> dict[str, torch.Tensor]:
    """Every ``STATISTICS`` entry per query, (..., Q) float64, for ``probs`` (..., Q, K) and, under the
    ``uniform_`` names, for uniform attention over each query's visible keys ((Q,): geometry only).

    ``within_scale_distance`` is NaN for a query that puts no mass on its own scale.
    """
    dist = _check(probs, q_coords, k_coords)  # (Q, K)
    if q_levels.shape != (q_coords.shape[0],) or k_levels.shape != (k_coords.shape[0],):
        raise ValueError(
            f"q_levels {tuple(q_levels.shape)} / k_levels {tuple(k_levels.shape)} do not match the "
            f"{q_coords.shape[0]} queries / {k_coords.shape[0]} keys"
        )
    p = probs.double()
    visible = visible_keys(q_levels, k_levels).double()
    uniform = visible / visible.sum(-1, keepdim=True)
    near = (dist <= radius + 1e-9).double()
    own_scale = (k_levels[None, :] == q_levels[:, None]).double()
    groups = {g: m.double() for g, m in key_groups(q_levels, k_levels).items()}
    out: dict[str, torch.Tensor] = {}
    for prefix, w in (("", p), ("uniform_", uniform)):
        out[f"{prefix}mean_distance"] = (w * dist).sum(-1)
        own_mass = (w * own_scale).sum(-1)
        out[f"{prefix}within_scale_distance"] = (w * dist * own_scale).sum(-1) / own_mass
        out[f"{prefix}mass_within_r"] = (w * near).sum(-1)
        for g, m in groups.items():
            out[f"{prefix}mass_{g}"] = (w * m).sum(-1)
    return out


def attention_distance_by_scale(
    probs: torch.Tensor,
    q_levels: torch.Tensor,
    q_coords: torch.Tensor,
    k_coords: torch.Tensor,
    *,
    k_levels: torch.Tensor,
    radius: float = 0.1,
    layers: Sequence[int] | None = None,
    labels: Mapping[int, str] | None = None,
) -> pd.DataFrame:
    """Per layer x head x query scale: ``STATISTICS`` and their uniform baselines (``UNIFORM``), each the mean
    over the queries of that scale.

    ``probs`` (layers, heads, Q, K); ``q_levels`` (Q,) / ``k_levels`` (K,) the levels of the queries / keys;
    ``layers`` the layer ids of the first axis (default 0..); ``labels`` level -> scale name
    (``TokenLayout.label``). Columns: ATTENTION_COLUMNS.
    """
    if probs.dim() != 4:
        raise ValueError(f"probs must be (layers, heads, Q, K), got shape {tuple(probs.shape)}")
    n_layers, n_heads, n_q, _ = probs.shape
    if q_levels.shape != (n_q,):
        raise ValueError(f"q_levels must have shape ({n_q},), got {tuple(q_levels.shape)}")
    layer_ids = list(range(n_layers)) if layers is None else list(layers)
    if len(layer_ids) != n_layers:
        raise ValueError(f"{len(layer_ids)} layer ids for {n_layers} layers")
    stats = per_query_statistics(probs, q_levels, q_coords, k_levels, k_coords, radius)
    rows = []
    for level in torch.unique(q_levels).tolist():
        sel = q_levels == level
        means = {name: v[..., sel].nanmean(-1) for name, v in stats.items()}
        for li, layer in enumerate(layer_ids):
            for head in range(n_heads):
                row = {
                    "layer": int(layer),
                    "head": head,
                    "query_level": int(level),
                    "query_scale": (labels or {}).get(level, str(level)),
                    "n_queries": int(sel.sum()),
                    "radius": float(radius),
                }
                row.update({name: float(means[name][li, head]) for name in STATISTICS})
                row.update({name: float(means[name]) for name in UNIFORM})
                rows.append(row)
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
