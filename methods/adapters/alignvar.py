"""VARSR / AlignVAR registered: the model ``alignvar`` (what a ``train`` stage builds) and the bench methods
``varsr`` and ``alignvar`` (the model behind the common ``SRMethod`` interface).

* ``varsr``: the official VARSR checkpoints (``VARSR.pth`` + ``VQVAE.pth``) with the official test settings
  (refiner on, cfg 6, greedy tokens, AdaIN colour fix) and SCA off: exactly VARSR.
* ``alignvar``: any checkpoint (official or ours, e.g. from ``run.py train``) with the AlignVAR toggles
  (``sca``: laplacian / random / none) and sampling options.

A method never runs with random weights: without a checkpoint it refuses to build, naming the file it needs
and where to get it (no metric computed from random weights can reach a results table).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from harness.core.fetch import FetchError, check_ref, resolve_checkpoint, resolve_optional
from harness.core.registry import register
from harness.core.tiling import tiled_upscale
from methods.alignvar.configs import ARCHS, AlignVARConfig, SamplingOptions, SCAConfig
from methods.alignvar.model import AlignVAR
from methods.alignvar.sampling import planted_token_hook
from methods.alignvar.scales import ScaleSchedule
from methods.alignvar.vqvae import VQVAE
from methods.alignvar.weights import load_vqvae, read_state_dict, stored_config, strip_prefix
from methods.base import SRMethod

RELEASE = "https://github.com/qyp2000/VARSR"
# the official weights on the Hugging Face hub (linked from the VARSR README)
OFFICIAL = {"VARSR.pth": "hf://qyp2000/VARSR/VARSR.pth", "VQVAE.pth": "hf://qyp2000/VARSR/VQVAE.pth"}


class MissingCheckpointError(FileNotFoundError):
    """A method was asked to run without its weights; the message says which file and where to get it."""


@dataclass
class VARSRMethodConfig(SamplingOptions):
    """Options of ``varsr`` (official weights; SCA off), the sampling ones included."""

    checkpoint: str | None = None  # VARSR.pth (official) or our .safetensors: a path, hf://... or https://...
    vqvae: str | None = None  # VQVAE.pth; may be omitted when the checkpoint holds the VQ-VAE (ours)
    arch: str = "auto"  # auto = read sizes from the checkpoint; a name (d24, tiny, ...) is checked against it
    device: str | None = None  # None: wherever the runner moves the method
    tile: int | None = None  # output tile size (multiple of 16)
    tile_overlap: int = 64
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype of the transformer on GPU
    # free what inference never reads (VQ-VAE encoder, AdaLN projections: 1.55 GB at d24); same outputs.
    # false keeps them (teacher-forced analysis of the method's model)
    inference_only: bool = True

    def __post_init__(self) -> None:
        check_ref(self.checkpoint)  # a malformed hf:// / https:// reference is a config error
        check_ref(self.vqvae)
        if self.arch != "auto" and self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; valid choices: auto, {', '.join(ARCHS)}")
        super().__post_init__()
        check_tiling(self.tile, self.tile_overlap)


@dataclass
class AlignVARMethodConfig(VARSRMethodConfig):
    """Options of ``alignvar``: the ``varsr`` options plus the SCA mode.

    ``sca: null`` (the default) evaluates a checkpoint as it was trained: the SCA settings stored in our
    checkpoint's metadata, or ``none`` for official VARSR checkpoints (which have no SCA weights). A given
    mode overrides the stored one (e.g. ``random`` to test a Laplacian-trained gate with random maps).
    """

    sca: Literal["laplacian", "sobel", "random", "none"] | None = None
    # A planted degradation of known size (an instrument control, experiments/tiny_controls.yaml): at inference
    # the tokens of 0-based scale ``plant_scale`` are replaced at ``plant_fraction`` of the positions by random
    # codes (methods.alignvar.sampling.planted_token_hook). None: off.
    plant_scale: int | None = None
    plant_fraction: float = 0.5
    # false (default): every image's generator is seeded with ``seed`` (one noise draw shared by all images);
    # true: with a seed derived from (seed, image key), so two seeds give independent noise per image, which is
    # what an image-level paired test of seed against seed assumes (the null control of tiny_controls.yaml)
    seed_per_image: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.plant_scale is not None and self.plant_scale < 0:
            raise ValueError(f"plant_scale must be a 0-based scale index >= 0, got {self.plant_scale}")
        if not 0.0 < self.plant_fraction <= 1.0:
            raise ValueError(f"plant_fraction must be in (0, 1], got {self.plant_fraction}")


def _require_file(path: str | None, what: str, method: str, key: str) -> Path:
    """The local file of ``path``: a local path, or an ``hf://`` / ``https://`` reference resolved (and downloaded
    unless offline) by ``harness.core.fetch``."""
    get = f"{OFFICIAL[what]} (the official {what}, downloaded once) or the path of {what} from {RELEASE}"
    if not path:
        raise MissingCheckpointError(
            f"{method}: no {key} given; set {key}: {get} (--{key} on the command line); methods never run with "
            f"random weights"
        )
    try:
        p = resolve_checkpoint(path)
    except FetchError as exc:
        raise MissingCheckpointError(f"{method}: {key}: {exc}") from None
    if not p.is_file():
        raise MissingCheckpointError(
            f"{method}: {key} file not found: {p}; give its actual path, or use {get} ({key}: in YAML, --{key} on "
            f"the command line)"
        )
    return p


class AlignVARMethod(SRMethod):
    """VARSR / AlignVAR as an ``SRMethod`` (x4; ``inference_steps`` = scales at the model's training size)."""

    scale = 4

    def __init__(self, config: VARSRMethodConfig, name: str) -> None:
        super().__init__()
        ckpt = _require_file(config.checkpoint, "VARSR.pth", name, "checkpoint")
        vqvae = None
        if config.vqvae is not None or ckpt.suffix != ".safetensors":
            vqvae = _require_file(config.vqvae, "VQVAE.pth", name, "vqvae")
        sca_cfg = checkpoint_sca(ckpt, getattr(config, "sca", "none"))
        sca = sca_cfg.mask_input
        model_cfg = AlignVARConfig(
            arch="auto",
            checkpoint=str(ckpt),
            vqvae=str(vqvae) if vqvae else None,
            sca=sca_cfg,
            precision=config.precision,
            **{f.name: getattr(config, f.name) for f in dataclasses.fields(SamplingOptions)},
        )
        self.model = AlignVAR.from_pretrained(ckpt, vqvae, model_cfg)
        # the resolved files (for run records: an hf:// reference's snapshot path names the commit)
        self.weight_files = {"checkpoint": str(ckpt), **({"vqvae": str(vqvae)} if vqvae else {})}
        if self.model.sca_untrained:
            raise ValueError(
                f"{name}: {ckpt} has no SCA weights (an official VARSR checkpoint?), so sca: {sca} would run an "
                f"untrained gate; use sca: none (= VARSR) or a checkpoint trained with SCA"
            )
        if config.arch != "auto":
            check_arch(self.model, config.arch, ckpt)
        if config.inference_only:
            self.model.release_training_weights()
        self.name = name
        self._tokenizer: VQVAE | None = None  # see ``tokenizer``
        # ``tile`` x ``tile`` output tiles of the upsampled LR, generated row-major from one stream and
        # cross-faded over ``tile_overlap`` pixels (raised cosine, no margin); one tile = the whole image
        self.tiler = None
        if config.tile is not None:
            self.tiler = functools.partial(
                tiled_upscale, scale=1, tile=config.tile, overlap=config.tile_overlap, ramp=1.0
            )
        size = self.model.transformer.cfg.image_size
        self.inference_steps = ScaleSchedule.for_size(size, size, self.model.vqvae.downsample).num_scales
        self.seed_per_image = bool(getattr(config, "seed_per_image", False))
        plant = getattr(config, "plant_scale", None)
        if plant is not None:
            if plant >= self.inference_steps:
                raise ValueError(
                    f"{name}: plant_scale={plant} is outside the {self.inference_steps} scales "
                    f"(0..{self.inference_steps - 1}) of the model's {size} px schedule"
                )
            self.model.token_hook = planted_token_hook(
                plant, config.plant_fraction, int(self.model.vqvae.vocab_size), config.seed
            )
        if config.device:
            self.to(config.device)

    def modules(self) -> dict[str, torch.nn.Module]:
        """transformer (whole: incl. stem and refiner), vqvae, refiner, sca, lr_stem (``to`` moves all)."""
        tr = self.model.transformer
        out = {"transformer": tr, "vqvae": self.model.vqvae, "lr_stem": tr.con_embedding}
        if tr.diffloss is not None:
            out["refiner"] = tr.diffloss
        if self.model.sca is not None:
            out["sca"] = self.model.sca
        return out

    def parameter_counts(self) -> dict[str, int]:
        """Disjoint per-component counts (``transformer`` excludes the LR stem and the refiner)."""
        return self.model.parameter_counts()

    def parameter_total(self) -> int:
        """The whole model's parameters (disjoint counts summed), also after ``release_training_weights``."""
        return sum(self.model.parameter_counts().values())

    def tokenizer(self) -> VQVAE:
        """The model's VQ-VAE with its encoder: the model's own, or (after ``release_training_weights``) read
        again from the checkpoint files once, on the method's device."""
        if not self.model.encoder_released:
            return self.model.vqvae
        if self._tokenizer is None:
            if "vqvae" in self.weight_files:  # a separate VQ-VAE file (official VARSR): read only that
                source = self.weight_files["vqvae"]
                sd = read_state_dict(source)
            else:  # ours: the VQ-VAE inside the checkpoint, under "vqvae."
                source = self.weight_files["checkpoint"]
                sd = strip_prefix(read_state_dict(source), "vqvae.")
            self._tokenizer = load_vqvae(sd, source).to(self.device)
        return self._tokenizer

    @torch.inference_mode()
    def tokenizer_reconstruct(self, hr: torch.Tensor) -> torch.Tensor:
        """HR images (B,3,H,W) in [0,1] through the VQ-VAE (encode, quantise every scale, decode), in [0,1];
        sizes that are no multiple of the downsampling are reflect-padded and cropped back."""
        vqvae = self.tokenizer()
        h, w = hr.shape[-2:]
        step = vqvae.downsample
        pad_h, pad_w = -h % step, -w % step
        x = hr.to(self.device).float() * 2.0 - 1.0
        if pad_h or pad_w:
            x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        out = vqvae.reconstruct(x)[..., :h, :w]
        return (out + 1.0) / 2.0

    @torch.inference_mode()
    def upscale(self, lr: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        if not self.seed_per_image:
            return self.model.upscale(lr.to(self.device), tiler=self.tiler)
        seeds = [image_seed(self.model.config.seed, key) for key in keys]
        return torch.cat(
            [self.model.upscale(lr[i : i + 1].to(self.device), seed=s, tiler=self.tiler) for i, s in enumerate(seeds)]
        )

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        self._tokenizer = None


def image_seed(seed: int, key: str) -> int:
    """A generator seed from (seed, image key): independent streams per image and per seed."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little") & (2**63 - 1)


def check_tiling(tile: int | None, overlap: int) -> None:
    """``tile`` (output pixels, a multiple of 16) and ``tile_overlap`` (in [0, tile))."""
    if tile is None:
        return
    if tile < 16 or tile % 16:
        raise ValueError(f"tile must be a positive multiple of 16 (output pixels), got {tile}")
    if overlap < 0 or overlap >= tile:
        raise ValueError(f"tile_overlap must be in [0, tile), got {overlap} for tile {tile}")


def checkpoint_sca(checkpoint: Path, mode: str | None) -> SCAConfig:
    """The SCA settings to evaluate ``checkpoint`` with: those stored in our checkpoint's metadata (gate
    width etc. must match its weights), with ``mask_input`` replaced by ``mode`` when one is given; for
    files without our metadata (official VARSR) ``mode`` or, when None, ``none``."""
    stored = stored_config(checkpoint)
    if stored is None:
        return SCAConfig(mask_input=mode or "none")
    return stored.sca if mode is None else dataclasses.replace(stored.sca, mask_input=mode)


def check_arch(model: AlignVAR, arch: str, source: Path) -> None:
    """Refuse a checkpoint whose transformer sizes differ from the named ``arch``."""
    want, have = ARCHS[arch].transformer, model.transformer.cfg
    keys = ("depth", "width", "heads", "vocab", "cvae")
    diff = [
        f"{k} {getattr(have, k)} (arch {arch}: {getattr(want, k)})"
        for k in keys
        if getattr(want, k) != getattr(have, k)
    ]
    if diff:
        raise ValueError(f"{source}: checkpoint does not match arch {arch!r}: {', '.join(diff)}; use arch auto")


@register(
    "methods",
    "varsr",
    description="VARSR (CVPR'25) with the official checkpoints; SCA off",
    config=VARSRMethodConfig,
)
def build_varsr(config: VARSRMethodConfig) -> AlignVARMethod:
    return AlignVARMethod(config, "varsr")


@register(
    "methods",
    "alignvar",
    description="AlignVAR: VARSR + SCA structure gating (HCC-trained weights)",
    config=AlignVARMethodConfig,
)
def build_alignvar_method(config: AlignVARMethodConfig) -> AlignVARMethod:
    return AlignVARMethod(config, "alignvar")


@register(
    "models",
    "alignvar",
    description="AlignVAR / VARSR x4 SR model (VQ-VAE + next-scale transformer)",
    config=AlignVARConfig,
)
def build_alignvar(config: AlignVARConfig) -> AlignVAR:
    """``checkpoint`` / ``vqvae`` may be ``hf://`` or ``https://`` references: resolved to local files first."""
    local = dataclasses.replace(
        config, checkpoint=resolve_optional(config.checkpoint), vqvae=resolve_optional(config.vqvae)
    )
    return AlignVAR.from_config(local)
