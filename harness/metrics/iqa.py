"""The registered metrics, all computed by pyiqa 0.1.16 (pinned: values drift between releases).

Conventions (``shared/reference/pyiqa-offline.md`` section 3.4, ``sr-anchors.md`` section 5):

- ``psnr`` / ``ssim`` default to the SR-paper setting: the Y channel of BT.601 YCbCr (``color_space: ycbcr``),
  ``crop_border: 0``, i.e. pyiqa ``create_metric('psnr'|'ssim', test_y_channel=True, color_space='ycbcr')``
  as in OSEDiff's / SeeSR's evaluation (reproduces their logged DRealSR numbers). Classical-SR tables crop
  ``crop_border = scale``. pyiqa's SSIM rounds Y to integers and clamps the contrast-structure term, so it
  is up to ~1e-3 off BasicSR's SSIM; PSNR-Y matches BasicSR to 1e-4 dB.
- ``y_channel: false`` gives RGB: ``psnr`` over 3 channels, ``ssim`` = pyiqa ``ssimc``.
  ``color_space: yiq`` is pyiqa's own default Y (the one in its calibration CSV).
- ``lpips`` is AlexNet v0.1 (``net: vgg`` for BasicSR's script), ``musiq`` KonIQ, ``maniqa`` KonIQ
  (OSEDiff/SeeSR tables use ``variant: pipal``: declare it), ``clipiqa`` RN50, ``fid`` clean-fid mode.

Which direction is better and full- vs no-reference come from pyiqa (``InferenceModel.lower_better`` /
``metric_mode``, i.e. its ``DEFAULT_CONFIGS`` registry); :data:`NOT_IN_PYIQA` holds only what pyiqa does not know
(FID is computed per set, from the SR and the HR folders). Each built metric records its pyiqa name, the options
passed to ``create_metric`` and the pyiqa version (:meth:`PyiqaMetric.provenance`, written to ``summary.json``).

Weight files are located first (:mod:`harness.metrics.weights`); online a missing one is fetched into pyiqa's
cache, offline it raises MissingWeightsError with the fix. Importing this module is cheap; pyiqa is imported on
first build.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from harness.core.imageio import is_image_file
from harness.core.registry import register
from harness.metrics import backend, weights
from harness.metrics.base import Metric, MetricInfo

PYIQA_NAMES: dict[str, str] = {}  # registered name -> the pyiqa model it creates with default options
# facts pyiqa does not know, by registered name: FID is one number per set from two folders (pyiqa registers it
# as 'NR' because it is called with folders, not image pairs), so it needs the HR folder
NOT_IN_PYIQA: dict[str, dict[str, bool]] = {"fid": {"needs_reference": True, "set_level": True}}


def _register(name: str, pyiqa_name: str, config: type, description: str):
    PYIQA_NAMES[name] = pyiqa_name
    return register("metrics", name, config=config, description=description)


def pyiqa_facts(pyiqa_name: str) -> dict[str, bool]:
    """``lower_better`` and ``needs_reference`` (``metric_mode == 'FR'``) from pyiqa's model registry."""
    backend.import_pyiqa()
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    if pyiqa_name not in DEFAULT_CONFIGS:
        raise KeyError(f"pyiqa {backend.pyiqa_version()} has no metric {pyiqa_name!r}")
    entry = DEFAULT_CONFIGS[pyiqa_name]
    # InferenceModel's own defaults: lower_better False when absent
    return {"lower_better": bool(entry.get("lower_better", False)), "needs_reference": entry["metric_mode"] == "FR"}


class PyiqaMetric(Metric):
    """One pyiqa ``InferenceModel``, created once and reused for every batch.

    ``lower_better`` and ``needs_reference`` are read from the created model (pyiqa's registry), then
    :data:`NOT_IN_PYIQA` of the registered ``kind`` applies.
    """

    def __init__(
        self,
        name: str,
        pyiqa_name: str,
        files: list[weights.Resolved],
        device: str | None,
        create_kwargs: dict[str, Any] | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(name, backend.pick_device(device))
        self.pyiqa_name = pyiqa_name
        self.create_kwargs = dict(create_kwargs or {})
        self.weight_files = [f.path for f in files]
        self.model = backend.create(name, pyiqa_name, files, self.device, **self.create_kwargs)
        self.lower_better = bool(self.model.lower_better)
        self.needs_reference = self.model.metric_mode == "FR"
        self.set_level = False
        for key, value in NOT_IN_PYIQA.get(kind or name, {}).items():
            setattr(self, key, value)

    def provenance(self) -> dict[str, Any]:
        """What produced the numbers: pyiqa's name, the options given to ``create_metric`` (pyiqa's defaults for
        the rest: ``pyiqa_defaults``), its version, what pyiqa says of direction and mode, the weight files."""
        from pyiqa.default_model_configs import DEFAULT_CONFIGS

        defaults = {k: v for k, v in DEFAULT_CONFIGS[self.pyiqa_name]["metric_opts"].items() if k != "type"}
        return {
            "name": self.pyiqa_name,
            "options": dict(self.create_kwargs),
            "pyiqa_defaults": defaults,
            "version": backend.pyiqa_version(),
            "metric_mode": self.model.metric_mode,
            "lower_better": bool(self.model.lower_better),
            "weights": [p.name for p in self.weight_files],
        }

    def score(self, sr: torch.Tensor, hr: torch.Tensor | None) -> torch.Tensor:
        with backend.quiet():
            return self.model(sr, hr) if self.needs_reference else self.model(sr)

    def to(self, device: torch.device | str) -> PyiqaMetric:
        super().to(device)
        self.model.to(self.device)
        return self

    def close(self) -> None:
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, pyiqa={self.pyiqa_name!r}, device={self.device})"


# --------------------------------------------------------------------------------------------- PSNR / SSIM
@dataclass
class FidelityConfig:
    """PSNR / SSIM options (defaults: Y of BT.601 YCbCr, no crop: the StableSR/OSEDiff/VARSR tables)."""

    y_channel: bool = True
    crop_border: int = 0  # pixels removed from each side before scoring (classical SR: = scale)
    color_space: Literal["ycbcr", "yiq"] = "ycbcr"  # which luma, when y_channel is true
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.crop_border < 0:
            raise ValueError(f"crop_border must be >= 0, got {self.crop_border}")


@dataclass
class FixedFidelityConfig:
    """Options of the fixed-channel names (psnr_y, ssim_y, psnr_rgb, ssim_rgb)."""

    crop_border: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.crop_border < 0:
            raise ValueError(f"crop_border must be >= 0, got {self.crop_border}")


def _psnr(name: str, cfg: FidelityConfig, device: str | None) -> PyiqaMetric:
    kwargs = {"test_y_channel": cfg.y_channel, "crop_border": cfg.crop_border}
    if cfg.y_channel:
        kwargs["color_space"] = cfg.color_space
    return PyiqaMetric(name, "psnr", [], device or cfg.device, kwargs)


def _ssim(name: str, cfg: FidelityConfig, device: str | None) -> PyiqaMetric:
    if cfg.y_channel:
        kwargs = {"test_y_channel": True, "color_space": cfg.color_space, "crop_border": cfg.crop_border}
        return PyiqaMetric(name, "ssim", [], device or cfg.device, kwargs)
    return PyiqaMetric(name, "ssimc", [], device or cfg.device, {"crop_border": cfg.crop_border})


@_register("psnr", "psnr", FidelityConfig, "PSNR (dB); default Y of YCbCr, no crop")
def make_psnr(cfg: FidelityConfig, device: str | None = None) -> PyiqaMetric:
    name = "psnr"
    return _psnr(name, cfg, device)


@_register("ssim", "ssim", FidelityConfig, "SSIM (pyiqa); default Y of YCbCr, no crop")
def make_ssim(cfg: FidelityConfig, device: str | None = None) -> PyiqaMetric:
    name = "ssim"
    return _ssim(name, cfg, device)


def _fixed(y_channel: bool, cfg: FixedFidelityConfig) -> FidelityConfig:
    return FidelityConfig(y_channel=y_channel, crop_border=cfg.crop_border, device=cfg.device)


@_register("psnr_y", "psnr", FixedFidelityConfig, "PSNR on Y of BT.601 YCbCr")
def make_psnr_y(cfg: FixedFidelityConfig, device: str | None = None) -> PyiqaMetric:
    name = "psnr_y"
    return _psnr(name, _fixed(True, cfg), device)


@_register("ssim_y", "ssim", FixedFidelityConfig, "SSIM on Y of BT.601 YCbCr")
def make_ssim_y(cfg: FixedFidelityConfig, device: str | None = None) -> PyiqaMetric:
    name = "ssim_y"
    return _ssim(name, _fixed(True, cfg), device)


@_register("psnr_rgb", "psnr", FixedFidelityConfig, "PSNR over RGB")
def make_psnr_rgb(cfg: FixedFidelityConfig, device: str | None = None) -> PyiqaMetric:
    name = "psnr_rgb"
    return _psnr(name, _fixed(False, cfg), device)


@_register("ssim_rgb", "ssimc", FixedFidelityConfig, "SSIM over RGB (pyiqa ssimc)")
def make_ssim_rgb(cfg: FixedFidelityConfig, device: str | None = None) -> PyiqaMetric:
    name = "ssim_rgb"
    return _ssim(name, _fixed(False, cfg), device)


# --------------------------------------------------------------------------------------------- learned
@dataclass
class WeightsConfig:
    """Options shared by metrics with weight files."""

    weights_dir: str | None = None  # flat folder of weight files; default $ALIGNVAR_WEIGHTS_DIR
    device: str = "auto"


def _learned(name: str, pyiqa_name: str, cfg: WeightsConfig, device: str | None) -> PyiqaMetric:
    files = weights.resolve(name, pyiqa_name, weights.user_weights_dir(cfg.weights_dir), fetch=backend.fetcher())
    return PyiqaMetric(name, pyiqa_name, files, device or cfg.device)


@dataclass
class LpipsConfig(WeightsConfig):
    net: Literal["alex", "vgg"] = "alex"


@_register("lpips", "lpips", LpipsConfig, "LPIPS v0.1 (AlexNet; net: vgg)")
def make_lpips(cfg: LpipsConfig, device: str | None = None) -> PyiqaMetric:
    name = "lpips"
    return _learned(name, "lpips" if cfg.net == "alex" else "lpips-vgg", cfg, device)


@_register("dists", "dists", WeightsConfig, "DISTS")
def make_dists(cfg: WeightsConfig, device: str | None = None) -> PyiqaMetric:
    name = "dists"
    return _learned(name, "dists", cfg, device)


@dataclass
class MusiqConfig(WeightsConfig):
    variant: Literal["koniq", "ava", "spaq", "paq2piq"] = "koniq"


@_register("musiq", "musiq", MusiqConfig, "MUSIQ (KonIQ-10k; no reference)")
def make_musiq(cfg: MusiqConfig, device: str | None = None) -> PyiqaMetric:
    name = "musiq"
    return _learned(name, "musiq" if cfg.variant == "koniq" else f"musiq-{cfg.variant}", cfg, device)


@dataclass
class ManiqaConfig(WeightsConfig):
    variant: Literal["koniq", "pipal", "kadid"] = "koniq"  # OSEDiff/SeeSR tables: pipal; VARSR: koniq


@_register("maniqa", "maniqa", ManiqaConfig, "MANIQA (KonIQ; variant: pipal for OSEDiff tables; slow on CPU)")
def make_maniqa(cfg: ManiqaConfig, device: str | None = None) -> PyiqaMetric:
    name = "maniqa"
    return _learned(name, "maniqa" if cfg.variant == "koniq" else f"maniqa-{cfg.variant}", cfg, device)


@dataclass
class ClipiqaConfig(WeightsConfig):
    variant: Literal["clipiqa", "clipiqa+"] = "clipiqa"


@_register("clipiqa", "clipiqa", ClipiqaConfig, "CLIP-IQA (RN50; no reference)")
def make_clipiqa(cfg: ClipiqaConfig, device: str | None = None) -> PyiqaMetric:
    name = "clipiqa"
    return _learned(name, cfg.variant, cfg, device)


# --------------------------------------------------------------------------------------------- NIQE
@dataclass
class NiqeConfig(WeightsConfig):
    niqe_params: str | None = None  # .mat (pyiqa) or .npz (BasicSR niqe_pris_params.npz, converted + cached)


@_register("niqe", "niqe", NiqeConfig, "NIQE (no reference; params from pyiqa cache or niqe_params)")
def make_niqe(cfg: NiqeConfig, device: str | None = None) -> PyiqaMetric:
    name = "niqe"
    from harness.data.bundled import default_cache_root

    weights_dir = weights.user_weights_dir(cfg.weights_dir)
    target = weights.NIQE_PARAMS.name
    if cfg.niqe_params:
        given = {target: weights.niqe_params_mat(Path(cfg.niqe_params), default_cache_root())}
        files = weights.resolve(name, "niqe", weights_dir, given)
    else:
        try:  # pyiqa's file where it looks (no download yet), else BasicSR's .npz, else fetch pyiqa's (online)
            files = weights.resolve(name, "niqe", weights_dir)
        except weights.MissingWeightsError:
            npz = weights.find_niqe_npz(weights_dir)
            if npz is None:
                files = weights.resolve(name, "niqe", weights_dir, fetch=backend.fetcher())
            else:
                given = {target: weights.niqe_params_mat(npz, default_cache_root())}
                files = weights.resolve(name, "niqe", weights_dir, given)
    return PyiqaMetric(name, "niqe", files, device or cfg.device)


# --------------------------------------------------------------------------------------------- FID
@dataclass
class FidConfig(WeightsConfig):
    mode: Literal["clean", "legacy_pytorch", "legacy_tensorflow"] = "clean"
    batch_size: int = 8
    num_workers: int = 0  # DataLoader workers; 0 is safest in sandboxes and small sets


class FidMetric(PyiqaMetric):
    """FID between the SR folder and the HR folder (clean-fid). One number per set; few images -> noisy."""

    def __init__(self, cfg: FidConfig, name: str, device: str | None) -> None:
        files = weights.resolve(name, "fid", weights.user_weights_dir(cfg.weights_dir), fetch=backend.fetcher())
        super().__init__(name, "fid", files, device or cfg.device, kind="fid")
        self.cfg = cfg

    def provenance(self) -> dict[str, Any]:
        """As :meth:`PyiqaMetric.provenance`, plus the options of the call that computes the value (``mode``)."""
        return {**super().provenance(), "call_options": {"mode": self.cfg.mode}}

    def compute_sets(self, sr_dir: Path, hr_dir: Path) -> float:
        for role, folder in (("SR", Path(sr_dir)), ("HR", Path(hr_dir))):
            if not folder.is_dir():
                raise FileNotFoundError(f"metric {self.name!r}: {role} folder {folder} not found")
            if not any(is_image_file(p) for p in folder.iterdir()):
                raise ValueError(f"metric {self.name!r}: {role} folder {folder} has no images")
        with backend.quiet(), torch.inference_mode():
            value = self.model(
                str(sr_dir),
                str(hr_dir),
                mode=self.cfg.mode,
                batch_size=self.cfg.batch_size,
                num_workers=self.cfg.num_workers,
                verbose=False,
            )
        return float(value)


@_register("fid", "fid", FidConfig, "FID, SR folder vs HR folder (set-level; clean-fid)")
def make_fid(cfg: FidConfig, device: str | None = None) -> FidMetric:
    name = "fid"
    return FidMetric(cfg, name, device)


def build_metric(spec: Any, device: str | None = None) -> Metric:
    """Build a metric from a ``ComponentSpec``, a registered name, or a ``{type, name?, **options}`` mapping.

    The metric's ``name`` is the spec's label (``name:``), else its type. Unknown names and bad options
    raise with the valid choices (registry / config errors).
    """
    from harness.config.components import ComponentSpec, parse_component

    if isinstance(spec, str):
        spec = {"type": spec}
    if isinstance(spec, dict):
        spec = parse_component("metrics", spec, "metrics", "<build_metric>")
    if not isinstance(spec, ComponentSpec):
        raise TypeError(f"build_metric: expected a ComponentSpec, name or mapping, got {type(spec).__name__}")
    metric = spec.create(**({"device": device} if device is not None else {}))
    metric.name = spec.name
    return metric


def metric_infos() -> dict[str, MetricInfo]:
    """Static facts of every registered metric with its default options, by registered name (no metric is built):
    pyiqa's registry for its default pyiqa model, then :data:`NOT_IN_PYIQA`."""
    out = {}
    for name, pyiqa_name in PYIQA_NAMES.items():
        facts = {**pyiqa_facts(pyiqa_name), "set_level": False, **NOT_IN_PYIQA.get(name, {})}
        out[name] = MetricInfo(**facts)
    return out


def metric_info(name: str) -> tuple[bool, bool]:
    """(lower_better, needs_reference) of a registered metric name, without building it (for reports)."""
    infos = metric_infos()
    if name not in infos:
        raise KeyError(f"unknown metric {name!r}; valid choices: {', '.join(sorted(infos))}")
    info = infos[name]
    return info.lower_better, info.needs_reference
