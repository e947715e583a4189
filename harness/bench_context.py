"""What the benchmark runner passes around: metric flags, the built components and the hook interface.

``Prepared`` holds every dataset, method and metric built by ``harness.bench_prepare.prepare``;
``BenchContext`` is what each ``BenchHook`` sees (``harness.bench_efficiency.EfficiencyHook`` is one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import torch

from harness.config import ExperimentConfig


class MetricFlags(NamedTuple):
    lower_better: bool
    needs_reference: bool
    set_level: bool  # one value per image set (FID), computed from the saved folders

    @classmethod
    def of(cls, metric: Any) -> MetricFlags:
        return cls(
            bool(metric.lower_better),
            bool(getattr(metric, "needs_reference", True)),
            bool(getattr(metric, "set_level", False)),
        )


@dataclass
class Prepared:
    """Built components, keyed by their config names (config order)."""

    datasets: dict[str, Any]
    methods: dict[str, Any]
    metrics: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def flags(self) -> dict[str, MetricFlags]:
        return {name: MetricFlags.of(m) for name, m in self.metrics.items()}

    def image_metrics(self, dataset: Any) -> list[str]:
        """Per-image metrics computable on ``dataset`` (set-level ones and, without HR, FR ones excluded)."""
        return [
            k for k, f in self.flags.items() if not f.set_level and (dataset.has_reference or not f.needs_reference)
        ]


@dataclass
class BenchContext:
    """What hooks see: the config, the run dir, the device and the built components."""

    cfg: ExperimentConfig
    run_dir: Path
    device: torch.device
    prepared: Prepared


class BenchHook:
    """Extension points, e.g. an efficiency table writing ``efficiency.json`` (``results.write_efficiency``).

    Subclass and override what you need; pass instances as ``run_bench(cfg, hooks=[...])``.
    """

    def on_start(self, ctx: BenchContext) -> None: ...

    def on_method_start(self, ctx: BenchContext, method_name: str, method: Any) -> None: ...

    def on_batch(self, ctx: BenchContext, dataset: str, method: str, keys: list[str], seconds: float) -> None: ...

    def on_end(self, ctx: BenchContext, summary: pd.DataFrame) -> None: ...
