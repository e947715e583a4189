"""Image quality metrics (kind ``metrics``): per-image PSNR/SSIM/LPIPS/DISTS/NIQE/MUSIQ/MANIQA/CLIP-IQA and
set-level FID, all through pyiqa, offline only.

    from harness.metrics import build_metric, metric_info
    psnr = build_metric({"type": "psnr", "crop_border": 4})
    scores = psnr(sr, hr)                       # (B,) float64
    lower_better, needs_reference = metric_info("lpips")

Importing this package does not import pyiqa (a metric's first build does).
"""

from __future__ import annotations

from typing import Any

from harness.metrics.base import Metric, MetricInfo
from harness.metrics.weights import MissingWeightsError

__all__ = ["Metric", "MetricInfo", "MissingWeightsError", "build_metric", "metric_info", "metric_infos"]


def build_metric(spec: Any, device: str | None = None) -> Metric:
    """Build a metric from a ``ComponentSpec``, a registered name, or a ``{type, name?, **options}`` mapping.

    The metric's ``name`` is the spec's label (``name:``), else its type. Unknown names and bad options
    raise with the valid choices (registry / config errors).
    """
    from harness.config import ComponentSpec, parse_component

    if isinstance(spec, str):
        spec = {"type": spec}
    if isinstance(spec, dict):
        spec = parse_component("metrics", spec, "metrics", "<build_metric>")
    if not isinstance(spec, ComponentSpec):
        raise TypeError(f"build_metric: expected a ComponentSpec, name or mapping, got {type(spec).__name__}")
    metric = spec.build(**({"device": device} if device is not None else {}))
    metric.name = spec.name
    return metric


def metric_infos() -> dict[str, MetricInfo]:
    """Static facts of every registered metric, by registered name (no metric is built)."""
    from harness.metrics.iqa import INFO

    return dict(INFO)


def metric_info(name: str) -> tuple[bool, bool]:
    """(lower_better, needs_reference) of a registered metric name, without building it (for reports)."""
    infos = metric_infos()
    if name not in infos:
        raise KeyError(f"unknown metric {name!r}; valid choices: {', '.join(sorted(infos))}")
    info = infos[name]
    return info.lower_better, info.needs_reference
