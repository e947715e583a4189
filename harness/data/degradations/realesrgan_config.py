"""Typed options of the Real-ESRGAN second-order degradation, keys named as in Real-ESRGAN's YAML files.

``RealESRGANConfig``'s defaults are Real-ESRGAN's ``train_realesrgan_x4plus.yml`` (preset
``realesrgan_x4plus``); ``StableSRMildConfig`` carries the milder values of the StableSR / PASD / SeeSR /
VARSR ``params_realesrgan.yml`` (preset ``stablesr_mild``). Every key can be overridden from YAML::

    degradation: {name: stablesr_mild, options: {jpeg_range2: [70, 100], resize_back: true}}

Keys without a YAML counterpart upstream (hard-coded there) are exposed too: ``kernel_range``,
``resize_modes``, ``usm_*``, ``batch_shared``. A PASD/VARSR-style params file (with its ``kernel_info:``
block) loads with :meth:`RealESRGANConfig.from_params_yaml`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.data.degradations.kernels import KERNEL_TYPES, KernelSpec
from harness.data.degradations.ops import RESIZE_MODES

_KERNELS = KERNEL_TYPES
_PROB3 = tuple[float, float, float]
_RANGE = tuple[float, float]


@dataclass
class RealESRGANConfig:
    """Real-ESRGAN x4plus defaults. Noise sigmas are on the 0-255 scale; all ranges are uniform."""

    scale: int = 4
    # first degradation
    blur_kernel_size: int = 21  # kernels are zero-padded to this size
    kernel_list: tuple[str, ...] = _KERNELS
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: _RANGE = (0.2, 3.0)
    betag_range: _RANGE = (0.5, 4.0)
    betap_range: _RANGE = (1.0, 2.0)
    resize_prob: _PROB3 = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: _RANGE = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5  # otherwise Poisson noise
    noise_range: _RANGE = (1.0, 30.0)
    poisson_scale_range: _RANGE = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: _RANGE = (30.0, 95.0)
    # second degradation
    second_blur_prob: float = 0.8
    blur_kernel_size2: int = 21
    kernel_list2: tuple[str, ...] = _KERNELS
    kernel_prob2: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob2: float = 0.1
    blur_sigma2: _RANGE = (0.2, 1.5)
    betag_range2: _RANGE = (0.5, 4.0)
    betap_range2: _RANGE = (1.0, 2.0)
    resize_prob2: _PROB3 = (0.3, 0.4, 0.3)
    resize_range2: _RANGE = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: _RANGE = (1.0, 25.0)
    poisson_scale_range2: _RANGE = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: _RANGE = (30.0, 95.0)  # the final-stage JPEG
    # final stage
    final_sinc_prob: float = 0.8
    # hard-coded upstream, exposed here
    kernel_range: tuple[int, int] = (7, 21)  # odd kernel sizes drawn uniformly in this range (all stages)
    resize_modes: tuple[str, ...] = RESIZE_MODES  # drawn uniformly at every resize
    # GT sharpening (Real-ESRGAN sharpens the GT before degrading it; VARSR does not)
    use_usm: bool = True
    usm_weight: float = 0.5
    usm_radius: int = 50
    usm_threshold: float = 10.0
    # output
    resize_back: bool = False  # also resize the LR back to HR size with a random mode (VARSR's resize_bak)
    batch_shared: bool = False  # draw resize/noise-type/2nd-blur/final-order once per batch (Real-ESRGAN GPU)

    def __post_init__(self) -> None:
        _validate(self)

    def kernel_spec(self, stage: int) -> KernelSpec:
        """The kernel distribution of blur stage 1 or 2."""
        sfx = "" if stage == 1 else "2"
        return KernelSpec(
            kernel_list=tuple(getattr(self, f"kernel_list{sfx}")),
            kernel_prob=tuple(getattr(self, f"kernel_prob{sfx}")),
            sinc_prob=getattr(self, f"sinc_prob{sfx}"),
            blur_sigma=getattr(self, f"blur_sigma{sfx}"),
            betag_range=getattr(self, f"betag_range{sfx}"),
            betap_range=getattr(self, f"betap_range{sfx}"),
            kernel_range=self.kernel_range,
            pad_to=getattr(self, f"blur_kernel_size{sfx}"),
        )

    @classmethod
    def from_params_yaml(cls, path: str | Path, **overrides) -> RealESRGANConfig:
        """Read a Real-ESRGAN-style params file (PASD/SeeSR/VARSR ``params_realesrgan.yml``).

        The ``kernel_info:`` block is flattened; ``color_jitter_prob`` / ``gray_prob`` (GT colour
        augmentations, not degradations) must be 0. Keys missing from the file keep this class's defaults;
        unknown keys raise ``ConfigError`` naming the file and the key.
        """
        from harness.core.mapping import ConfigError, from_dict

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: params file not found")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        flat = {k: v for k, v in data.items() if k != "kernel_info"}
        kernel_info = data.get("kernel_info") or {}
        if not isinstance(kernel_info, dict):
            raise ConfigError(f"{path}: kernel_info: expected a mapping")
        flat.update(kernel_info)
        for key in ("color_jitter_prob", "gray_prob"):
            value = flat.pop(key, 0.0)
            if value:
                raise ConfigError(f"{path}: {key}: GT colour augmentation is not supported; set it to 0.0")
        flat.update(overrides)
        return from_dict(cls, flat, source=str(path))


@dataclass
class StableSRMildConfig(RealESRGANConfig):
    """The milder settings of StableSR / PASD / SeeSR / VARSR (their ``params_realesrgan.yml``), no GT USM."""

    resize_range: _RANGE = (0.3, 1.5)
    noise_range: _RANGE = (1.0, 15.0)
    poisson_scale_range: _RANGE = (0.05, 2.0)
    jpeg_range: _RANGE = (60.0, 95.0)
    second_blur_prob: float = 0.5
    resize_range2: _RANGE = (0.6, 1.2)
    noise_range2: _RANGE = (1.0, 12.0)
    poisson_scale_range2: _RANGE = (0.05, 1.0)
    jpeg_range2: _RANGE = (60.0, 100.0)
    use_usm: bool = False


def _validate(cfg: RealESRGANConfig) -> None:
    """Raise ValueError naming the key for any inconsistent option."""
    if cfg.scale < 1:
        raise ValueError(f"scale must be >= 1, got {cfg.scale}")
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name.endswith("_prob") or f.name[:-1].endswith("_prob"):
            values = value if isinstance(value, tuple) else (value,)
            if any(not 0.0 <= v <= 1.0 for v in values):
                raise ValueError(f"{f.name}: probabilities must lie in [0, 1], got {value}")
        if "range" in f.name or f.name.startswith("blur_sigma"):
            lo, hi = value
            if lo > hi or lo < 0:
                raise ValueError(f"{f.name}: expected [low, high] with 0 <= low <= high, got {list(value)}")
    for sfx in ("", "2"):
        names, probs = getattr(cfg, f"kernel_list{sfx}"), getattr(cfg, f"kernel_prob{sfx}")
        bad = [n for n in names if n not in KERNEL_TYPES]
        if bad:
            raise ValueError(f"kernel_list{sfx}: unknown kernel {bad[0]!r}; valid choices: {', '.join(KERNEL_TYPES)}")
        if len(names) != len(probs) or not names:
            raise ValueError(
                f"kernel_prob{sfx}: {len(probs)} probabilities for {len(names)} kernels in kernel_list{sfx}"
            )
        if abs(sum(probs) - 1.0) > 1e-3:
            raise ValueError(f"kernel_prob{sfx}: probabilities must sum to 1, got {sum(probs):.4f}")
        if min(getattr(cfg, f"blur_sigma{sfx}")) <= 0:
            raise ValueError(f"blur_sigma{sfx}: sigmas must be > 0, got {list(getattr(cfg, f'blur_sigma{sfx}'))}")
        pad = getattr(cfg, f"blur_kernel_size{sfx}")
        if pad % 2 == 0 or pad < cfg.kernel_range[1]:
            raise ValueError(
                f"blur_kernel_size{sfx}: must be odd and >= kernel_range[1] ({cfg.kernel_range[1]}), "
                f"got {pad}; "
                f"kernels are drawn with odd sizes in kernel_range and zero-padded to it"
            )
        if abs(sum(getattr(cfg, f"resize_prob{sfx}")) - 1.0) > 1e-3:
            raise ValueError(f"resize_prob{sfx}: (up, down, keep) probabilities must sum to 1")
        lo, hi = getattr(cfg, f"jpeg_range{sfx}")
        if lo < 1 or hi > 100:
            raise ValueError(f"jpeg_range{sfx}: JPEG qualities must lie in [1, 100], got {[lo, hi]}")
    lo, hi = cfg.kernel_range
    if lo % 2 == 0 or hi % 2 == 0 or not 1 <= lo <= hi:
        raise ValueError(f"kernel_range: expected two odd sizes 1 <= low <= high, got {[lo, hi]}")
    bad = [m for m in cfg.resize_modes if m not in RESIZE_MODES]
    if bad or not cfg.resize_modes:
        raise ValueError(f"resize_modes: expected a non-empty subset of {', '.join(RESIZE_MODES)}, got {bad}")
    if cfg.usm_radius < 1:
        raise ValueError(f"usm_radius: must be >= 1, got {cfg.usm_radius}")
