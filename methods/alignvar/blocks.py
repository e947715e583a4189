"""Transformer building blocks of VARSR's ``VAR_RoPE`` with the official parameter names.

* ``SelfAttention``: ``mat_qkv`` (no bias) + ``cat(q_bias, zero_k_bias, v_bias)``; q and k L2-normalised per
  head, ``q *= exp(min(scale_mul_1H11, ln 100))``; 2-D RoPE on q and k (not v); SDPA with ``scale=1``.
* ``AdaLNBlock``: ``x += Attn(LN(x)(1+scale1)+shift1) * gamma1; x += FFN(LN(x)(1+scale2)+shift2) * gamma2``,
  ``ada_lin = Sequential(SiLU, Linear(C, 6C))`` chunked (gamma1, gamma2, scale1, scale2, shift1, shift2); LN
  has no affine parameters, eps 1e-6; FFN = fc1 -> GELU(tanh) -> fc2.
* ``AdaLNBeforeHead``: ``LN(x)(1+scale)+shift`` with ``ada_lin = Sequential(SiLU, Linear(C, 2C))`` (scale,
  shift).
* ``KVCache``: preallocated per-layer buffers of the keys (after L2-norm and RoPE) and raw values, written in
  place scale by scale.

Attention capture: ``SelfAttention`` follows the protocol of ``harness.analysis.attention`` (attributes
``record_attention`` and ``layer_idx``; q, k, mask and scale 1 are handed to the recorder as they enter SDPA).

``zero_k_bias`` is a non-persistent buffer: official checkpoints carry it (always zeros), ours do not; loading
accepts both and refuses a non-zero one (it would mean a different architecture).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from methods.alignvar.rope import apply_rope

# the official clamp value: float32 log(100) converted to a Python float
MAX_SCALE_MUL = float(torch.log(torch.tensor(100.0)))


class KVCache:
    """Preallocated per-layer key/value buffers for scale-by-scale decoding (VAR's ``kv_caching``).

    Layer ``i`` owns two buffers (B, H, ``capacity``, D), allocated on its first ``update`` with the dtype and
    device of the keys it receives (so autocast / bf16 just works); every step writes its new keys and values
    in place at the layer's current length and attention reads a view of the filled part: no ``torch.cat``
    and no re-allocation per scale. Keys are stored after L2-norm and RoPE, values raw (as the official code).

    ``store = False`` (set by the caller before the last scale, whose keys nothing attends to later) makes
    ``update`` return ``cat(cached, new)`` for this one attention call without writing, so ``capacity`` only
    has to cover the sequence up to the second-to-last scale (at d24 / 512 px with CFG: 1.32 GB fp32 instead
    of 1.93 GB). The contract the attention relies on is ``update(layer, k, v) -> (all_k, all_v)``.
    """

    def __init__(self, num_layers: int, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"KV cache capacity must be >= 0, got {capacity}")
        self.capacity = int(capacity)
        self.store = True
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.lengths = [0] * num_layers

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k, v (B, H, n, D) of ``layer`` (or, with ``store`` off, attend-only) -> all keys/values."""
        start, n = self.lengths[layer], int(k.shape[2])
        if not self.store:
            if start == 0:
                return k, v
            return (
                torch.cat((self.keys[layer][:, :, :start], k), dim=2),
                torch.cat((self.values[layer][:, :, :start], v), dim=2),
            )
        if start + n > self.capacity:
            raise ValueError(f"KV cache overflow at layer {layer}: {start} cached + {n} new > capacity {self.capacity}")
        if self.keys[layer] is None:
            B, H, _, D = k.shape
            self.keys[layer] = k.new_empty(B, H, self.capacity, D)
            self.values[layer] = v.new_empty(B, H, self.capacity, v.shape[-1])
        keys, values = self.keys[layer], self.values[layer]
        keys[:, :, start : start + n].copy_(k)
        values[:, :, start : start + n].copy_(v)
        self.lengths[layer] = start + n
        return keys[:, :, : start + n], values[:, :, : start + n]

    @property
    def length(self) -> int:
        """Tokens cached in layer 0 (all layers advance together)."""
        return self.lengths[0] if self.lengths else 0

    def nbytes(self) -> int:
        """Bytes held by the allocated buffers."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)

    def clear(self) -> None:
        """Release every buffer (the cache can be reused from length 0 afterwards)."""
        self.keys = [None] * len(self.keys)
        self.values = [None] * len(self.values)
        self.lengths = [0] * len(self.lengths)
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
        output projection of rows nobody reads (the prefix rows of the last block at inference step 0). On
        CPU and GPU the mask-free call (KV-cached inference) runs SDPA's flash kernel: no (Lq, Lk) matrix.
        """
        B, L, C = x.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x, self.mat_qkv.weight, bias).view(B, L, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, L, D)
        rope_q = rope
        if tail is not None:
            q, rope_q, L = q[:, :, -tail:], rope[:, -tail:], tail
            if attn_mask is not None:
                attn_mask = attn_mask[..., -tail:, :]
        scale_mul = self.scale_mul_1H11.clamp_max(MAX_SCALE_MUL).exp()
        q = F.normalize(q, dim=-1).mul(scale_mul)
        k = F.normalize(k, dim=-1)
        q, k = apply_rope(q, rope_q), apply_rope(k, rope)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        rec = self.record_attention
        if rec is not None and rec.wants(self.layer_idx):
            rec.record(self.layer_idx, q, k, attn_mask, 1.0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=1.0)
        return self.proj(out.transpose(1, 2).reshape(B, L, C))


class FFN(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


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

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        rope: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        tail: int | None = None,
    ) -> torch.Tensor:
        """x (B, L, C) -> (B, L, C), or (B, tail, C) for the last ``tail`` rows only (see ``SelfAttention``)."""
        gamma1, gamma2, scale1, scale2, shift1, shift2 = self.ada_lin(cond).view(-1, 1, 6, self.dim).unbind(2)
        h = self.ln_wo_grad(x).mul(scale1 + 1).add(shift1)
        if tail is not None:
            x = x[:, -tail:]
        x = x + self.drop_path(self.attn(h, rope, attn_mask, cache, layer, tail).mul(gamma1))
        h = self.ln_wo_grad(x).mul(scale2 + 1).add(shift2)
        return x + self.drop_path(self.ffn(h).mul(gamma2))


class AdaLNBeforeHead(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim = dim
        self.ln_wo_grad = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.ada_lin(cond).view(-1, 1, 2, self.dim).unbind(2)
        return self.ln_wo_grad(x).mul(scale + 1).add(shift)


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
        x = F.silu(self.conv_in(x))
        for conv in self.blocks:
            x = F.silu(conv(x))
        return self.conv_out(x)


def init_std(width: int) -> float:
    """The official init std for embeddings / pos_start: sqrt(1 / (3 C))."""
    return math.sqrt(1.0 / (3.0 * width))
