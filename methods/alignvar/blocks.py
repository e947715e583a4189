"""Transformer building blocks of VARSR's ``VAR_RoPE`` with the official parameter names.

* ``SelfAttention``: ``mat_qkv`` (no bias) + ``cat(q_bias, zero_k_bias, v_bias)``; q and k L2-normalised per
  head, ``q *= exp(min(scale_mul_1H11, ln 100))``; 2-D RoPE on q and k (not v); SDPA with ``scale=1``.
* ``AdaLNBlock``: ``x += Attn(LN(x)(1+scale1)+shift1) * gamma1; x += FFN(LN(x)(1+scale2)+shift2) * gamma2``,
  ``ada_lin = Sequential(SiLU, Linear(C, 6C))`` chunked (gamma1, gamma2, scale1, scale2, shift1, shift2); LN
  has no affine parameters, eps 1e-6; FFN = fc1 -> GELU(tanh) -> fc2.
* ``AdaLNBeforeHead``: ``LN(x)(1+scale)+shift`` with ``ada_lin = Sequential(SiLU, Linear(C, 2C))`` (scale,
  shift).
* Block-causal attention takes either a dense boolean mask (SDPA) or a FlexAttention ``BlockMask``
  (``flex_attention``: only the unmasked 128 x 128 tiles are computed; the teacher-forced pass with
  ``attention="flex"``, see ``VARTransformer.forward``).
* ``KVCache``: one preallocated buffer of every layer's keys (after L2-norm and RoPE) and raw values, written in
  place scale by scale.

Without autograd (inference) the blocks update their fresh temporaries in place (LN modulation, residual adds,
GELU, q/k scaling and RoPE): the same arithmetic with fewer buffers (docs/PERFORMANCE.md).

Attention capture: ``SelfAttention`` follows the protocol of ``harness.analysis.attention`` (attributes
``record_attention`` and ``layer_idx``; q, k, mask and scale 1 are handed to the recorder as they enter SDPA).

``zero_k_bias`` is a non-persistent buffer: official checkpoints carry it (always zeros), ours do not; loading
accepts both and refuses a non-zero one (it would mean a different architecture).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from methods.alignvar.rope import apply_rope

# the official clamp value: float32 log(100) converted to a Python float
MAX_SCALE_MUL = float(torch.log(torch.tensor(100.0)))


_COMPILED_FLEX = None


def flex_attention_call(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: BlockMask) -> torch.Tensor:
    """``flex_attention(q, k, v, block_mask, scale=1)`` for (B, H, L, D) q/k/v, compiled on GPU.

    On CUDA the fused kernel needs ``torch.compile`` (compiled once per process, static shapes); elsewhere it
    runs eagerly (torch 2.14: forward only on CPU, and it materialises the scores, so it is a reference there,
    not a speed-up). Under autocast q, k and v are cast to the autocast dtype, as SDPA's autocast rule does
    (flex_attention itself has no autocast rule and needs one dtype).
    """
    global _COMPILED_FLEX
    device = q.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    else:
        k, v = k.to(q.dtype), v.to(q.dtype)
    if device == "cuda":
        if _COMPILED_FLEX is None:
            _COMPILED_FLEX = torch.compile(flex_attention, dynamic=False)
        return _COMPILED_FLEX(q, k, v, block_mask=block_mask, scale=1.0)
    with warnings.catch_warnings():  # eager on purpose here: torch's "called without torch.compile()" note
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        return flex_attention(q, k, v, block_mask=block_mask, scale=1.0)


class KVCache:
    """Preallocated key/value buffer for scale-by-scale decoding (VAR's ``kv_caching``), written in place.

    One tensor (layers, 2, B, ``capacity``, H, D) is allocated at the first ``update`` with the dtype and device
    of the keys it receives (so autocast / bf16 just works). Every step writes its new keys and values at the
    layer's current length and attention reads a view of the filled part: no ``torch.cat`` and no allocation
    per scale. Keys are stored after L2-norm and RoPE, values raw (as the official code). The memory layout is
    token-major (B, L, H, D), the layout the attention produces q/k/v in, so writing is a plain copy and SDPA
    (which takes strided (B, H, L, D) views) returns its output already in (B, L, C) order. A single
    allocation is also returned to the OS as a whole on ``clear`` (per-layer buffers of a few tens of MB can
    stay in the C heap and inflate the process's later peak).

    ``store = False`` (set by the caller before the last scale, whose keys nothing attends to later) makes
    ``update`` return ``cat(cached, new)`` for this one attention call without writing, so ``capacity`` only
    has to cover the sequence up to the second-to-last scale (at d24 / 512 px with CFG: 1.32 GB fp32 instead
    of 1.93 GB). The contract the attention relies on is ``update(layer, k, v) -> (all_k, all_v)``, all
    (B, H, L, D) (views).
    """

    def __init__(self, num_layers: int, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"KV cache capacity must be >= 0, got {capacity}")
        self.num_layers, self.capacity = num_layers, int(capacity)
        self.store = True
        self.buffer: torch.Tensor | None = None
        self.lengths = [0] * num_layers

    def _allocate(self, k: torch.Tensor) -> torch.Tensor:
        B, H, _, D = k.shape
        self.buffer = k.new_empty(self.num_layers, 2, B, self.capacity, H, D)
        return self.buffer

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k, v (B, H, n, D) of ``layer`` (or, with ``store`` off, attend-only) -> all keys/values."""
        start, n = self.lengths[layer], int(k.shape[2])
        if not self.store:
            if start == 0:
                return k, v
            keys, values = self.layer(layer)
            return torch.cat((keys, k), dim=2), torch.cat((values, v), dim=2)
        if start + n > self.capacity:
            raise ValueError(f"KV cache overflow at layer {layer}: {start} cached + {n} new > capacity {self.capacity}")
        buffer = self.buffer if self.buffer is not None else self._allocate(k)
        want = (buffer.shape[2], buffer.shape[4], buffer.shape[5])
        if (k.shape[0], k.shape[1], k.shape[3]) != want or k.dtype != buffer.dtype:
            raise ValueError(
                f"KV cache holds (B, H, D) = {want} {buffer.dtype}; layer {layer} sent {tuple(k.shape)} {k.dtype}"
            )
        buffer[layer, 0, :, start : start + n].copy_(k.transpose(1, 2))
        buffer[layer, 1, :, start : start + n].copy_(v.transpose(1, 2))
        self.lengths[layer] = start + n
        return self.layer(layer)

    @property
    def length(self) -> int:
        """Tokens cached in layer 0 (all layers advance together)."""
        return self.lengths[0] if self.lengths else 0

    def layer(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Layer i's filled keys and values as (B, H, length, D) views, or None before the first write."""
        if self.buffer is None:
            return None
        n = self.lengths[i]
        return self.buffer[i, 0, :, :n].transpose(1, 2), self.buffer[i, 1, :, :n].transpose(1, 2)

    def nbytes(self) -> int:
        """Bytes held by the buffer."""
        return 0 if self.buffer is None else self.buffer.numel() * self.buffer.element_size()

    def clear(self) -> None:
        """Release the buffer (the cache can be reused from length 0 afterwards)."""
        self.buffer = None
        self.lengths = [0] * self.num_layers
        self.store = True


class DropPath(nn.Module):
    """Stochastic depth on the residual branch (per sample), identity in eval mode or at p = 0."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, layer_idx: int = 0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        # attention-capture protocol of harness.analysis.attention (an AttentionRecorder sets this)
        self.layer_idx = layer_idx
        self.record_attention = None
        self.scale_mul_1H11 = nn.Parameter(torch.full((1, heads, 1, 1), 4.0).log())
        self.mat_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("zero_k_bias", torch.zeros(dim), persistent=False)
        self.proj = nn.Linear(dim, dim)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001 - torch signature
        zk = state_dict.pop(prefix + "zero_k_bias", None)
        if zk is not None and bool(torch.any(zk != 0)):
            raise ValueError(f"{prefix}zero_k_bias is not all zeros: this checkpoint has a key bias we do not model")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(
        self,
        x: torch.Tensor,
        rope: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        tail: int | None = None,
    ) -> torch.Tensor:
        """x (B, L, C) -> (B, L, C); with ``tail`` only the last ``tail`` queries are computed -> (B, tail, C).

        Keys and values always cover all L tokens (they go to the cache); ``tail`` saves the attention and
        output projection of rows nobody reads (the prefix rows of the last block at inference step 0).
        q and k are normalised, scaled and rotated together in the token-major layout (B, L, 2, H, D) the
        projection produces (no permuted copies); SDPA takes (B, H, L, D) views and its output is then already
        (B, L, H, D)-contiguous. On CPU and GPU the mask-free call (KV-cached inference) runs SDPA's flash
        kernel: no (Lq, Lk) matrix is materialised.
        """
        B, L, C = x.shape
        H, D = self.heads, self.head_dim
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x, self.mat_qkv.weight, bias).view(B, L, 3, H, D)
        # q *= exp(min(scale_mul, ln 100)) after the L2 norm; k is multiplied by exactly 1 (bit-identical)
        scale_mul = self.scale_mul_1H11.clamp_max(MAX_SCALE_MUL).exp().view(1, 1, 1, H, 1)
        factor = torch.cat((scale_mul, torch.ones_like(scale_mul)), dim=2)
        qk = F.normalize(qkv[:, :, :2], dim=-1)
        qk = qk.mul(factor) if torch.is_grad_enabled() else qk.mul_(factor)
        qk = apply_rope(qk, rope, seq_dim=1, inplace=True)  # (B, L, 2, H, D); a fresh tensor, rotated in place
        q, k, v = qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
        if tail is not None:
            q, L = q[:, :, -tail:], tail
            if attn_mask is not None:
                attn_mask = attn_mask[..., -tail:, :]
        if cache is not None:
            k, v = cache.update(layer, k, v)
        rec = self.record_attention
        if rec is not None and rec.wants(self.layer_idx):
            rec.record(self.layer_idx, q, k, attn_mask, 1.0)
        if isinstance(attn_mask, BlockMask):
            if tail is not None or cache is not None:
                raise ValueError("a FlexAttention BlockMask serves the full teacher-forced pass only (no cache/tail)")
            out = flex_attention_call(q, k, v, attn_mask)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=1.0)
        return self.proj(out.transpose(1, 2).reshape(B, L, C))


class FFN(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if torch.is_grad_enabled():
            h = self.act(h)
        else:  # inference: GELU in place on the fresh (B, L, 4C) tensor (same kernel, no second buffer)
            h = torch.ops.aten.gelu_(h, approximate=self.act.approximate)
        return self.fc2(h)


class AdaLNBlock(nn.Module):
    """One VARSR transformer block (self-attention + FFN), conditioned by AdaLN on the class embedding."""

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        eps: float = 1e-6,
        drop_path: float = 0.0,
        layer_idx: int = 0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.attn = SelfAttention(dim, heads, layer_idx)
        self.ffn = FFN(dim, round(dim * mlp_ratio))
        self.ln_wo_grad = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.drop_path = DropPath(drop_path)

    def modulation(self, cond: torch.Tensor) -> torch.Tensor:
        """AdaLN parameters (B, 1, 6, C) of a condition (B, C): gamma1, gamma2, scale1, scale2, shift1, shift2."""
        return _released_check(self).ada_lin(cond).view(-1, 1, 6, self.dim)

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        rope: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        tail: int | None = None,
        mod: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, L, C) -> (B, L, C), or (B, tail, C) for the last ``tail`` rows only (see ``SelfAttention``).

        ``mod``: ``self.modulation(cond)`` computed once by the caller (inference reuses it at every scale
        instead of re-reading the 6C x C ``ada_lin`` weights per step); ``None`` computes it here.
        """
        if mod is None:
            mod = self.modulation(cond)
        gamma1, gamma2, scale1, scale2, shift1, shift2 = mod.unbind(2)
        # without autograd, update the fresh intermediates in place (same arithmetic: fewer buffers)
        inplace = not torch.is_grad_enabled()
        h = _modulate(self.ln_wo_grad(x), scale1, shift1, inplace)
        if tail is not None:
            x = x[:, -tail:]
        x = self._residual(x, self.attn(h, rope, attn_mask, cache, layer, tail), gamma1, inplace)
        h = _modulate(self.ln_wo_grad(x), scale2, shift2, inplace)
        return self._residual(x, self.ffn(h), gamma2, inplace)

    def _residual(self, x: torch.Tensor, branch: torch.Tensor, gamma: torch.Tensor, inplace: bool) -> torch.Tensor:
        """``x + drop_path(branch * gamma)``; in place on ``branch`` (b + x == x + b exactly)."""
        if inplace:
            return self.drop_path(branch.mul_(gamma)).add_(x)
        return x + self.drop_path(branch.mul(gamma))


def _modulate(h: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, inplace: bool) -> torch.Tensor:
    """AdaLN ``h * (1 + scale) + shift`` (in place on a fresh ``h`` when ``inplace``)."""
    if inplace:
        return h.mul_(scale + 1).add_(shift)
    return h.mul(scale + 1).add(shift)


ADALN_RELEASED = (
    "the AdaLN projections (ada_lin) were released for inference (AlignVAR.release_training_weights): only the "
    "per-class parameters of generation are kept; teacher-forced forward, training and saving need the weights: "
    "reload the checkpoint"
)


def freeze_modulation(module: nn.Module, conds: torch.Tensor) -> None:
    """Inference only: store ``module.modulation(conds)`` for every class (``conds``: (num_classes, C), the
    class embeddings) as the buffer ``modulation_table`` (num_classes, 1, k, C) and free ``ada_lin``.

    The AdaLN parameters are a function of the class only, so generation reads rows of this table instead of the
    k*C x C projection (1.36 GB of the 4.4 GB at d24). Computed on all classes in one call: for a CFG batch of
    one image (classes 0 and 1) it is the same matrix product as ``modulation(class_emb(labels))``, bit for bit.
    """
    with torch.no_grad(), torch.autocast(device_type=conds.device.type, enabled=False):
        table = module.modulation(conds.float())
    module.register_buffer("modulation_table", table, persistent=False)
    module.ada_lin = None


def _released_check(module: nn.Module) -> nn.Module:
    if module.ada_lin is None:
        raise RuntimeError(ADALN_RELEASED)
    return module


class AdaLNBeforeHead(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim = dim
        self.ln_wo_grad = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def modulation(self, cond: torch.Tensor) -> torch.Tensor:
        """AdaLN parameters (B, 1, 2, C) of a condition (B, C): scale, shift."""
        return _released_check(self).ada_lin(cond).view(-1, 1, 2, self.dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, mod: torch.Tensor | None = None) -> torch.Tensor:
        scale, shift = (self.modulation(cond) if mod is None else mod).unbind(2)
        return _modulate(self.ln_wo_grad(x), scale, shift, not torch.is_grad_enabled())


class ConditioningStem(nn.Module):
    """ControlNet-style LR stem (``con_embedding``): image (B, 3, H, W) -> (B, C, H/16, W/16).

    conv_in 3x3 -> SiLU, then for every consecutive channel pair (a, b): 3x3 a->a -> SiLU, 3x3 a->b stride 2
    -> SiLU, then conv_out 3x3 -> C without activation. With the official channels (32, 128, 256, 512, 1536)
    the ``blocks`` are 8 convs with stride 2 at indices 1, 3, 5, 7 (a 1/16 grid, one token per latent
    position).
    """

    def __init__(self, out_channels: int, in_channels: int = 3, channels: tuple[int, ...] = (32, 128, 256, 512, 1536)):
        super().__init__()
        self.downsample = 2 ** (len(channels) - 1)
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        blocks = []
        for a, b in zip(channels[:-1], channels[1:]):
            blocks.append(nn.Conv2d(a, a, 3, padding=1))
            blocks.append(nn.Conv2d(a, b, 3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(channels[-1], out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inplace = not torch.is_grad_enabled()  # SiLU in place on each fresh conv output at inference
        x = F.silu(self.conv_in(x), inplace=inplace)
        for conv in self.blocks:
            x = F.silu(conv(x), inplace=inplace)
        return self.conv_out(x)


def init_std(width: int) -> float:
    """The official init std for embeddings / pos_start: sqrt(1 / (3 C))."""
    return math.sqrt(1.0 / (3.0 * width))
