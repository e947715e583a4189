"""Typed configs of the AlignVAR / VARSR model: transformer sizes, named architectures, the YAML block.

* ``TransformerConfig``: the next-scale transformer (VARSR's ``VAR_RoPE``) plus its diffusion refiner. VARSR
  sizes follow VAR's rule width = 64 * depth, heads = depth (head_dim 64).
  ``transformer_config_from_state_dict`` reads every size back from checkpoint tensors (official ``VARSR.pth``
  or ours).
* ``ARCHS``: named architectures (transformer + VQ-VAE): ``tiny`` (a CPU test model: seconds at 64-128 px),
  ``tiny8`` (the CPU recipe: a downsampling-8 tokenizer that reconstructs 64 px photographs usefully),
  ``d2`` (the golden-fixture size), ``d16``/``d20``/``d24`` (VARSR sizes; d24 is the released model).
* ``AlignVARConfig``: the YAML ``model: {type: alignvar, ...}`` block (also the options of the ``alignvar``
  method), with the SCA (``sca.*``) and HCC (``hcc.*``, ``hcc.lambda``) ablation keys used by sweeps.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from torch import Tensor

OFFICIAL_STEM = (32, 128, 256, 512, 1536)
Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")  # inference autocast dtypes (fp16: GPU only)


@dataclass(frozen=True)
class TransformerConfig:
    """Sizes of ``VARTransformer`` (defaults: VARSR d16). ``width``/``heads`` default to 64*depth / depth.

    ``image_size`` is the (square) training output size: it fixes the LR prefix grid (image_size/16 per side)
    and thereby ``pos_start`` (prefix + class rows); other sizes resize ``pos_start`` at run time (see
    transformer). ``num_levels`` is the number of ``lvl_embed`` rows (VARSR: 10, one per official scale).
    """

    depth: int = 16
    width: int | None = None
    heads: int | None = None
    mlp_ratio: float = 4.0
    num_classes: int = 2  # 0 = high quality (conditional), 1 = low quality (the CFG negative branch)
    vocab: int = 4096
    cvae: int = 32
    image_size: int = 512
    num_levels: int = 10
    stem_channels: tuple[int, ...] = OFFICIAL_STEM
    norm_eps: float = 1e-6
    drop_path: float = 0.0  # max stochastic-depth rate (official training: 0.1 * depth / 24)
    rope_theta: float = 10000.0
    with_refiner: bool = True
    refiner_width: int = 1024
    refiner_depth: int = 6
    refiner_steps: int = 10

    def __post_init__(self) -> None:
        if self.width is None:
            object.__setattr__(self, "width", 64 * self.depth)
        if self.heads is None:
            object.__setattr__(self, "heads", self.depth)
        object.__setattr__(self, "stem_channels", tuple(int(c) for c in self.stem_channels))
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be divisible by heads {self.heads}")
        if (self.width // self.heads) % 4:
            raise ValueError(f"head_dim {self.width // self.heads} must be divisible by 4 (2-D RoPE)")
        if len(self.stem_channels) != 5:
            raise ValueError(
                f"stem_channels must have 5 entries (4 stride-2 stages -> 1/16 grid), got {self.stem_channels}"
            )
        if self.image_size % 16 or self.image_size < 16:
            raise ValueError(f"image_size must be a positive multiple of 16, got {self.image_size}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (HQ class 0 and the negative class 1), got {self.num_classes}")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def prefix_hw(self) -> tuple[int, int]:
        side = self.image_size // 16
        return side, side


def varsr_transformer(depth: int, **overrides: Any) -> TransformerConfig:
    """VARSR's transformer at ``depth`` (width 64*depth, heads=depth, 512 px, refiner 1024x6)."""
    return TransformerConfig(depth=depth, **overrides)


@dataclass(frozen=True)
class Arch:
    """A named architecture: transformer sizes + VQ-VAE constructor kwargs (``VQVAE(**vqvae)``)."""

    transformer: TransformerConfig
    vqvae: dict[str, Any]
    description: str = ""


VARSR_VQVAE = dict(vocab_size=4096, z_channels=32, ch=160, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2)
GOLDEN_VQVAE = dict(vocab_size=4096, z_channels=32, ch=32, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2)
TINY_VQVAE = dict(vocab_size=512, z_channels=16, ch=32, ch_mult=(1, 1, 1, 2, 2), num_res_blocks=1)
# downsampling 8 (four levels): a 64 px image has an 8x8 latent and 6 scales (1, 2, 3, 5, 6, 8). Widths 12-96 are
# not multiples of 32, so GroupNorm has gcd(32, width) groups of 3 channels (vae_blocks.normalize), not the one
# channel per group that 32 groups give a 32-wide level (which normalises away each channel's contrast)
TINY8_VQVAE = dict(vocab_size=1024, z_channels=16, ch=12, ch_mult=(1, 2, 4, 8), num_res_blocks=1)

ARCHS: dict[str, Arch] = {
    "tiny": Arch(
        TransformerConfig(
            depth=2,
            width=64,
            heads=2,
            vocab=512,
            cvae=16,
            image_size=64,
            stem_channels=(16, 32, 32, 64, 64),
            refiner_width=64,
            refiner_depth=2,
        ),
        TINY_VQVAE,
        "CPU test model (depth 2, width 64, vocab 512; runs in seconds at 64-128 px)",
    ),
    "tiny8": Arch(
        TransformerConfig(
            depth=2,
            width=128,
            heads=4,
            vocab=1024,
            cvae=16,
            image_size=64,
            stem_channels=(16, 32, 64, 64, 128),
            refiner_width=64,
            refiner_depth=2,
        ),
        TINY8_VQVAE,
        "CPU recipe model: downsampling-8 tokenizer (8x8 latent, 6 scales at 64 px), depth 2, width 128",
    ),
    "d2": Arch(varsr_transformer(2), GOLDEN_VQVAE, "VARSR layout at depth 2 (the golden-fixture model)"),
    "d16": Arch(varsr_transformer(16), VARSR_VQVAE, "VARSR d16 (371.5M transformer+refiner)"),
    "d20": Arch(varsr_transformer(20), VARSR_VQVAE, "VARSR d20"),
    "d24": Arch(varsr_transformer(24), VARSR_VQVAE, "VARSR d24, the released model (1.10B transformer+refiner)"),
}


def get_arch(name: str) -> Arch:
    if name not in ARCHS:
        raise ValueError(f"unknown arch {name!r}; valid choices: {', '.join(ARCHS)}")
    return ARCHS[name]


# ----------------------------------------------------------------------------------------------- from tensors
def _need(sd: Mapping[str, Tensor], key: str, source: str) -> Tensor:
    if key not in sd:
        raise ValueError(f"{source}: key {key!r} not found; not a VARSR/AlignVAR transformer checkpoint")
    return sd[key]


def transformer_config_from_state_dict(sd: Mapping[str, Tensor], source: str = "state dict") -> TransformerConfig:
    """Every ``TransformerConfig`` size read from tensor shapes (official VARSR keys; no prefix).

    Not stored in the tensors: ``norm_eps`` (1e-6), ``rope_theta`` (1e4), ``drop_path`` (0 at inference),
    ``refiner_steps`` (10): the VARSR values are used.
    """
    width, cvae = _need(sd, "word_embed.weight", source).shape
    depth = len({int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))})
    if depth == 0:
        raise ValueError(f"{source}: no 'blocks.N.' keys; not a VARSR/AlignVAR transformer checkpoint")
    heads = int(_need(sd, "blocks.0.attn.scale_mul_1H11", source).shape[1])
    fc1 = _need(sd, "blocks.0.ffn.fc1.weight", source)
    n_ctx = int(_need(sd, "pos_start", source).shape[1]) - 1
    side = int(round(n_ctx**0.5))
    if side * side != n_ctx:
        raise ValueError(f"{source}: pos_start has {n_ctx + 1} rows; expected a square prefix grid + 1 class row")
    stem = [int(_need(sd, "con_embedding.conv_in.weight", source).shape[0])]
    stem += [int(_need(sd, f"con_embedding.blocks.{i}.weight", source).shape[0]) for i in (1, 3, 5, 7)]
    has_refiner = "diffloss.net.input_proj.weight" in sd
    refiner_blocks = {int(m.group(1)) for k in sd if (m := re.match(r"diffloss\.net\.res_blocks\.(\d+)\.", k))}
    return TransformerConfig(
        depth=depth,
        width=int(width),
        heads=heads,
        mlp_ratio=fc1.shape[0] / int(width),
        num_classes=int(_need(sd, "class_emb.weight", source).shape[0]),
        vocab=int(_need(sd, "head.weight", source).shape[0]),
        cvae=int(cvae),
        image_size=side * 16,
        num_levels=int(_need(sd, "lvl_embed.weight", source).shape[0]),
        stem_channels=tuple(stem),
        with_refiner=has_refiner,
        refiner_width=int(sd["diffloss.net.input_proj.weight"].shape[0]) if has_refiner else 1024,
        refiner_depth=len(refiner_blocks) if has_refiner else 6,
    )


# ----------------------------------------------------------------------------------------------- YAML configs
@dataclass
class SCAConfig:
    """Spatial Consistency Autoregression (structure-gated input tokens); see ``sca.py``."""

    # none = SCA off (exactly VARSR); laplacian = the paper's |Laplacian(LR)|; sobel = Sobel gradient magnitude;
    # random = the paper's "random input" ablation (uniform noise map)
    mask_input: Literal["laplacian", "sobel", "random", "none"] = "laplacian"
    hidden: int = 64  # gate MLP width
    # Bias of the gate MLP's last layer; the gate starts at m = sigmoid(init_bias). Default 0 (m = 1/2): the
    # sigmoid's slope is largest there (1/4), so the gate's parameters get the largest gradient and the gate
    # can open or close within a schedule. The earlier -6 (m = 0.0025, slope 0.0025, VARSR almost unchanged at
    # the start) kept the gate closed: Adam moves a bias by at most ~lr per step, ~0.3 over the tiny recipe,
    # and the measured gate stayed at 0.0023-0.0025 (docs/ASSUMPTIONS.md, "SCA gate initialisation").
    init_bias: float = 0.0

    def __post_init__(self) -> None:
        if self.hidden < 1:
            raise ValueError(f"sca.hidden must be >= 1, got {self.hidden}")


@dataclass
class HCCConfig:
    """Hierarchical Consistency Constraint (cumulative latent supervision); see ``hcc.py``."""

    lambda_: float = field(default=1.0, metadata={"key": "lambda"})
    space: Literal["latent", "pixel"] = "latent"
    relaxation: Literal["softmax", "straight_through"] = "softmax"
    temperature: float = 1.0
    # How each scale's squared error is reduced. sum (default) = the paper's L_HCC = sum_k ||u_k - u_gt^k||_2^2:
    # the squared L2 norm over C x H x W per image, summed over scales, averaged over the batch. mean = the
    # per-element mean of every scale's term (the earlier reading): it divides HCC by C*H*W (16x4x4 = 256 in the
    # tiny recipe, 32x32x32 = 32768 at 512 px), and measured at lambda = 1 its gradient on the logits was
    # 0.4-12 % of CE's, so "HCC on" barely differed from "off" (docs/ASSUMPTIONS.md, "HCC reduction").
    reduction: Literal["sum", "mean"] = "sum"
    # pixel space only: the 0-based scales whose terms are decoded (negative = from the end, -1 = last scale;
    # None = every scale). Each differentiable 512-px decode holds ~5 GiB of activations (fp32, batch 1).
    pixel_scales: tuple[int, ...] | None = None
    # pixel space only: recompute every decode in the backward pass (torch.utils.checkpoint): activations of
    # one decode at a time instead of one per scale, for one extra decoder forward per term
    decoder_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.lambda_ < 0:
            raise ValueError(f"hcc.lambda must be >= 0, got {self.lambda_}")
        if self.temperature <= 0:
            raise ValueError(f"hcc.temperature must be > 0, got {self.temperature}")
        if self.pixel_scales is not None:
            self.pixel_scales = tuple(int(k) for k in self.pixel_scales)
            if not self.pixel_scales:
                raise ValueError("hcc.pixel_scales must name at least one scale (or be null for every scale)")

    def pixel_scale_set(self, num_scales: int) -> tuple[int, ...]:
        """The 0-based scales with a pixel-space term for a ``num_scales`` schedule (negative indices resolved);
        ValueError naming the valid range for an index outside it."""
        if self.pixel_scales is None:
            return tuple(range(num_scales))
        bad = [k for k in self.pixel_scales if not -num_scales <= k < num_scales]
        if bad:
            raise ValueError(
                f"hcc.pixel_scales {bad} outside the {num_scales}-scale schedule (valid: 0..{num_scales - 1} or "
                f"-{num_scales}..-1)"
            )
        return tuple(sorted({k % num_scales for k in self.pixel_scales}))


@dataclass
class SamplingOptions:
    """How the model samples at inference (VARSR's test settings by default): image-based CFG scale, top-k /
    top-p / temperature (greedy: top_k 1), the seed of every random draw, the diffusion refiner, the colour fix."""

    cfg: float = 6.0
    top_k: int = 1
    top_p: float = 0.75
    temperature: float = 1.0
    seed: int = 0
    use_refiner: bool = True
    color_fix: Literal["adain", "wavelet", "none"] = "adain"

    def __post_init__(self) -> None:
        check_sampling(self.cfg, self.top_k, self.top_p, self.temperature)


@dataclass
class AlignVARConfig(SamplingOptions):
    """The AlignVAR model (``model: {type: alignvar, ...}``): architecture, weights, SCA/HCC, sampling
    (``SamplingOptions``).

    ``arch`` names an entry of ``ARCHS`` (tiny, d2, d16, d20, d24) or ``auto`` (read the sizes from
    ``checkpoint``). ``checkpoint`` is an official ``VARSR.pth`` or one of our ``.safetensors`` files (which
    may also hold the VQ-VAE); ``vqvae`` an official ``VQVAE.pth`` or ours. Without a checkpoint the model is
    randomly initialised (training from scratch only: it is never benchmarked).
    """

    arch: str = "tiny"
    image_size: int | None = None  # training crop size; default: the arch's (512 for VARSR sizes)
    checkpoint: str | None = None
    vqvae: str | None = None
    sca: SCAConfig = field(default_factory=SCAConfig)
    hcc: HCCConfig = field(default_factory=HCCConfig)
    refiner_weight: float = 2.0  # weight of the diffusion-refiner loss in training (VARSR: 2.0; 0 = off)
    # performance (results are unchanged up to float rounding; see docs/PERFORMANCE.md)
    precision: Precision = "fp32"  # inference autocast: fp32 (exact), bf16 / fp16 (GPU; fp16 is GPU-only)
    compile: bool = False  # torch.compile blocks, refiner MLP and decoder at the first generate (GPU-oriented)
    grad_checkpointing: bool = False  # recompute transformer blocks in backward (training memory for compute)
    # teacher-forced (training) attention: dense boolean mask (reference) or FlexAttention block mask (GPU)
    attention: Literal["dense", "flex"] = "dense"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; valid choices: {', '.join(PRECISIONS)}")
        if self.attention not in ("dense", "flex"):
            raise ValueError(f"unknown attention {self.attention!r}; valid choices: dense, flex")
        if self.arch != "auto" and self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; valid choices: auto, {', '.join(ARCHS)}")
        if self.arch == "auto" and not self.checkpoint:
            raise ValueError("arch 'auto' reads the sizes from the checkpoint; set checkpoint")
        if self.image_size is not None and (self.image_size % 16 or self.image_size < 16):
            raise ValueError(f"image_size must be a positive multiple of 16, got {self.image_size}")
        super().__post_init__()

    def to_json_dict(self) -> dict[str, Any]:
        """Plain data for checkpoint metadata (``hcc.lambda`` spelt as in YAML)."""
        data = asdict(self)
        data["hcc"]["lambda"] = data["hcc"].pop("lambda_")
        return data

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> AlignVARConfig:
        """Inverse of ``to_json_dict``; an unknown key raises TypeError naming it."""
        data = dict(data)
        sca = SCAConfig(**data.pop("sca", {}))
        hcc = dict(data.pop("hcc", {}))
        if "lambda" in hcc:
            hcc["lambda_"] = hcc.pop("lambda")
        if hcc and "reduction" not in hcc:
            hcc["reduction"] = "mean"  # written before hcc.reduction existed: those models trained with the mean
        return cls(**data, sca=sca, hcc=HCCConfig(**hcc))

    def transformer_config(self) -> TransformerConfig:
        """The arch's transformer config with ``image_size`` applied (``auto`` is resolved on loading)."""
        cfg = get_arch(self.arch).transformer
        return replace(cfg, image_size=self.image_size) if self.image_size else cfg


def check_sampling(cfg: float, top_k: int, top_p: float, temperature: float) -> None:
    if cfg < 0:
        raise ValueError(f"cfg must be >= 0, got {cfg}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = no top-k filter, 1 = greedy), got {top_k}")
    if not 0.0 <= top_p <= 1.0:
        raise ValueError(f"top_p must be in [0, 1], got {top_p}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
