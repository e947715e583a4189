"""``AlignVAR``: frozen VQ-VAE + next-scale transformer (+ diffusion refiner) + optional SCA gate, end to end.

    model = AlignVAR.from_pretrained("VARSR.pth", vqvae="VQVAE.pth")   # official weights, SCA off = VARSR
    sr = model.upscale(lr)                                              # (B,3,h,w) [0,1] -> (B,3,4h,4w) [0,1]

Inference pipeline of ``upscale`` (VARSR's ``test_varsr.py`` generalised to any size):

1. pad the LR (replicate, bottom/right) to a multiple of 4 per side, so the output is a multiple of 16;
2. resize to the output size with bicubic interpolation: torch's ``antialias=True`` bicubic (PIL's kernel,
   a = -0.5, in float arithmetic) where the official test uses PIL's bicubic to 512x512; then map to [-1, 1]
   (docs/ASSUMPTIONS.md, "LR resize", has the measured difference);
3. generate (``ScaleSchedule.for_size`` of the output; 512x512 is the official schedule), whole or through a
   ``tiler`` (``upscale(..., tiler=)``: a callable that generates tile by tile and blends the tiles);
4. decode ``(clamp(decoder(f_hat), -1, 1) + 1) / 2``, crop the padding, colour-fix (AdaIN by default, as the
   official test) against the resized LR.

Checkpoints: official ``VARSR.pth`` (+ ``VQVAE.pth``) are read with their nesting and architecture inferred
from the tensors; ours are safetensors with prefixes ``transformer.``, ``vqvae.`` (optional) and ``sca.``, and
the configs as JSON in the metadata (``save``). A VARSR checkpoint loads into an SCA model with SCA freshly
initialised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.alignvar.colorfix import adain_color_fix, wavelet_color_fix
from methods.alignvar.configs import PRECISIONS, AlignVARConfig, Precision, TransformerConfig, get_arch
from methods.alignvar.sampling import Generators, split_generators
from methods.alignvar.sca import SCAGate
from methods.alignvar.scales import ScaleSchedule
from methods.alignvar.transformer import Generation, TokenHook, VARTransformer
from methods.alignvar.vqvae import VQVAE
from methods.alignvar.weights import (
    VQVAE_HINT,
    PretrainedFiles,
    infer_vqvae_config,
    load_strict,
    read_pretrained,
    read_state_dict,
    save_safetensors,
    without_init,
)

FORMAT = "alignvar"
# (generate_fn, upsampled LR (B, 3, H, W) in [-1, 1]) -> SR (B, 3, H, W): tiled generation, e.g. harness.core.tiling
Tiler = Callable[[Callable[[Tensor], Tensor], Tensor], Tensor]


class AlignVAR(nn.Module):
    """The full model. ``config`` carries the SCA/HCC settings and the sampling defaults of ``upscale``."""

    def __init__(self, transformer: TransformerConfig, vqvae: dict, config: AlignVARConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else AlignVARConfig()
        self.vqvae_kwargs = dict(vqvae)
        self.vqvae = VQVAE(**self.vqvae_kwargs)
        self.vqvae.requires_grad_(False)
        self.vqvae.eval()
        if (self.vqvae.vocab_size, self.vqvae.z_channels) != (transformer.vocab, transformer.cvae):
            raise ValueError(
                f"VQ-VAE (vocab {self.vqvae.vocab_size}, Cvae {self.vqvae.z_channels}) does not fit the "
                f"transformer (vocab {transformer.vocab}, Cvae {transformer.cvae})"
            )
        self.transformer = VARTransformer(transformer)
        self.transformer.latent_downsample = self.vqvae.downsample
        self.sca = self.new_sca_gate()
        self.load_notes: list[str] = []
        self.sca_untrained = False  # True when loaded from a checkpoint without SCA weights (fresh gate)
        self.transformer.grad_checkpointing = self.config.grad_checkpointing
        self.transformer.attention = self.config.attention
        self.encoder_released = False
        self._released_counts: dict[str, int] | None = None  # set by release_training_weights
        self._compiled = False
        # applied by ``generate`` when the caller gives no token_hook (a planted degradation, for controls)
        self.token_hook: TokenHook | None = None

    scale = 4

    def train(self, mode: bool = True) -> AlignVAR:
        super().train(mode)
        self.vqvae.eval()  # frozen tokenizer, always in eval mode
        return self

    def new_sca_gate(self) -> SCAGate | None:
        """A freshly initialised SCA gate for ``config.sca`` (None when SCA is off)."""
        sca = self.config.sca
        if sca.mask_input == "none":
            return None
        return SCAGate(self.transformer.cfg.cvae, sca.hidden, sca.mask_input, sca.init_bias)

    @property
    def refiner(self) -> nn.Module | None:
        return self.transformer.diffloss

    def parameter_counts(self) -> dict[str, int]:
        """Disjoint counts: transformer (backbone without stem and refiner), lr_stem, refiner, vqvae, sca (the
        model's, also after ``release_training_weights``)."""
        if self._released_counts is not None:
            return dict(self._released_counts)

        def n(m: nn.Module | None) -> int:
            return sum(p.numel() for p in m.parameters()) if m is not None else 0

        stem, ref = n(self.transformer.con_embedding), n(self.refiner)
        return {
            "transformer": n(self.transformer) - stem - ref,
            "lr_stem": stem,
            "refiner": ref,
            "vqvae": n(self.vqvae),
            "sca": n(self.sca),
        }

    # ------------------------------------------------------------------------------------------- building
    @classmethod
    def from_config(cls, config: AlignVARConfig) -> AlignVAR:
        """Load ``config.checkpoint`` if set, else build ``config.arch`` with VAR's training init (the VQ-VAE
        from ``config.vqvae`` when given; a model without trained weights is for training only)."""
        if config.checkpoint:
            return cls.from_pretrained(config.checkpoint, config.vqvae, config)
        vqvae_kwargs, vsd = dict(get_arch(config.arch).vqvae), None
        if config.vqvae:  # a trained tokenizer under a from-scratch transformer
            vsd = read_state_dict(config.vqvae, hint=VQVAE_HINT)
            vqvae_kwargs = infer_vqvae_config(vsd, source=str(config.vqvae))
        # the transformer's vocabulary and token width follow the tokenizer
        tcfg = dataclasses.replace(
            config.transformer_config(), vocab=vqvae_kwargs["vocab_size"], cvae=vqvae_kwargs["z_channels"]
        )
        model = cls(tcfg, vqvae_kwargs, config)
        model.transformer.init_weights()
        if vsd is not None:
            load_strict(model.vqvae, vsd, str(config.vqvae))
        return model

    @classmethod
    def from_pretrained(
        cls, checkpoint: str | Path, vqvae: str | Path | None = None, config: AlignVARConfig | None = None
    ) -> AlignVAR:
        """Official ``VARSR.pth`` + ``VQVAE.pth`` or our safetensors (VQ-VAE inside or ``vqvae``).

        The architecture comes from the tensor shapes. ``config`` (SCA mode, sampling defaults) defaults to
        the one stored in our checkpoint's metadata, else ``AlignVARConfig()``. SCA weights absent from the
        file are freshly initialised (VARSR -> AlignVAR); present but unused (``mask_input: none``) they are
        ignored. Both cases are recorded in ``load_notes``. The model is built without initialising its weights and
        the file's tensors are assigned to it, so the weights are held once (``weights.py``).
        """
        files = read_pretrained(checkpoint, vqvae, config)
        with without_init():  # weights allocated, never written: no memory, no random init
            model = cls(files.transformer_config, files.vqvae_config, files.config)
        model._assign(files)
        return model.eval()

    def _assign(self, files: PretrainedFiles) -> None:
        """Hold the file's tensors (``assign=True``: no copy); a gate missing from the file is built fresh."""
        load_strict(self.transformer, files.transformer, files.source, assign=True)
        load_strict(self.vqvae, files.vqvae, files.vqvae_source, assign=True)
        if self.sca is not None and files.sca:
            load_strict(self.sca, files.sca, f"{files.source} (sca.)", assign=True)
        elif self.sca is not None:
            self.sca = self.new_sca_gate()
            self.sca_untrained = True
            self.load_notes.append(
                f"{files.source} has no SCA weights: SCA ({self.config.sca.mask_input}) freshly initialised"
            )
        elif files.sca:
            self.load_notes.append(f"{files.source} has SCA weights but sca.mask_input is 'none': they are ignored")
        files.release()

    def release_encoder(self) -> AlignVAR:
        """Free the VQ-VAE encoder (44 M parameters, 0.18 GB fp32 in the VARSR tokenizer) for inference-only use.

        ``upscale``/``generate`` never encode (the LR goes through the transformer's own stem); tokenising
        (training, HCC targets, analysis) then raises a clear error, and so does ``save`` (the file would lack
        the encoder). Reload the model to get it back.
        """
        if not self.encoder_released:
            self.vqvae.encoder = _ReleasedEncoder()
            self.encoder_released = True
        return self

    def release_training_weights(self) -> AlignVAR:
        """Inference only: free the weights ``upscale`` never reads, without changing its results.

        That is the VQ-VAE encoder (``release_encoder``) and the AdaLN projections of every block and the head,
        replaced by their outputs for the two classes (``VARTransformer.freeze_adaln``): 344 M + 44 M parameters,
        1.55 GB fp32 of the 4.85 GB d24 model. ``parameter_counts`` still reports the full model. Training,
        teacher-forced analysis, tokenising and ``save`` then raise a clear error; reload to get them back.
        """
        if self._released_counts is None:
            self._released_counts = self.parameter_counts()
            self.release_encoder()
            self.transformer.freeze_adaln()
        return self

    @property
    def training_weights_released(self) -> bool:
        return self._released_counts is not None

    def save(self, path: str | Path, include_vqvae: bool = True, metadata: dict[str, str] | None = None) -> Path:
        """Write the weights as safetensors (atomically) with the three configs as JSON metadata."""
        if self.transformer.adaln_frozen:
            raise ValueError(
                "cannot save: the AdaLN projections were released (release_training_weights) for inference; "
                "reload the model from its checkpoint"
            )
        if self.encoder_released and include_vqvae:
            raise ValueError(
                "cannot save the VQ-VAE: its encoder was released (release_encoder) for inference; "
                "save with include_vqvae=False or reload the model"
            )
        sd = {k: v for k, v in self.state_dict().items() if include_vqvae or not k.startswith("vqvae.")}
        meta = {
            "format": FORMAT,
            "alignvar_config": json.dumps(dataclasses.replace(self.config, checkpoint=None, vqvae=None).to_json_dict()),
            "transformer_config": json.dumps(dataclasses.asdict(self.transformer.cfg)),
            "vqvae_config": json.dumps(self.vqvae_kwargs),
            **(metadata or {}),
        }
        save_safetensors(sd, path, meta)
        return Path(path)

    # ------------------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def generate(
        self,
        lr: Tensor,
        schedule: ScaleSchedule | None = None,
        *,
        cfg: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float | None = None,
        generator: Generators = None,
        label: int = 0,
        neg_label: int = 1,
        use_refiner: bool | None = None,
        token_hook: TokenHook | None = None,
        return_tokens: bool = False,
        precision: Precision | None = None,
        kv_cache: bool = True,
    ) -> Tensor | tuple[Tensor, Generation]:
        """LR (B, 3, H, W) in [-1, 1] at the output size -> SR (B, 3, H, W) float32 in [0, 1] (no colour fix).

        Sampling options and ``precision`` default to ``self.config``; SCA (if built) gates the inputs with
        maps from ``lr`` (``random`` maps are drawn from ``generator`` first). ``generator`` may be one
        generator per image (``sampling.split_generators``). ``return_tokens`` also returns the
        ``Generation``; ``kv_cache=False`` runs the slow reference path (``VARTransformer.generate``).
        """
        c = self.config
        schedule = self.transformer.schedule_for(lr, schedule)
        self._maybe_compile()
        with autocast_for(lr.device, c.precision if precision is None else precision):
            sca_fn = None
            if self.sca is not None:
                sca_fn = self.sca.gate_fn(self._sca_maps(lr, schedule, generator))
            gen = self.transformer.generate(
                lr,
                self.vqvae.quantize,
                schedule,
                cfg=c.cfg if cfg is None else cfg,
                top_k=c.top_k if top_k is None else top_k,
                top_p=c.top_p if top_p is None else top_p,
                temperature=c.temperature if temperature is None else temperature,
                generator=generator,
                label=label,
                neg_label=neg_label,
                use_refiner=c.use_refiner if use_refiner is None else use_refiner,
                sca=sca_fn,
                token_hook=token_hook if token_hook is not None else self.token_hook,
                kv_cache=kv_cache,
            )
            img = self.decode(gen.f_hat)
        return (img, gen) if return_tokens else img

    @torch.no_grad()
    def decode(self, f_hat: Tensor) -> Tensor:
        """Latent (B, Cvae, h, w) -> image (B, 3, 16h, 16w) float32 in [0, 1]: ``(clamp(dec, -1, 1) + 1) / 2``."""
        return (self.vqvae.decode(f_hat).float().clamp(-1, 1) + 1) / 2

    def _sca_maps(self, lr: Tensor, schedule: ScaleSchedule, generator: Generators) -> list[Tensor]:
        """SCA structure maps; with one generator per image, each image's random map comes from its own."""
        if generator is None or isinstance(generator, torch.Generator):
            return self.sca.guidance(lr, schedule, generator)
        per_image = [self.sca.guidance(lr[sl], schedule, g) for sl, g in split_generators(generator, lr.shape[0])]
        return [torch.cat(maps, dim=0) for maps in zip(*per_image)]

    def _maybe_compile(self) -> None:
        """``config.compile``: torch.compile every transformer block, the refiner MLP and the VQ-VAE decoder
        once, in place (state-dict keys unchanged). The blocks are compiled with dynamic shapes (one graph
        serves every scale); the refiner and the decoder see one shape per image size and are compiled for static
        shapes (one graph per size): traced with dynamic shapes, the decoder's in-place inference path gave
        wrong images under AOT autograd in torch 2.14 (tests/test_inference_memory.py)."""
        if not self.config.compile or self._compiled:
            return
        for block in self.transformer.blocks:
            block.compile(dynamic=True)
        if self.refiner is not None:
            self.refiner.net.compile(dynamic=False)
        self.vqvae.decoder.compile(dynamic=False)
        self._compiled = True

    @torch.inference_mode()
    def upscale(self, lr: Tensor, seed: int | None = None, tiler: Tiler | None = None, **sampling) -> Tensor:
        """x4 super-resolution: (B, 3, h, w) in [0, 1] -> (B, 3, 4h, 4w) in [0, 1] (module docstring).

        ``seed`` (default ``config.seed``) seeds a fresh generator per image and call, so an image's result
        does not depend on the other images of the batch (a batch equals one call per image up to float
        rounding); ``tiler(generate_fn, lr)`` (optional) generates the upsampled LR in [-1, 1] tile by tile with
        ``generate_fn`` (one generator stream for all tiles); ``sampling`` overrides ``generate`` options (cfg,
        top_k, top_p, temperature, use_refiner, precision).
        """
        c = self.config
        if lr.ndim != 4 or lr.shape[1] != 3:
            raise ValueError(f"expected an LR batch (B, 3, h, w) in [0, 1], got shape {tuple(lr.shape)}")
        h, w = int(lr.shape[-2]), int(lr.shape[-1])
        pad_h, pad_w = (-h) % 4, (-w) % 4
        if pad_h or pad_w:
            lr = F.pad(lr, (0, pad_w, 0, pad_h), mode="replicate")
        H, W = 4 * lr.shape[-2], 4 * lr.shape[-1]
        lr_up = upsample_bicubic(lr, (H, W))
        seed = c.seed if seed is None else seed
        gens = [torch.Generator(device=lr.device).manual_seed(seed) for _ in range(lr.shape[0])]
        generator = gens[0] if len(gens) == 1 else gens
        lr_m11 = lr_up * 2 - 1

        def generate_fn(crop: Tensor) -> Tensor:
            return self.generate(crop, generator=generator, **sampling)

        sr = generate_fn(lr_m11) if tiler is None else tiler(generate_fn, lr_m11)
        sr, ref = sr[..., : 4 * h, : 4 * w], lr_up[..., : 4 * h, : 4 * w]
        if c.color_fix == "adain":
            sr = adain_color_fix(sr, ref)
        elif c.color_fix == "wavelet":
            sr = wavelet_color_fix(sr, ref)
        return sr.clamp(0, 1)


def autocast_for(device: torch.device | str, precision: Precision):
    """Autocast context of an inference ``precision``: fp32 = none; bf16 / fp16 autocast on the device.

    fp16 is GPU-only (CPU autocast to fp16 is slow and not what the official test does); bf16 works on CPU
    (emulated on CPUs without bf16 units: slower there, use it on GPUs or AMX/AVX512-BF16 CPUs).
    """
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid choices: {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("precision fp16 needs a GPU; on CPU use fp32 (default) or bf16")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


class _ReleasedEncoder(nn.Module):
    """Stands in for the VQ-VAE encoder after ``AlignVAR.release_encoder``: no weights, a clear error."""

    def forward(self, img: Tensor) -> Tensor:
        raise RuntimeError(
            "the VQ-VAE encoder was released (AlignVAR.release_encoder) for inference-only use; reload the "
            "model to tokenise images"
        )


def upsample_bicubic(img: Tensor, size: tuple[int, int]) -> Tensor:
    """Bicubic resize with PIL's kernel (torch ``antialias=True``, a = -0.5), clamped to [0, 1]."""
    return F.interpolate(img, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
