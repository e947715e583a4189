"""The ``analysis:`` block of an experiment config: knobs of the ``analyze`` stage and of ``run.py analyze``.

One dataclass serves as both the YAML section (``ExperimentConfig.analysis``, mapped strictly by
``harness.config``: unknown keys, wrong types and the checks below are reported as ``analysis.KEY: ...``) and
the options ``harness.analysis.stage.run_analysis`` takes. ``run.py analyze`` starts from the config's block and
lays the flags given explicitly on top (``--max-images 2`` beats ``analysis.max_images``)::

    analysis:
      max_images: 4          # first N images of the first dataset
      query_sample: 16       # attention: query rows per scale
      radius: 0.1            # attention: radius of the "mass within r" (fraction of the image side)
      alignment: center      # token positions: center | topleft (VARSR's RoPE grid)
      perturb_scales: [1]    # accumulation: 0-based scales to corrupt (1: the first 2x2)
      perturb_fraction: 0.1  # share of that scale's tokens replaced by random codes
      sca_mask_images: 1     # SCA mask panels (PNG) for the first N images (analyze stage)
      figures: false         # also attention/accumulation figures per run (analyze stage)
      device: null           # null: the experiment's bench.device

Nothing heavy is imported here (``harness.config`` imports this module).
"""

from __future__ import annotations

from dataclasses import dataclass

ALIGNMENTS = ("center", "topleft")


@dataclass
class AnalysisOptions:
    """Knobs of the analysis (defaults: a few images, cheap enough for every sweep cell).

    A failing check names its field first (``"radius: must be >= 0, got -1"``), which ``harness.config``
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
