"""Attention distance of multi-scale (VAR/VARSR) transformers: token geometry, statistics and capture.

AlignVAR's first diagnosis is that VAR attention is *locally biased*: a query attends almost only to keys near
it in the image. We measure that as the attention-weighted distance between query and key centres in
normalised image coordinates, per layer, head and query scale, and as the attention mass within a radius.

This module gathers the public names of four smaller ones (import from here or from them):

* ``attention_geometry``  where every token of ``[prefix | scale 1 | ... | scale K]`` sits: ``TokenLayout``,
                          ``token_layout`` (alignment ``center`` or VARSR's RoPE grid ``topleft``), levels;
* ``attention_stats``     pure statistics on probabilities: mean distance, mass within a radius, the per
                          layer x head x scale table (``ATTENTION_COLUMNS``), key-scale and query heatmaps;
* ``attention_capture``   ``AttentionRecorder`` and the capture protocol an attention module follows
                          (``record_attention`` / ``layer_idx``) so that its exact probabilities are recorded;
* ``attention_tables``    ``compare_models`` (two models side by side) and ``analysis/attention.csv`` I/O.
"""

from __future__ import annotations

from harness.analysis.attention_capture import AttentionRecord, AttentionRecorder
from harness.analysis.attention_geometry import (
    HW,
    LEVEL_PREFIX,
    Alignment,
    TokenLayout,
    token_coordinates,
    token_layout,
    token_levels,
)
from harness.analysis.attention_stats import (
    ATTENTION_COLUMNS,
    attention_distance_by_scale,
    attention_mass_by_key_scale,
    key_scale_attention_map,
    mass_within_radius,
    mean_attention_distance,
    per_query_distance,
    query_distance_map,
)
from harness.analysis.attention_tables import compare_models, read_attention_csv, write_attention_csv

__all__ = [
    "ATTENTION_COLUMNS",
    "HW",
    "LEVEL_PREFIX",
    "Alignment",
    "AttentionRecord",
    "AttentionRecorder",
    "TokenLayout",
    "attention_distance_by_scale",
    "attention_mass_by_key_scale",
    "compare_models",
    "key_scale_attention_map",
    "mass_within_radius",
    "mean_attention_distance",
    "per_query_distance",
    "query_distance_map",
    "read_attention_csv",
    "token_coordinates",
    "token_layout",
    "token_levels",
    "write_attention_csv",
]
