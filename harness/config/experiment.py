"""Typed experiment configs: YAML (with ``base:`` inheritance and ``key.sub=value`` overrides) -> dataclasses.

Everything is validated before any work starts. A wrong key, a wrong type or an unknown registry name raises
``ConfigError`` naming the file, the key path and the valid choices, e.g.::

    experiments/demo.yaml: methods[1].type: unknown method 'bicubik'; valid choices: bicubic, bilinear, ...

Component blocks (datasets, methods, metrics, model, train) are ``{type: NAME, name: LABEL, **options}``; their
options are validated against the config dataclass the component registered (``harness.core.registry``).
A dataclass field may carry ``metadata={"key": "lambda"}`` to be spelt differently in YAML. A ``__post_init__``
check that names one field first (``ValueError("radius: must be >= 0, got -1")``) is reported at that field's
key path (``analysis.radius: must be >= 0, got -1``).

This module holds the experiment's sections (``ExperimentConfig`` and its blocks, the ``analysis:`` block
``AnalysisOptions`` among them), ``experiment_from_dict`` and ``load_experiment``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.config.components import ComponentSpec, parse_component
from harness.config.files import load_experiment_tree
from harness.core.mapping import ConfigError, from_dict, to_dict
from harness.core.runfolder import check_run_name, run_folder
from harness.core.stats import StatisticsOptions


# ----------------------------------------------------------------------------------------------- experiment
@dataclass
class EfficiencyConfig:
    """``bench.efficiency``: also measure a Table-2-style efficiency table (``efficiency.json``, see
    ``harness.bench.efficiency``): params, steps, latency median/IQR at a fixed LR size, peak memory."""

    lr_size: int = 128  # LR side of the timed input (128 -> 512 at x4, the paper's Table 2 setting)
    repeats: int = 5  # timed calls (median and IQR reported)
    warmup: int = 2  # untimed calls first
    memory: bool = True  # also measure peak memory (one more call)
    batch_sizes: list[int] = field(default_factory=list)  # optional throughput-vs-batch rows

    def __post_init__(self) -> None:
        if self.lr_size < 1 or self.repeats < 1 or self.warmup < 0:
            raise ValueError(
                f"bench.efficiency needs lr_size >= 1, repeats >= 1, warmup >= 0; got lr_size={self.lr_size}, "
                f"repeats={self.repeats}, warmup={self.warmup}"
            )
        if any(b < 1 for b in self.batch_sizes):
            raise ValueError(f"bench.efficiency.batch_sizes must be >= 1, got {self.batch_sizes}")


MIN_BOOTSTRAP_SAMPLES = 100


@dataclass
class BenchConfig:
    """How ``run.py bench`` evaluates methods on datasets."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = 1
    save_images: bool = True
    max_images: int | None = None  # evaluate only the first N images of every dataset (null: all)
    # an input file that cannot be decoded is recorded and the other images are evaluated; "fail" then fails
    # the run (exit 1), "skip" does not
    on_corrupt: Literal["fail", "skip"] = "fail"
    strict: bool = False  # any image that fails (unreadable, metric error, wrong size, out of memory) fails the run
    bootstrap_samples: int = 1000  # for the 95% CIs in summaries and reports; 0 switches the CIs off
    results_format: Literal["csv", "parquet"] = "csv"
    efficiency: EfficiencyConfig | None = None  # set (e.g. `bench.efficiency: {}`) to write efficiency.json

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"max_images: must be >= 1, or null for every image, got {self.max_images}")
        if self.bootstrap_samples != 0 and self.bootstrap_samples < MIN_BOOTSTRAP_SAMPLES:
            raise ValueError(
                f"bootstrap_samples: must be >= {MIN_BOOTSTRAP_SAMPLES} (fewer resamples give unstable CI "
                f"bounds), or 0 to switch the CIs off, got {self.bootstrap_samples}"
            )


@dataclass
class ReportConfig:
    title: str | None = None
    crop_size: int = 96  # zoomed crop in the image grid (HR pixels)
    max_images_in_grid: int = 6


@dataclass
class SweepConfig:
    """Cells = cartesian ``grid`` x paired ``zip`` over config keys, each repeated over ``seeds`` (see
    harness.sweep.expand: a seed sets the training/bench ``seed`` and every sampling ``seed`` option)."""

    grid: dict[str, list[Any]] = field(default_factory=dict)
    zip: dict[str, list[Any]] = field(default_factory=dict)
    seeds: list[Any] | None = None  # replicate seeds, e.g. [0, 1, 2]; checked by harness.sweep.expand
    stages: list[Literal["train", "bench", "analyze"]] = field(default_factory=lambda: ["train", "bench"])
    backend: Literal["local", "submitit"] = "local"
    workers: int = 1  # local CPU workers (ignored when GPUs are visible: one cell per GPU)
    backend_options: dict[str, Any] = field(default_factory=dict)
    # the paired comparisons of the sweep report (alpha, test, n_resamples, confidence, min_effect, seed;
    # harness.core.stats, docs/STATISTICS.md); not part of any cell's config, so changing them reruns nothing
    statistics: StatisticsOptions = field(default_factory=StatisticsOptions)


# ----------------------------------------------------------------------------------------------- analysis
ALIGNMENTS = ("center", "topleft")


@dataclass
class AnalysisOptions:
    """Knobs of the analysis (defaults: a few images, cheap enough for every sweep cell).

    A failing check names its field first (``"radius: must be >= 0, got -1"``), which ``harness.config.experiment``
    reports at the field's key path (``analysis.radius: ...``).
    """

    max_images: int = 4  # first N images of the first dataset
    query_sample: int = 16  # attention: query rows per scale
    radius: float = 0.1  # attention: radius of the "mass within r" (fraction of the image side)
    alignment: str = "center"  # token positions: center | topleft (VARSR's RoPE grid)
    perturb_scales: tuple[int, ...] = (1,)  # accumulation: 0-based scales to corrupt (1: the first 2x2)
    perturb_fraction: float = 0.1  # share of that scale's tokens replaced by random codes
    sca_mask_images: int = 1  # SCA mask panels (PNG) for the first N images
    figures: bool = False  # also attention/accumulation figures (pdf, svg, png) per run
    device: str | None = None  # None: the experiment's bench.device

    def __post_init__(self) -> None:
        self.perturb_scales = tuple(self.perturb_scales)
        if self.max_images < 1:
            raise ValueError(f"max_images: must be >= 1, got {self.max_images}")
        if self.query_sample < 1:
            raise ValueError(f"query_sample: must be >= 1, got {self.query_sample}")
        if self.radius < 0:
            raise ValueError(f"radius: must be >= 0, got {self.radius}")
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"alignment: must be 'center' or 'topleft', got {self.alignment!r}")
        if any(s < 0 for s in self.perturb_scales):
            raise ValueError(f"perturb_scales: 0-based scale indices must be >= 0, got {list(self.perturb_scales)}")
        if not 0.0 < self.perturb_fraction <= 1.0:
            raise ValueError(f"perturb_fraction: must be in (0, 1], got {self.perturb_fraction}")
        if self.sca_mask_images < 0:
            raise ValueError(f"sca_mask_images: must be >= 0, got {self.sca_mask_images}")


@dataclass
class ExperimentConfig:
    name: str
    description: str = ""
    seed: int = 0
    output_root: str = "runs"
    datasets: list[ComponentSpec] = field(default_factory=list)
    methods: list[ComponentSpec] = field(default_factory=list)
    metrics: list[ComponentSpec] = field(default_factory=list)
    bench: BenchConfig = field(default_factory=BenchConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    model: ComponentSpec | None = None  # the model a `train` stage trains (kind "models")
    train: ComponentSpec | None = None  # the trainer (kind "trainers")
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)  # the analyze stage / `run.py analyze`
    sweep: SweepConfig | None = None
    source: str = "<config>"  # where it was loaded from (not a YAML key)

    @property
    def run_dir(self) -> Path:
        """``<output_root>/<name>``, checked to stay inside ``output_root`` (``ConfigError`` otherwise)."""
        return run_folder(self.output_root, self.name)

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "source":
                continue
            out[f.name] = to_dict(getattr(self, f.name))
        return out


_COMPONENT_LISTS = {"datasets": "datasets", "methods": "methods", "metrics": "metrics"}
_COMPONENT_SINGLE = {"model": "models", "train": "trainers"}


def experiment_from_dict(data: dict, source: str = "<config>") -> ExperimentConfig:
    """Validate a merged raw mapping into an ExperimentConfig (components checked against the registry)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    data = dict(data)
    data.pop("base", None)
    parsed: dict[str, Any] = {}
    for key, kind in _COMPONENT_LISTS.items():
        if key in data:
            items = data.pop(key)
            if not isinstance(items, list):
                raise ConfigError(f"{source}: {key}: expected a list of components, got {items!r}")
            specs = [parse_component(kind, item, f"{key}[{i}]", source) for i, item in enumerate(items)]
            names = [s.name for s in specs]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ConfigError(f"{source}: {key}: duplicate names {dupes}; give each a distinct 'name:'")
            parsed[key] = specs
    for key, kind in _COMPONENT_SINGLE.items():
        if data.get(key) is not None:
            parsed[key] = parse_component(kind, data.pop(key), key, source)
        else:
            data.pop(key, None)
    if "source" in data:
        raise ConfigError(f"{source}: source: reserved key")
    plain_cls = dataclasses.make_dataclass(
        "_Plain",
        [
            (f.name, f.type, f)
            for f in dataclasses.fields(ExperimentConfig)
            if f.name not in parsed
            and f.name not in _COMPONENT_LISTS
            and f.name not in _COMPONENT_SINGLE
            and f.name != "source"
        ],
    )
    plain_cls.__module__ = __name__
    plain = from_dict(plain_cls, data, source=source)
    try:
        check_run_name(plain.name)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    kwargs = {f.name: getattr(plain, f.name) for f in dataclasses.fields(plain)}
    return ExperimentConfig(**kwargs, **parsed, source=source)


def load_experiment(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Load, merge bases, apply ``key.sub=value`` overrides, validate. Raises ConfigError.

    ``path`` is a YAML file or the name of a bundled experiment (``"demo"``, see ``find_experiment``).
    """
    path, data = load_experiment_tree(path, overrides)
    return experiment_from_dict(data, source=str(path))
