"""Panels of SCA structure maps and gates per scale (pure plotting of given arrays).

SCA computes a structure map s from the LR image (|Laplacian|, Sobel magnitude or noise: ``sca.mask_input``),
normalised per scale (s_k), and a gate m_k = sigmoid(MLP([r_k, s_k])) that reweights the tokens as
(1 + m_k) * r_k. The panel shows, per scale, s_k and m_k
over the image (nearest-neighbour: one cell per token), so one can see whether the gate follows structure.
Uses ``matplotlib.figure.Figure`` directly (no pyplot state); save it with ``reports.figures.save_figure``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

ArrayLike = torch.Tensor | np.ndarray


def _to_map(x: ArrayLike, sample: int, what: str) -> np.ndarray:
    """(h, w) float array from (h, w), (1, h, w), (B, h, w) or (B, 1, h, w)."""
    a = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    if a.ndim == 4:
        if a.shape[1] != 1:
            raise ValueError(f"{what}: expected one channel, got shape {a.shape}")
        a = a[sample, 0]
    elif a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else a[sample]
    if a.ndim != 2:
        raise ValueError(f"{what}: expected (h, w), (1, h, w), (B, h, w) or (B, 1, h, w), got shape {a.shape}")
    return a


def _to_image(image: ArrayLike, sample: int) -> np.ndarray:
    a = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, np.float32)
    if a.ndim == 4:
        a = a[sample]
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        raise ValueError(f"image: expected (3, H, W) or (B, 3, H, W) in [0, 1], got shape {a.shape}")
    return np.clip(np.moveaxis(a, 0, -1), 0.0, 1.0)


def sca_mask_panels(
    structure_maps: Sequence[ArrayLike],
    gates: Sequence[ArrayLike],
    image: ArrayLike | None = None,
    *,
    labels: Sequence[str] | None = None,
    sample: int = 0,
    gate_alpha: float = 0.65,
    width: float = 6.875,
) -> Figure:
    """2 x K panel (row 1: structure map s_k; row 2: gate m_k, over ``image`` when given) for K scales.

    ``structure_maps`` / ``gates``: one map per scale, each (h_k, w_k) or batched ((B,) 1, h_k, w_k)
    (``sample`` picks the image); ``image`` (3, H, W) in [0, 1] (the LR or SR image); ``labels`` per scale
    (default 'h x w'). Gates are drawn on [0, 1] (the sigmoid range) when they lie in it.
    """
    if len(structure_maps) != len(gates):
        raise ValueError(f"{len(structure_maps)} structure maps but {len(gates)} gates: need one of each per scale")
    if not gates:
        raise ValueError("no scales given")
    s_maps = [_to_map(s, sample, f"structure_maps[{k}]") for k, s in enumerate(structure_maps)]
    g_maps = [_to_map(g, sample, f"gates[{k}]") for k, g in enumerate(gates)]
    for k, (s, g) in enumerate(zip(s_maps, g_maps)):
        if s.shape != g.shape:
            raise ValueError(f"scale {k}: structure map {s.shape} and gate {g.shape} differ in shape")
    if labels is not None and len(labels) != len(gates):
        raise ValueError(f"{len(labels)} labels for {len(gates)} scales")
    labels = list(labels) if labels is not None else [f"{g.shape[0]}x{g.shape[1]}" for g in g_maps]
    img = _to_image(image, sample) if image is not None else None
    g_all = np.concatenate([g.ravel() for g in g_maps])
    g_lim = (0.0, 1.0) if (g_all.min() >= 0 and g_all.max() <= 1) else (float(g_all.min()), float(g_all.max()))

    n = len(gates)
    fig = Figure(figsize=(width, width / n * 2.3 + 0.3), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    gate_artist = None
    for k in range(n):
        ax_s, ax_g = axes[0, k], axes[1, k]
        ax_s.imshow(s_maps[k], cmap="magma", interpolation="nearest", extent=(0, 1, 1, 0))
        ax_s.set_title(labels[k], fontsize=7)
        if img is not None:
            ax_g.imshow(img.mean(-1), cmap="gray", vmin=0, vmax=1, extent=(0, 1, 1, 0), interpolation="bilinear")
        gate_artist = ax_g.imshow(
            g_maps[k],
            cmap="viridis",
            vmin=g_lim[0],
            vmax=g_lim[1],
            interpolation="nearest",
            extent=(0, 1, 1, 0),
            alpha=gate_alpha if img is not None else 1.0,
        )
        for ax in (ax_s, ax_g):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("structure $\\bar{s}_k$", fontsize=7)
    axes[1, 0].set_ylabel("gate $m_k$", fontsize=7)
    cbar = fig.colorbar(gate_artist, ax=axes[1, :].tolist(), shrink=0.8, pad=0.01)
    cbar.ax.tick_params(labelsize=6)
    return fig
