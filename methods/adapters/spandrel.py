"""Feed-forward SR baselines loaded with spandrel: any supported architecture, plus checked presets.

``spandrel`` loads a checkpoint of any architecture spandrel detects (RRDBNet/ESRGAN, SwinIR, HAT, ...);
``realesrgan``, ``bsrgan`` and ``swinir`` are the same loader plus a check that the detected architecture is
the one the preset names (a SwinIR file given to ``realesrgan`` is an error, not a silently different
baseline).

``checkpoint`` is a local path or a reference resolved by ``harness.core.fetch`` (``hf://OWNER/REPO/FILE``,
``https://...#sha256=HEX``).

Safety: no code from a checkpoint is ever executed. ``.safetensors`` files are read with safetensors;
``.pth/.pt/.ckpt/.bin`` with ``torch.load(weights_only=True)`` (TorchScript archives are refused: they are
code). The state dict is then handed to ``spandrel.ModelLoader().load_from_state_dict``, which detects the
architecture from the key layout (``params_ema``/``params``/``module.`` wrappers are unwrapped).

Size requirements: spandrel's descriptor pads the input to its ``size_requirements`` (minimum, multiple_of,
square) and crops the output to ``(h*s, w*s)``; optional tiling (``tile``) goes through
``tiling.tiled_upscale`` with tiles rounded down to the model's ``multiple_of``. ``half`` runs fp16 on CUDA
only where spandrel says the architecture supports it (``supports_half``); otherwise fp32.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.core.fetch import FetchError, check_ref, resolve_checkpoint
from harness.core.registry import register
from harness.core.tiling import tiled_upscale
from methods.base import SRMethod

log = logging.getLogger(__name__)

SPANDREL_ARCHS_URL = "https://github.com/chaiNNer-org/spandrel#model-architecture-support"
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


@dataclass
class SpandrelConfig:
    """Options of the ``spandrel`` method and its presets."""

    checkpoint: str  # .safetensors (preferred) or .pth/.pt/.ckpt/.bin state dict; a path, hf:// or https://
    tile: int | None = None  # LR tile size for tiled inference; None = whole image
    tile_overlap: int = 32  # LR pixels shared by neighbouring tiles (see harness.core.tiling)
    half: bool = True  # fp16 on CUDA where the architecture supports it
    expected_scale: int | None = None  # fail if the checkpoint's scale differs

    def __post_init__(self) -> None:
        check_ref(self.checkpoint)  # a malformed hf:// / https:// reference is a config error
        if self.tile is not None and self.tile <= 0:
            raise ValueError(f"tile must be > 0 or null, got {self.tile}")
        if self.tile_overlap < 0:
            raise ValueError(f"tile_overlap must be >= 0, got {self.tile_overlap}")
        if self.tile is not None and self.tile_overlap >= self.tile:
            raise ValueError(f"tile_overlap ({self.tile_overlap}) must be smaller than tile ({self.tile})")
        if self.expected_scale is not None and self.expected_scale < 1:
            raise ValueError(f"expected_scale must be >= 1, got {self.expected_scale}")


@dataclass(frozen=True)
class Preset:
    """A named baseline: which spandrel architecture ids it accepts and where its official weights live."""

    name: str
    architectures: tuple[str, ...]  # spandrel ``architecture.id`` values
    arch_label: str  # how the paper/repo calls the network
    weights: str  # where to download the official checkpoint


PRESETS = {
    "realesrgan": Preset(
        "realesrgan",
        ("ESRGAN",),
        "RRDBNet",
        "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
    ),
    "bsrgan": Preset(
        "bsrgan", ("ESRGAN",), "RRDBNet", "https://github.com/cszn/KAIR/releases/download/v1.0/BSRGAN.pth"
    ),
    "swinir": Preset(
        "swinir",
        ("SwinIR",),
        "SwinIR",
        "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth",
    ),
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what to do."""


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.split("/", 2)[1:2] == ["code"] or name.endswith("/constants.pkl") for name in zf.namelist())


def load_state_dict(path: str | Path, *, where_to_get: str | None = None) -> dict[str, Any]:
    """Read a checkpoint's tensors without executing code (safetensors, or torch.load(weights_only=True))."""
    path = Path(path)
    if not path.is_file():
        hint = where_to_get or f"any checkpoint of an architecture spandrel supports ({SPANDREL_ARCHS_URL})"
        raise CheckpointError(f"{path}: checkpoint not found; download {hint} and set 'checkpoint' to its path")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types for corrupt files
            raise CheckpointError(f"{path}: cannot read safetensors file ({type(exc).__name__}: {exc})") from None
    if suffix not in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: unsupported checkpoint extension {suffix!r}; use .safetensors or one of "
            f"{', '.join(PICKLE_SUFFIXES)}"
        )
    if _is_torchscript(path):
        raise CheckpointError(
            f"{path}: is a TorchScript archive (contains code), which is never loaded; "
            "export its state_dict to .safetensors instead"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: cannot be loaded safely with torch.load(weights_only=True): {first}; "
            "if you trust the file, convert it to .safetensors first"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict (a mapping of tensors), got {type(state).__name__}")
    return state


def load_descriptor(path: str | Path, *, where_to_get: str | None = None):
    """Load a checkpoint into a spandrel ``ImageModelDescriptor`` (architecture detected from the keys)."""
    import spandrel

    path = Path(path)
    state = spandrel.canonicalize_state_dict(load_state_dict(path, where_to_get=where_to_get))
    try:
        descriptor = spandrel.ModelLoader(device="cpu").load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        keys = ", ".join(list(state)[:5])
        raise CheckpointError(
            f"{path}: spandrel {spandrel.__version__} does not recognise this architecture "
            f"(first keys: {keys}); supported architectures: {SPANDREL_ARCHS_URL} "
            "(non-commercial ones need spandrel_extra_arches)"
        ) from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise CheckpointError(
            f"{path}: {descriptor.architecture.name} is not an image-to-image model "
            f"({type(descriptor).__name__}); it cannot be used as an SR method"
        )
    return descriptor


class SpandrelMethod(SRMethod):
    """An SR network loaded by spandrel; one forward pass per image (optionally tiled)."""

    inference_steps = 1

    def __init__(self, config: SpandrelConfig, preset: Preset | None = None) -> None:
        super().__init__()
        self.config = config
        self.preset = preset
        try:
            path = resolve_checkpoint(config.checkpoint)  # hf:// and https:// references: downloaded unless offline
        except FetchError as exc:
            raise CheckpointError(str(exc)) from None
        self.checkpoint_path = path
        self.weight_files = {"checkpoint": str(path)}  # for run records (resolved hf:// / https:// references)
        descriptor = load_descriptor(path, where_to_get=preset.weights if preset else None)
        arch_id = descriptor.architecture.id
        if preset is not None and arch_id not in preset.architectures:
            raise CheckpointError(
                f"{path}: method '{preset.name}' expects a {preset.arch_label} checkpoint, but spandrel "
                f"detected {descriptor.architecture.name}; use the method type matching the file, "
                "or 'spandrel' for any supported architecture"
            )
        if descriptor.input_channels != 3 or descriptor.output_channels != 3:
            raise CheckpointError(
                f"{path}: {descriptor.architecture.name} has {descriptor.input_channels} input / "
                f"{descriptor.output_channels} output channels; only RGB (3 -> 3) models are supported"
            )
        if config.expected_scale is not None and descriptor.scale != config.expected_scale:
            raise CheckpointError(
                f"{path}: expected a x{config.expected_scale} model, but the checkpoint is "
                f"x{descriptor.scale} ({descriptor.architecture.name})"
            )
        self.descriptor = descriptor.eval()
        self.scale = int(descriptor.scale)
        self.architecture = arch_id
        self.dtype = torch.float32
        self.tile = self._effective_tile(config.tile)

    def _effective_tile(self, tile: int | None) -> int | None:
        import spandrel

        if tile is None:
            return None
        tiling = self.descriptor.tiling
        name = self.descriptor.architecture.name
        if tiling == spandrel.ModelTiling.INTERNAL:
            log.warning(f"{name} tiles internally; ignoring tile={tile}")
            return None
        if tiling == spandrel.ModelTiling.DISCOURAGED:
            log.warning(f"spandrel discourages tiling for {name} (expect seams); tiling anyway")
        req = self.descriptor.size_requirements
        effective = max(req.minimum, tile - tile % req.multiple_of)
        if effective <= self.config.tile_overlap:
            raise ValueError(
                f"tile {tile} becomes {effective} for {name} (multiple_of={req.multiple_of}, "
                f"minimum={req.minimum}), not larger than tile_overlap={self.config.tile_overlap}"
            )
        return effective

    def to(self, device: torch.device | str) -> SpandrelMethod:
        self.device = torch.device(device)
        self.descriptor.to(self.device)
        use_half = self.config.half and self.device.type == "cuda" and self.descriptor.supports_half
        self.dtype = torch.float16 if use_half else torch.float32
        self.descriptor.to(self.dtype)
        return self

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"net": self.descriptor.model}

    def info(self) -> dict[str, Any]:
        """What was loaded (for run records): architecture, scale, tags, dtype, tiling."""
        req = self.descriptor.size_requirements
        return {
            "checkpoint": str(self.config.checkpoint),
            "checkpoint_path": str(self.checkpoint_path),
            "architecture": self.descriptor.architecture.name,
            "scale": self.scale,
            "tags": list(self.descriptor.tags),
            "dtype": str(self.dtype).removeprefix("torch."),
            "tile": self.tile,
            "tile_overlap": self.config.tile_overlap if self.tile else None,
            "size_requirements": {
                "minimum": req.minimum,
                "multiple_of": req.multiple_of,
                "square": req.square,
            },
        }

    @torch.inference_mode()
    def upscale(self, lr: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        x = lr.to(device=self.device, dtype=self.dtype)
        if self.tile is None:
            out = self.descriptor(x)
        else:
            out = tiled_upscale(self.descriptor, x, self.scale, self.tile, self.config.tile_overlap)
        return out.float().clamp_(0.0, 1.0)


@register("methods", "spandrel", description="Any spandrel-supported SR checkpoint", config=SpandrelConfig)
def build_spandrel(config: SpandrelConfig) -> SpandrelMethod:
    return SpandrelMethod(config)


@register("methods", "realesrgan", description="Real-ESRGAN (RRDBNet) via spandrel", config=SpandrelConfig)
def build_realesrgan(config: SpandrelConfig) -> SpandrelMethod:
    return SpandrelMethod(config, PRESETS["realesrgan"])


@register("methods", "bsrgan", description="BSRGAN (RRDBNet) via spandrel", config=SpandrelConfig)
def build_bsrgan(config: SpandrelConfig) -> SpandrelMethod:
    return SpandrelMethod(config, PRESETS["bsrgan"])


@register("methods", "swinir", description="SwinIR via spandrel", config=SpandrelConfig)
def build_swinir(config: SpandrelConfig) -> SpandrelMethod:
    return SpandrelMethod(config, PRESETS["swinir"])
