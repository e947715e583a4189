"""Encoder / decoder of the VAR / VARSR VQ-VAE (taming/LDM layout; key names match the official checkpoint).

Architecture (``ch=160, ch_mult=(1,1,2,2,4)`` in the release): conv_in -> per level ``num_res_blocks`` ResNet
blocks (+ single-head self-attention after each block of the lowest-resolution level) -> stride-2 downsample
(all levels but the last) -> mid (block, attention, block) -> GroupNorm, SiLU, conv_out. The decoder mirrors
it with
``num_res_blocks + 1`` blocks per level and nearest-x2 + conv upsampling. GroupNorm(32 groups, eps 1e-6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def normalize(channels: int) -> nn.GroupNorm:
    """GroupNorm with gcd(32, channels) groups: 32 for every official width (multiples of 32); the ``tiny8``
    tokenizer's widths 12-96 get groups of 3 channels. The parameters are per channel, so checkpoints do not
    record the group count."""
    return nn.GroupNorm(num_groups=math.gcd(32, channels), num_channels=channels, eps=1e-6, affine=True)


class Upsample2x(nn.Module):
    """Nearest x2 then a 3x3 conv (key ``conv``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Downsample2x(nn.Module):
    """Pad right/bottom by one, then a 3x3 stride-2 conv without padding (key ``conv``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class ResnetBlock(nn.Module):
    """GN-SiLU-conv3x3, GN-SiLU-conv3x3, plus a 1x1 ``nin_shortcut`` when the channel count changes."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = normalize(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.nin_shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            h = self.conv1(F.silu(self.norm1(x)))
            h = self.conv2(F.silu(self.norm2(h)))
            return self.nin_shortcut(x) + h
        # inference: SiLU and the residual add in place on fresh tensors (same arithmetic; at the 512-px level
        # every avoided buffer is 168 MB of page-faulted memory)
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        return h.add_(self.nin_shortcut(x))


class AttnBlock(nn.Module):
    """Single-head spatial self-attention: GN, 1x1 conv to q,k,v (key ``qkv``), softmax(q k^T / sqrt(C)) v,
    1x1 ``proj_out``, residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.norm = normalize(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)
        # (B, 1, HW, C) single head; SDPA's default scale is C^-0.5, the official w_ratio.
        q, k, v = (t.transpose(1, 2).unsqueeze(1) for t in (q, k, v))
        h = F.scaled_dot_product_attention(q, k, v).squeeze(1).transpose(1, 2).reshape(B, C, H, W)
        if torch.is_grad_enabled():
            return x + self.proj_out(h)
        return self.proj_out(h).add_(x)


class _Level(nn.Module):
    """One resolution level: ``block`` and ``attn`` lists plus an optional ``downsample``/``upsample``."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class _Mid(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """Image (B, 3, H, W) -> (B, z_channels, H/2^(L-1), W/2^(L-1)), L = len(ch_mult)."""

    def __init__(
        self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, z_channels: int, in_channels: int = 3
    ) -> None:
        super().__init__()
        self.num_resolutions, self.num_res_blocks = len(ch_mult), num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, kernel_size=3, stride=1, padding=1)
        in_mult = (1, *ch_mult)
        self.down = nn.ModuleList()
        block_in = ch
        for lvl in range(self.num_resolutions):
            level = _Level()
            block_in, block_out = ch * in_mult[lvl], ch * ch_mult[lvl]
            for _ in range(num_res_blocks):
                level.block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if lvl == self.num_resolutions - 1:
                    level.attn.append(AttnBlock(block_in))
            if lvl != self.num_resolutions - 1:
                level.downsample = Downsample2x(block_in)
            self.down.append(level)
        self.mid = _Mid(block_in)
        self.norm_out = normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, z_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for lvl, level in enumerate(self.down):
            for i, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[i](h)
            if lvl != self.num_resolutions - 1:
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latent (B, z_channels, h, w) -> image (B, 3, h*2^(L-1), w*2^(L-1)), unclamped."""

    def __init__(
        self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, z_channels: int, out_channels: int = 3
    ) -> None:
        super().__init__()
        self.num_resolutions = len(ch_mult)
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, kernel_size=3, stride=1, padding=1)
        self.mid = _Mid(block_in)
        levels: list[_Level] = []
        for lvl in reversed(range(self.num_resolutions)):
            level = _Level()
            block_out = ch * ch_mult[lvl]
            for _ in range(num_res_blocks + 1):
                level.block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if lvl == self.num_resolutions - 1:
                    level.attn.append(AttnBlock(block_in))
            if lvl != 0:
                level.upsample = Upsample2x(block_in)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)  # index = level, as in the official key names
        self.norm_out = normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        """Runs channels-last (NHWC): oneDNN's and cuDNN's fast layout for these 3x3 convs and GroupNorms (the
        512-px decode is ~10 % faster on a 2-core CPU; equal to NCHW up to float rounding). The output is
        returned in the standard contiguous layout."""
        h = self.mid(self.conv_in(z.contiguous(memory_format=torch.channels_last)))
        for lvl in reversed(range(self.num_resolutions)):
            level = self.up[lvl]
            for i, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[i](h)
            if lvl != 0:
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h), inplace=not torch.is_grad_enabled())).contiguous()
