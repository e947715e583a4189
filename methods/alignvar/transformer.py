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

``generate`` (``generation.py``) runs KV-cached autoregressive inference with VARSR's image-based CFG; ``forward``
with the full block-causal mask gives the same logits when fed the generated tokens (tested).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from methods.alignvar.blocks import (
    ADALN_RELEASED,
    AdaLNBeforeHead,
    AdaLNBlock,
    ConditioningStem,
    freeze_modulation,
    init_std,
)
from methods.alignvar.configs import TransformerConfig
from methods.alignvar.generation import Generation, generate
from methods.alignvar.rope import rope_table
from methods.alignvar.scales import ScaleSchedule


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
            from methods.alignvar.refiner import DiffusionRefiner

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
            schedule = ScaleSchedule.for_size(H, W)
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
        C = self.cfg.width
        grid = self.pos_start[:, :-1].reshape(1, train_hw[0], train_hw[1], C).permute(0, 3, 1, 2)
        grid = F.interpolate(grid.float(), size=tuple(prefix_hw), mode="bicubic", align_corners=False)
        return torch.cat([grid.flatten(2).transpose(1, 2).to(self.pos_start.dtype), self.pos_start[:, -1:]], dim=1)

    def rope_for(self, schedule: ScaleSchedule, device: torch.device) -> Tensor:
        table = rope_table(
            self.cfg.head_dim,
            schedule.latent_hw,
            schedule.patch_nums,
            schedule.latent_hw,
            self.cfg.rope_theta,
        )
        return table.to(device)

    def _levels(self, schedule: ScaleSchedule) -> list[int]:
        return level_rows(schedule.num_scales, self.cfg.num_levels)

    @staticmethod
    def block_causal_mask(schedule: ScaleSchedule, n_prefix: int, device: torch.device) -> Tensor:
        """Boolean (L_tot, L_tot) mask, True = may attend: scale(i) >= scale(j), context = scale 0."""
        counts = [n_prefix + 1] + [h * w for h, w in schedule.patch_nums[1:]]
        scale_id = torch.repeat_interleave(
            torch.arange(len(counts), device=device), torch.tensor(counts, device=device)
        )
        return scale_id[:, None] >= scale_id[None, :]

    def _context(self, lr: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, int]:
        """(context tokens (B', n_p+1, C) incl. pos_start + lvl row 0, AdaLN condition (B', C), n_p).

        ``labels`` may hold a multiple of the LR batch (CFG): the LR tokens are then repeated.
        """
        stem = self.con_embedding(lr)  # (B, C, h_p, w_p)
        prefix_hw = (int(stem.shape[-2]), int(stem.shape[-1]))
        prefix = stem.flatten(2).transpose(1, 2)
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
        """Teacher-forced logits (B, L, V) for all K scales (block-causal mask over the whole sequence).

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
        mask = self.block_causal_mask(schedule, n_prefix, x.device)
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
    generate = generate  # KV-cached next-scale sampling with CFG (methods/alignvar/generation.py)

    def generate_reference(self, lr: Tensor, quantizer: nn.Module, *args, **kwargs) -> Generation:
        """``generate`` without the KV cache (full masked recompute per scale): a slow debugging reference."""
        return self.generate(lr, quantizer, *args, kv_cache=False, **kwargs)
