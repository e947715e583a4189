"""Transformer building blocks of VARSR's ``VAR_RoPE`` with the official parameter names.

* ``SelfAttention``: ``mat_qkv`` (no bias) + ``cat(q_bias, zero_k_bias, v_bias)``; q and k L2-normalised per
  head, ``q *= exp(min(scale_mul_1H11, ln 100))``; 2-D RoPE on q and k (not v); SDPA with ``scale=1``.
* ``AdaLNBlock``: ``x += Attn(LN(x)(1+scale1)+shift1) * gamma1; x += FFN(LN(x)(1+scale2)+shift2) * gamma2``,
  ``ada_lin = Sequential(SiLU, Linear(C, 6C))`` chunked (gamma1, gamma2, scale1, scale2, shift1, shift2); LN
  has no affine parameters, eps 1e-6; FFN = fc1 -> GELU(tanh) -> fc2.
* ``AdaLNBeforeHead``: ``LN(x)(1+scale)+shift`` with ``ada_lin = Sequential(SiLU, Linear(C, 2C))`` (scale,
  shift).
* ``KVCache``: keys (after L2-norm and RoPE) and raw values of every layer, appended scale by scale.

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
    """Per-layer key/value cache for scale-by-scale decoding (tensors (B, H, L, D), concatenated along L).

    Kept deliberately small so that a later performance pass can swap in a preallocated buffer without
    touching the attention code (the contract is ``update(layer, k, v) -> (all_k, all_v)``).
    """

    def __init__(self, num_layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys[layer] is not None:
            k = torch.cat((self.keys[layer], k), dim=2)
            v = torch.cat((self.values[layer], v), dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    @property
    def length(self) -> int:
        return 0 if self.keys[0] is None else int(self.keys[0].shape[2])

    def clear(self) -> None:
        self.keys = [None] * len(self.keys)
        self.values = [None] * len(self.values)


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
    ) -> torch.Tensor:
        B, L, C = x.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x, self.mat_qkv.weight, bias).view(B, L, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, L, D)
        scale_mul = self.scale_mul_1H11.clamp_max(MAX_SCALE_MUL).exp()
        q = F.normalize(q, dim=-1).mul(scale_mul)
        k = F.normalize(k, dim=-1)
        q, k = apply_rope(q, rope), apply_rope(k, rope)
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
    ) -> torch.Tensor:
        gamma1, gamma2, scale1, scale2, shift1, shift2 = self.ada_lin(cond).view(-1, 1, 6, self.dim).unbind(2)
        h = self.ln_wo_grad(x).mul(scale1 + 1).add(shift1)
        x = x + self.drop_path(self.attn(h, rope, attn_mask, cache, layer).mul(gamma1))
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
