"""Capture of exact attention probabilities from a running model: ``AttentionRecorder`` and its protocol.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch

from harness.analysis.attention.geometry import TokenLayout
from harness.analysis.attention.stats import ATTENTION_COLUMNS, attention_distance_by_scale


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
                "attention must follow the capture protocol in harness.analysis.attention.capture"
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
        with torch.no_grad():  # (not a decorator: mutmut leaves decorated functions alone)
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
                    k_levels=layout.levels[: rec.num_keys],
                    radius=radius,
                    layers=[rec.layer],
                    labels=labels,
                )
            )
        if not frames:
            return pd.DataFrame(columns=list(ATTENTION_COLUMNS))
        return pd.concat(frames, ignore_index=True).sort_values(["layer", "head", "query_level"], ignore_index=True)
