"""The ``data:`` block of a trainer: HR image sources or pre-made LR/HR pairs, crops, degradation, batching.

``TrainDataConfig`` is what a trainer embeds; ``build_degradation`` builds (or only validates) the registered
degradation it names. How the files of a source are found: ``harness.data.training.sources``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.data.degradations.base import Degradation


@dataclass
class SourceConfig:
    """One source of HR images: exactly one of ``path`` (folder or .txt list), ``glob`` or ``bundled``."""

    path: str | None = None
    glob: str | None = None
    bundled: bool = False
    split: str = "all"  # bundled only: all | train | eval (harness.data.bundled.SPLITS; train on "train")
    limit: int | None = None  # keep the first N files (sorted by path)

    def __post_init__(self) -> None:
        given = [k for k in ("path", "glob", "bundled") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"a source needs exactly one of path, glob, bundled: true; got {given or 'none'}")
        if self.split != "all" and not self.bundled:
            raise ValueError(f"split={self.split!r} applies to the bundled photographs only (bundled: true)")
        if self.split not in ("all", "train", "eval"):
            raise ValueError(f"unknown bundled split {self.split!r}; valid choices: all, train, eval")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")


@dataclass
class PairedSourceConfig:
    """Pre-made LR/HR pairs: images directly in ``lr_dir`` / ``hr_dir``, paired by file stem."""

    lr_dir: str
    hr_dir: str
    filename_tmpl: str = "{}"  # LR stem from the HR stem, e.g. '{}x4'
    limit: int | None = None


@dataclass
class DegradationSpec:
    """A registered degradation and its options (``scale`` comes from the data config)."""

    name: str = "stablesr_mild"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainDataConfig:
    """What a trainer embeds as its ``data:`` block."""

    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig(bundled=True)])
    paired: list[PairedSourceConfig] = field(default_factory=list)  # when given, used instead of sources
    scale: int = 4
    crop_size: int = 512  # HR crop; a smaller image has its short side resized up to it first
    flip: bool = True
    degradation: DegradationSpec = field(default_factory=DegradationSpec)
    batch_size: int = 4  # per rank
    num_workers: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scale < 1 or self.crop_size < self.scale or self.crop_size % self.scale:
            raise ValueError(f"crop_size={self.crop_size} must be a positive multiple of scale={self.scale}")
        if self.batch_size < 1 or self.num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {self.batch_size}, {self.num_workers}")
        if not self.paired and not self.sources:
            raise ValueError("give at least one entry in sources (HR images) or paired (LR/HR folders)")
        if not self.paired:
            build_degradation(self.degradation, self.scale, validate_only=True)


def build_degradation(spec: DegradationSpec, scale: int, validate_only: bool = False) -> Degradation | None:
    """Build the registered degradation ``spec.name`` with ``spec.options`` (``scale`` filled in, checked)."""
    from harness.core import registry
    from harness.core.mapping import ConfigError, from_dict

    options = dict(spec.options)
    if options.setdefault("scale", scale) != scale:
        raise ValueError(f"degradation.options.scale={options['scale']} disagrees with scale={scale}; set scale only")
    try:
        entry = registry.get("degradations", spec.name)
    except registry.RegistryError as exc:
        raise ValueError(f"degradation.name: {exc}") from None
    if entry.config is not None:
        try:
            options = from_dict(entry.config, options, path="degradation.options", source="data")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("data: ")) from None
    return None if validate_only else registry.create("degradations", spec.name, options)
