"""VARSR's next-scale prediction transformer (``VAR_RoPE``) with the official parameter names.

Sequence layout for a schedule of K scales with grids (h_k, w_k) and an LR prefix grid (h_p, w_p) = latent
grid:

    [ h_p*w_p LR tokens | class token | scale-2 inputs | ... | scale-K inputs ]      (3264 tokens at 512 px)

* LR tokens: ``con_embedding`` (ControlNet-style conv stem, stride 16) of the LR image upsampled to the output
  size, flattened row-major. Class token: ``class_emb(label)`` (0 = HQ, 1 = low quality / CFG negative).
  ``pos_start`` (1, h_p*w_p + 1, C) is added to these context tokens, ``lvl_embed`` row 0 too.
* scale-k input (k >= 2): ``word_embed(area_down(F_{k-1}, (h_k, w_k)))`` + ``lvl_embed`` row of scale k, where
  F_{k-1} is the cumulative quantised latent (the teacher-forcing input ``x_in`` of ``forward``).
* the class-token position predicts scale 1, the scale-k inputs predict scale k: logits are (B, L, V) with
  L = sum h_k*w_k (2240 at 512 px), in scale-major, row-major order.
* attention is block-causal: token i sees token j iff scale(i) >= scale(j) (the context is scale 0, so the LR
  and class tokens see each other); scale-aligned 2-D RoPE (``rope.py``); AdaLN conditioning on the class
  only.

Other sizes (``ScaleSchedule.for_size``; any H, W multiple of 16) reuse the same weights:

* ``pos_start``: its LR part, viewed on the training prefix grid, is bicubic-interpolated
  (align_corners=False) to the new prefix grid; the class row is kept. At the training size it is used
  unchanged.
* ``lvl_embed``: scale k of a K-scale schedule uses row ``round(k * (N-1) / (K-1))`` of the N = ``num_levels``
  rows (identity for the official 10-scale schedule; first scale -> row 0, last scale -> row N-1 always).
* RoPE grid = the latent grid (see ``rope.py``).

A tokenizer with a finer latent (downsampling 8, ``latent_downsample``) keeps the 1/16 LR prefix: the prefix
grid is then half the latent grid, and RoPE places the prefix tokens on the latent grid (``rope.py``).

``generate`` runs KV-cached autoregressive inference with VARSR's image-based CFG; ``forward``
with the full block-causal mask gives the same logits when fed the generated tokens (tested). ``forward``
takes the mask as a dense boolean matrix (``attention = "dense"``, the reference) or as a FlexAttention
``BlockMask`` built from the same scale ids (``attention = "flex"``, equal up to float rounding; tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.nn.attention.flex_attention import BlockMask, create_block_mask
from torch.utils.checkpoint import checkpoint

from methods.alignvar.blocks import (
    ADALN_RELEASED,
    AdaLNBeforeHead,
    AdaLNBlock,
    ConditioningStem,
    KVCache,
    freeze_modulation,
    init_std,
)
from methods.alignvar.configs import TransformerConfig
from methods.alignvar.refiner import DiffusionRefiner
from methods.alignvar.rope import rope_table
from methods.alignvar.sampling import Generators, cfg_combine, guidance_ramp, sample_logits
from methods.alignvar.scales import ScaleSchedule

# (scale k, sampled idx (B, n), guided logits (B, n, V)) -> the idx to use
TokenHook = Callable[[int, Tensor, Tensor], Tensor]
# (scale k, input tokens (B, n, Cvae)) -> SCA gate m (B, n, 1)
ScaGateFn = Callable[[int, Tensor], Tensor]


@dataclass
class Generation:
    """Result of ``VARTransformer.generate`` (latent space; decoding is the VQ-VAE's job).

    f_hat:        (B, Cvae, H, W) final latent (token sum plus the refiner residual when used).
    f_hat_tokens: (B, Cvae, H, W) the latent from the tokens alone (before the refiner).
    tokens:       per scale (B, h_k*w_k) int64.
    refiner_z:    (B, h_K*w_K, C) conditional-branch refiner condition
                  ``decoder_norm(h_last + word_embed(E[idx_K]))``.
    """

    f_hat: Tensor
    f_hat_tokens: Tensor
    tokens: list[Tensor] = field(default_factory=list)
    refiner_z: Tensor | None = None


def level_rows(num_scales: int, num_levels: int) -> list[int]:
    """``lvl_embed`` row of every scale: identity when K == N, else ``round(k (N-1) / (K-1))`` (half up)."""
    if num_scales == num_levels:
        return list(range(num_scales))
    if num_scales == 1:
        return [0]
    return [int(math.floor(k * (num_levels - 1) / (num_scales - 1) + 0.5)) for k in range(num_scales)]


class VARTransformer(nn.Module):
    """Next-scale transformer + diffusion refiner (``diffloss``) with the official VARSR parameter keys."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        C = cfg.width
        std = init_std(C)
        self.con_embedding = ConditioningStem(C, 3, cfg.stem_channels)
        self.word_embed = nn.Linear(cfg.cvae, C)
        self.class_emb = nn.Embedding(cfg.num_classes, C)
        nn.init.trunc_normal_(self.class_emb.weight, std=std)
        n_ctx = cfg.prefix_hw[0] * cfg.prefix_hw[1] + 1
        self.pos_start = nn.Parameter(torch.empty(1, n_ctx, C))
        nn.init.trunc_normal_(self.pos_start, std=std)
        self.lvl_embed = nn.Embedding(cfg.num_levels, C)
        nn.init.trunc_normal_(self.lvl_embed.weight, std=std)
        dpr = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]  # linear 0 -> drop_path
        self.blocks = nn.ModuleList(
            AdaLNBlock(C, cfg.heads, cfg.mlp_ratio, cfg.norm_eps, drop_path=dpr[i], layer_idx=i)
            for i in range(cfg.depth)
        )
        self.head_nm = AdaLNBeforeHead(C, cfg.norm_eps)
        self.head = nn.Linear(C, cfg.vocab)
        self.decoder_norm = nn.LayerNorm(C, eps=cfg.norm_eps)
        if cfg.with_refiner:
            self.diffloss = DiffusionRefiner(
                target_channels=cfg.cvae,
                z_channels=C,
                width=cfg.refiner_width,
                depth=cfg.refiner_depth,
                num_sampling_steps=cfg.refiner_steps,
            )
        else:
            self.diffloss = None
        self.grad_checkpointing = False  # trade compute for memory in training (blocks only)
        self.attention = "dense"  # teacher-forced mask: "dense" (SDPA, boolean mask) or "flex" (BlockMask)
        self._block_masks: dict[tuple, BlockMask] = {}
        # the VQ-VAE's spatial downsampling (latent grid = image / latent_downsample); AlignVAR sets it from its
        # tokenizer (16 for VARSR's, 8 for the ``tiny8`` arch). The LR prefix grid is always image / 16.
        self.latent_downsample = 16

    # ------------------------------------------------------------------------------------------- loading
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001 - torch signature
        # Derived buffers of the official model; we rebuild them on the fly, so accept and drop them.
        state_dict.pop(prefix + "lvl_1L", None)
        state_dict.pop(prefix + "attn_bias_for_masking", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def init_weights(
        self,
        init_adaln: float = 0.5,
        init_adaln_gamma: float = 1e-5,
        init_head: float = 0.02,
        conv_std: float = 0.02,
    ) -> VARTransformer:
        """VAR's training init (``var.py:init_weights``, ``init_std = sqrt(1/3C)``); refiner left alone.

        Linear/embedding weights ~ trunc_normal(std), biases 0; convs ~ trunc_normal(conv_std); the head
        scaled by ``init_head``; attention/FFN output projections divided by sqrt(2 depth); AdaLN gammas
        scaled by ``init_adaln_gamma`` (blocks start near identity), the other AdaLN outputs by
        ``init_adaln``.
        """
        std = init_std(self.cfg.width)
        refiner = set(self.diffloss.modules()) if self.diffloss is not None else set()
        for m in self.modules():
            if m in refiner:
                continue
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.trunc_normal_(m.weight, std=std)
            elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=conv_std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos_start, std=std)
        with torch.no_grad():
            self.head.weight.mul_(init_head)
            nn.init.zeros_(self.head.bias)
            self.head_nm.ada_lin[-1].weight.mul_(init_adaln)
            nn.init.zeros_(self.head_nm.ada_lin[-1].bias)
            C, depth = self.cfg.width, self.cfg.depth
            for block in self.blocks:
                block.attn.proj.weight.div_(math.sqrt(2 * depth))
                block.ffn.fc2.weight.div_(math.sqrt(2 * depth))
                block.ada_lin[-1].weight[2 * C :].mul_(init_adaln)
                block.ada_lin[-1].weight[: 2 * C].mul_(init_adaln_gamma)
                nn.init.zeros_(block.ada_lin[-1].bias)
                block.attn.scale_mul_1H11.fill_(math.log(4.0))
                nn.init.zeros_(block.attn.q_bias)
                nn.init.zeros_(block.attn.v_bias)
        return self

    # ------------------------------------------------------------------------------------------- layout
    def schedule_for(self, lr: Tensor, schedule: ScaleSchedule | None = None) -> ScaleSchedule:
        """``schedule`` or ``ScaleSchedule.for_size`` of the LR input; checks that the two agree."""
        H, W = int(lr.shape[-2]), int(lr.shape[-1])
        if schedule is None:
            schedule = ScaleSchedule.for_size(H, W, self.latent_downsample)
        if schedule.image_hw != (H, W):
            raise ValueError(
                f"LR input is {H}x{W} but schedule {schedule} is for "
                f"{schedule.image_hw[0]}x{schedule.image_hw[1]}; "
                f"the LR must be upsampled to the output size first"
            )
        return schedule

    def pos_start_for(self, prefix_hw: tuple[int, int]) -> Tensor:
        """``pos_start`` for a prefix grid: as stored at the training grid, else LR part bicubic-resized."""
        train_hw = self.cfg.prefix_hw
        if tuple(prefix_hw) == train_hw:
            return self.pos_start
        grid = rearrange(self.pos_start[:, :-1], "1 (h w) c -> 1 c h w", h=train_hw[0], w=train_hw[1])
        grid = F.interpolate(grid.float(), size=tuple(prefix_hw), mode="bicubic", align_corners=False)
        grid = rearrange(grid, "1 c h w -> 1 (h w) c").to(self.pos_start.dtype)
        return torch.cat([grid, self.pos_start[:, -1:]], dim=1)

    def prefix_hw_for(self, schedule: ScaleSchedule) -> tuple[int, int]:
        """The LR prefix grid of a schedule: its image size / the stem's downsampling (16)."""
        H, W = schedule.image_hw
        return H // self.con_embedding.downsample, W // self.con_embedding.downsample

    def rope_for(self, schedule: ScaleSchedule, device: torch.device) -> Tensor:
        table = rope_table(
            self.cfg.head_dim,
            self.prefix_hw_for(schedule),
            schedule.patch_nums,
            schedule.latent_hw,
            self.cfg.rope_theta,
        )
        return table.to(device)

    def _levels(self, schedule: ScaleSchedule) -> list[int]:
        return level_rows(schedule.num_scales, self.cfg.num_levels)

    @staticmethod
    def scale_ids(schedule: ScaleSchedule, n_prefix: int, device: torch.device) -> Tensor:
        """(L_tot,) scale index of every position of the teacher-forced sequence (context = scale 0)."""
        counts = [n_prefix + 1] + [h * w for h, w in schedule.patch_nums[1:]]
        return torch.repeat_interleave(torch.arange(len(counts), device=device), torch.tensor(counts, device=device))

    @staticmethod
    def block_causal_mask(schedule: ScaleSchedule, n_prefix: int, device: torch.device) -> Tensor:
        """Boolean (L_tot, L_tot) mask, True = may attend: scale(i) >= scale(j), context = scale 0."""
        scale_id = VARTransformer.scale_ids(schedule, n_prefix, device)
        return scale_id[:, None] >= scale_id[None, :]

    def flex_block_mask(self, schedule: ScaleSchedule, n_prefix: int, device: torch.device) -> BlockMask:
        """The block-causal mask as a FlexAttention ``BlockMask`` (same rule as ``block_causal_mask``), cached
        per (schedule, prefix length, device): tiles above the scale diagonal are skipped, not masked."""
        key = (schedule.patch_nums, n_prefix, str(device))
        mask = self._block_masks.get(key)
        if mask is None:
            with torch.inference_mode(False):  # a mask first built under inference must still serve training
                mask = self._build_block_mask(schedule, n_prefix, device)
            self._block_masks[key] = mask
        return mask

    def _build_block_mask(self, schedule: ScaleSchedule, n_prefix: int, device: torch.device) -> BlockMask:
        scale_id = self.scale_ids(schedule, n_prefix, device)

        def block_causal(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            return scale_id[q_idx] >= scale_id[kv_idx]

        L = int(scale_id.shape[0])
        return create_block_mask(block_causal, None, None, L, L, device=str(device))

    def _attention_mask(self, schedule: ScaleSchedule, n_prefix: int, device: torch.device) -> Tensor | BlockMask:
        """The teacher-forced mask for ``self.attention``; dense while an attention recorder is attached (it
        reads the boolean mask)."""
        if self.attention not in ("dense", "flex"):
            raise ValueError(f"unknown attention {self.attention!r}; valid choices: dense, flex")
        recording = any(block.attn.record_attention is not None for block in self.blocks)
        if self.attention == "flex" and not recording:
            if device.type == "cpu" and torch.is_grad_enabled():
                raise ValueError(
                    "attention 'flex' needs a GPU for training: torch's FlexAttention has no backward on CPU "
                    "(use attention: dense there)"
                )
            return self.flex_block_mask(schedule, n_prefix, device)
        return self.block_causal_mask(schedule, n_prefix, device)

    def _context(self, lr: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, int]:
        """(context tokens (B', n_p+1, C) incl. pos_start + lvl row 0, AdaLN condition (B', C), n_p).

        ``labels`` may hold a multiple of the LR batch (CFG): the LR tokens are then repeated.
        """
        stem = self.con_embedding(lr)  # (B, C, h_p, w_p)
        prefix_hw = (int(stem.shape[-2]), int(stem.shape[-1]))
        prefix = rearrange(stem, "b c h w -> b (h w) c")
        reps = labels.shape[0] // lr.shape[0]
        if reps * lr.shape[0] != labels.shape[0]:
            raise ValueError(f"{labels.shape[0]} labels for an LR batch of {lr.shape[0]}")
        cond = self.class_emb(labels)
        B, n, C = prefix.shape
        # one (B', n+1, C) buffer: the LR tokens broadcast into every CFG branch (no repeated copy, no cat)
        ctx = torch.empty((reps * B, n + 1, C), dtype=torch.promote_types(prefix.dtype, cond.dtype), device=cond.device)
        ctx.view(reps, B, n + 1, C)[:, :, :n] = prefix
        ctx[:, n] = cond
        ctx += self.pos_start_for(prefix_hw)
        return ctx, cond, n

    def head_logits(self, h: Tensor, cond: Tensor, mod: Tensor | None = None) -> Tensor:
        """``head(head_nm(h, cond))`` in float32 (autocast off), as the official ``get_logits``; ``mod``:
        precomputed ``head_mod(cond)``."""
        with torch.autocast(device_type=h.device.type, enabled=False):
            return self.head(self.head_nm(h.float(), cond.float(), mod)).float()

    def head_mod(self, cond: Tensor) -> Tensor:
        """The head's AdaLN parameters in float32 (autocast off, like ``head_logits``)."""
        with torch.autocast(device_type=cond.device.type, enabled=False):
            return self.head_nm.modulation(cond.float())

    # ------------------------------------------------------------------------------- AdaLN for inference
    @property
    def adaln_frozen(self) -> bool:
        """True after ``freeze_adaln``: the AdaLN projections are gone, generation reads per-class tables."""
        return self.head_nm.ada_lin is None

    def freeze_adaln(self) -> None:
        """Inference only: replace every block's and the head's AdaLN projection by its output for each class.

        The AdaLN parameters depend on the class label only (2 classes), so generation needs 2 x 6C numbers per
        block instead of the 6C x C matrix: at d24 this frees 344 M parameters (1.38 GB fp32). Tokens are
        bit-identical for a single image with CFG (the tables are computed on both classes in one product, as
        generation does); teacher-forced ``forward`` and training then raise a clear error.
        """
        if self.adaln_frozen:
            return
        conds = self.class_emb.weight.detach()
        for block in self.blocks:
            freeze_modulation(block, conds)
        freeze_modulation(self.head_nm, conds)

    def _modulations(self, labels: Tensor, cond: Tensor) -> tuple[list[Tensor], Tensor]:
        """(per-block AdaLN parameters (B', 1, 6, C), the head's (B', 1, 2, C) float32) of a batch's classes."""
        if not self.adaln_frozen:
            return [block.modulation(cond) for block in self.blocks], self.head_mod(cond)
        device = labels.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        mods = [block.modulation_table[labels] for block in self.blocks]
        if dtype is not None:  # what the projection would return under autocast
            mods = [m.to(dtype) for m in mods]
        return mods, self.head_nm.modulation_table[labels]

    # ------------------------------------------------------------------------------------------- training
    def forward(
        self,
        lr: Tensor,
        label: Tensor,
        x_in: Tensor,
        schedule: ScaleSchedule | None = None,
        sca_gate: Tensor | None = None,
        return_hidden: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Teacher-forced logits (B, L, V) for all K scales (block-causal mask over the whole sequence; dense or
        FlexAttention after ``self.attention``).

        lr: (B, 3, H, W) in [-1, 1], already upsampled to the output size; label: (B,) long; x_in:
        (B, L - 1, Cvae) teacher-forcing input (``area_down(F_{k-1})`` of scales 2..K, flattened);
        sca_gate: optional (B, L - 1, 1) SCA gate m, the inputs become (1 + m) * x_in (``None``: plain VARSR).
        With ``return_hidden`` also the last block's output (B, L, C) at the same positions (before head_nm).
        """
        if self.adaln_frozen:
            raise RuntimeError(ADALN_RELEASED)
        schedule = self.schedule_for(lr, schedule)
        B = lr.shape[0]
        n_in = schedule.total_tokens - 1
        if x_in.shape != (B, n_in, self.cfg.cvae):
            raise ValueError(
                f"x_in has shape {tuple(x_in.shape)}; expected (B={B}, {n_in}, {self.cfg.cvae}) for schedule {schedule}"
            )
        if sca_gate is not None:
            if sca_gate.shape != (B, n_in, 1):
                raise ValueError(f"sca_gate has shape {tuple(sca_gate.shape)}; expected ({B}, {n_in}, 1)")
            x_in = x_in * (1 + sca_gate)
        ctx, cond, n_prefix = self._context(lr, label)
        x = torch.cat([ctx, self.word_embed(x_in.to(ctx.dtype))], dim=1)
        rows = self._levels(schedule)
        ids = [rows[0]] * (n_prefix + 1)
        for k, (h, w) in enumerate(schedule.patch_nums[1:], start=1):
            ids += [rows[k]] * (h * w)
        x = x + self.lvl_embed(torch.tensor(ids, device=x.device))[None]
        mask = self._attention_mask(schedule, n_prefix, x.device)
        rope = self.rope_for(schedule, x.device)
        for block in self.blocks:
            if self.grad_checkpointing and self.training:
                x = checkpoint(block, x, cond, rope, mask, use_reentrant=False)
            else:
                x = block(x, cond, rope, mask)
        hidden = x[:, n_prefix:]
        logits = self.head_logits(hidden, cond)
        return (logits, hidden) if return_hidden else logits

    # ------------------------------------------------------------------------------------------- inference
    def generate(
        self,
        lr: Tensor,
        quantizer: nn.Module,
        schedule: ScaleSchedule | None = None,
        *,
        cfg: float = 6.0,
        top_k: int = 1,
        top_p: float = 0.75,
        temperature: float = 1.0,
        generator: Generators = None,
        label: int = 0,
        neg_label: int = 1,
        use_refiner: bool = True,
        refiner_temperature: float = 1.0,
        sca: ScaGateFn | None = None,
        token_hook: TokenHook | None = None,
        kv_cache: bool = True,
    ) -> Generation:
        """KV-cached next-scale sampling with VARSR's image-based CFG.

        Both CFG branches run in one batch of 2B (shared LR prefix; class token and AdaLN condition ``label``
        vs ``neg_label``); at scale k the logits are ``(1 + t_k) l_cond - t_k l_neg`` with
        ``t_k = cfg * k / (K - 1)`` (``cfg == 0`` skips the negative branch). Tokens are drawn by
        ``sample_logits`` (top_k=1: argmax) from ``generator`` (one, or one per image: then an image's tokens
        and refiner noise do not depend on the rest of the batch); ``token_hook(k, idx, logits)`` may replace
        them (used to force reference tokens at near-ties). ``quantizer`` (``MultiScaleQuantizer``) turns
        tokens into the next input. ``sca(k, tokens)`` gates the scale-k input tokens (``None``: plain
        VARSR). With ``use_refiner`` the diffusion refiner adds the last-scale continuous residual, sampled
        with guidance t_{K-1} from ``generator``.

        Performance (docs/PERFORMANCE.md): the KV cache is one preallocated buffer written in place, sized up to
        the second-to-last scale (the last scale's keys are never attended to later, so they are not written)
        and released before the refiner runs; the AdaLN parameters of every block (a function of the class
        only) are computed once, not re-read from the weights at every scale; at step 0 only the class-token
        row of the last block is computed (the only logits used); without autograd the blocks update their
        temporaries in place; no host-device synchronisation inside the scale loop. All of this is
        bit-identical to the plain computation. ``kv_cache=False`` is the straightforward reference path
        (``generate_reference``): every scale recomputes the whole prefix with the block-causal mask; it
        yields the same tokens and is only for checking and benchmarking.
        """
        with torch.no_grad():  # (not a decorator: mutmut leaves decorated functions alone)
            schedule = self.schedule_for(lr, schedule)
            B, K = lr.shape[0], schedule.num_scales
            guided = cfg > 0
            nb = 2 * B if guided else B
            labels = torch.full((B,), label, dtype=torch.long, device=lr.device)
            if guided:
                labels = torch.cat([labels, torch.full_like(labels, neg_label)])
            ctx, cond, n_prefix = self._context(lr, labels)
            rows = self._levels(schedule)
            lvl = self.lvl_embed.weight
            x = ctx.add_(lvl[rows[0]])
            rope = self.rope_for(schedule, lr.device)
            ramp = guidance_ramp(cfg, K)
            steps = [n_prefix + 1] + list(schedule.tokens_per_scale[1:])  # tokens fed at every step
            cache = KVCache(len(self.blocks), sum(steps) - steps[-1]) if kv_cache else None
            mask = None if kv_cache else self.block_causal_mask(schedule, n_prefix, lr.device)
            seq: list[Tensor] = []  # reference path: every input so far
            # AdaLN parameters depend on the class only: computed once (or read from the frozen per-class tables),
            # not re-read from the weights every scale
            mods, head_mod = self._modulations(labels, cond)
            f_hat = lvl.new_zeros(B, self.cfg.cvae, *schedule.latent_hw)
            tokens: list[Tensor] = []
            cur = 0
            hidden = x
            for k, hw in enumerate(schedule.patch_nums):
                n = x.shape[1]
                n_out = 1 if k == 0 else n  # step 0: only the class token's output is ever read
                if cache is not None:
                    cache.store = k < K - 1  # nothing attends to the last scale's keys
                    hidden = self._cached_step(
                        x, cond, mods, rope[:, cur : cur + n], cache, tail=n_out if k == 0 else None
                    )
                else:
                    seq.append(x)
                    hidden = self._recompute_step(seq, cond, mods, rope, mask, n_out)
                cur += n
                logits = self.head_logits(hidden, cond, head_mod)
                if guided:
                    logits = cfg_combine(logits[:B], logits[B:], ramp[k], inplace=True)
                idx = sample_logits(logits, top_k, top_p, temperature, generator)
                if token_hook is not None:
                    idx = token_hook(k, idx, logits)
                tokens.append(idx)
                del logits  # not held into the next (larger) step
                f_hat, nxt = quantizer.next_ar_input(k, f_hat, quantizer.lookup(idx, hw), schedule)
                if nxt is None:
                    break
                tok = rearrange(nxt, "b c h w -> b (h w) c")
                if sca is not None:
                    tok = tok * (1 + sca(k + 1, tok))
                x = self.word_embed(tok) + lvl[rows[k + 1]]
                if guided:
                    x = x.repeat(2, 1, 1)
            if cache is not None:
                cache.clear()  # the refiner and the decoder need the memory more
            del cache, seq, x, mods
            f_hat_tokens = f_hat
            # last block output at the positions that predicted scale K (the class token when K == 1)
            h_last = hidden[:, -schedule.tokens_per_scale[-1] :]
            z = self.decoder_norm(h_last + self.word_embed(quantizer.embedding(tokens[-1])).repeat(nb // B, 1, 1))
            if use_refiner:
                if self.diffloss is None:
                    raise ValueError("use_refiner=True but this transformer has no diffusion refiner (diffloss)")
                delta = self.diffloss.sample(
                    z.reshape(-1, z.shape[-1]),
                    cfg=ramp[-1] if guided else None,
                    temperature=refiner_temperature,
                    generator=generator,
                )
                delta = delta[: B * z.shape[1]].reshape(B, z.shape[1], self.cfg.cvae)
                h, w = schedule.latent_hw
                f_hat = f_hat + rearrange(delta, "b (h w) c -> b c h w", h=h, w=w)
            return Generation(f_hat=f_hat, f_hat_tokens=f_hat_tokens, tokens=tokens, refiner_z=z[:B])

    def _cached_step(
        self,
        x: Tensor,
        cond: Tensor,
        mods: list[Tensor],
        rope: Tensor,
        cache: KVCache,
        tail: int | None = None,
    ) -> Tensor:
        """All blocks on the new tokens x (B', n, C) with the KV cache; ``tail``: rows the last block returns."""
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, cond, rope, None, cache, i, tail if i == last else None, mods[i])
        return x

    def _recompute_step(
        self, seq: list[Tensor], cond: Tensor, mods: list[Tensor], rope: Tensor, mask: Tensor, n: int
    ) -> Tensor:
        """Reference step: the whole sequence so far through all blocks with the block-causal mask (no cache);
        returns the last ``n`` rows."""
        x = torch.cat(seq, dim=1)
        L = x.shape[1]
        rope, mask = rope[:, :L], mask[:L, :L]
        for block, mod in zip(self.blocks, mods):
            x = block(x, cond, rope, mask, mod=mod)
        return x[:, -n:]

    def generate_reference(self, lr: Tensor, quantizer: nn.Module, *args, **kwargs) -> Generation:
        """``generate`` without the KV cache (full masked recompute per scale): a slow debugging reference."""
        return self.generate(lr, quantizer, *args, kv_cache=False, **kwargs)
