"""The VARSR VQ-VAE tokenizer: encoder, multi-scale residual quantizer, decoder (official key layout).

Key layout (``VQVAE.pth['trainer']['vae_local']``): ``encoder.*``, ``decoder.*``, ``quant_conv``,
``post_quant_conv`` (3x3 convs Cvae->Cvae) and ``quantize.*`` (see ``quantizer.py``). Images are in [-1, 1].

    vae = load_vqvae(read_state_dict("VQVAE.pth"), source="VQVAE.pth")   # methods.alignvar.weights
    tokens = vae.img_to_idx(img * 2 - 1, ScaleSchedule.official())
    img = (vae.decode(tokens.f_hat[-1]).clamp(-1, 1) + 1) / 2
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from methods.alignvar.quantizer import MultiScaleQuantizer, TokenizerOutput
from methods.alignvar.scales import ScaleSchedule
from methods.alignvar.vae_blocks import Decoder, Encoder


class VQVAE(nn.Module):
    """VAR/VARSR VQ-VAE. Defaults are the released VARSR configuration (108,948,355 parameters)."""

    def __init__(
        self,
        vocab_size: int = 4096,
        z_channels: int = 32,
        ch: int = 160,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        beta: float = 0.25,
        quant_resi: float = 0.5,
        share_quant_resi: int = 4,
        ema_scales: int = 10,
    ) -> None:
        super().__init__()
        self.config = dict(
            vocab_size=vocab_size,
            z_channels=z_channels,
            ch=ch,
            ch_mult=tuple(ch_mult),
            num_res_blocks=num_res_blocks,
            beta=beta,
            quant_resi=quant_resi,
            share_quant_resi=share_quant_resi,
            ema_scales=ema_scales,
        )
        self.vocab_size, self.z_channels = vocab_size, z_channels
        self.downsample = 2 ** (len(ch_mult) - 1)
        self.encoder = Encoder(ch, ch_mult, num_res_blocks, z_channels)
        self.decoder = Decoder(ch, ch_mult, num_res_blocks, z_channels)
        self.quantize = MultiScaleQuantizer(
            vocab_size, z_channels, beta=beta, quant_resi=quant_resi, share_quant_resi=share_quant_resi,
            ema_scales=ema_scales,
        )  # fmt: skip
        self.quant_conv = nn.Conv2d(z_channels, z_channels, kernel_size=3, stride=1, padding=1)
        self.post_quant_conv = nn.Conv2d(z_channels, z_channels, kernel_size=3, stride=1, padding=1)

    def _check_image(self, img: Tensor) -> None:
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"expected an image batch (B, 3, H, W) in [-1, 1], got shape {tuple(img.shape)}")
        h, w = img.shape[-2:]
        if h % self.downsample or w % self.downsample:
            raise ValueError(
                f"image size {h}x{w} is not a multiple of the VQ-VAE downsampling {self.downsample}; pad or crop"
            )

    def encode(self, img: Tensor) -> Tensor:
        """Continuous latent f = quant_conv(encoder(img)): (B,3,H,W) in [-1,1] -> (B, Cvae, H/16, W/16)."""
        self._check_image(img)
        return self.quant_conv(self.encoder(img))

    def decode(self, f_hat: Tensor) -> Tensor:
        """decoder(post_quant_conv(f_hat)) -> (B, 3, 16h, 16w), NOT clamped (the official code clamps to
        [-1,1])."""
        return self.decoder(self.post_quant_conv(f_hat))

    def reconstruct(self, img: Tensor, schedule: ScaleSchedule | None = None) -> Tensor:
        """Encode, quantise over every scale of ``schedule`` (default ``ScaleSchedule.for_size``), decode:
        (B,3,H,W) in [-1,1] -> the tokenizer's reconstruction, clamped to [-1,1]. Its fidelity to ``img`` is
        the ceiling of any model that generates this tokenizer's tokens."""
        with torch.no_grad():
            f_hat = self.img_to_idx(img, schedule).f_hat[-1]
            return self.decode(f_hat).clamp(-1.0, 1.0)

    def img_to_idx(self, img: Tensor, schedule: ScaleSchedule | None = None) -> TokenizerOutput:
        """Encode and tokenise (VARSR's ``img_to_idxBl``); ``schedule`` defaults to
        ``ScaleSchedule.for_size``."""
        if schedule is None:
            schedule = ScaleSchedule.for_size(int(img.shape[-2]), int(img.shape[-1]), self.downsample)
        with torch.no_grad():
            f = self.encode(img)
        return self.quantize.f_to_idx(f, schedule)
