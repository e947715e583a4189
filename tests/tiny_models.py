"""The tiny AlignVAR the model tests share: constructor (random, non-trivial) weights, for structural checks only."""

from __future__ import annotations

import torch

from methods.alignvar.configs import ARCHS, AlignVARConfig, SCAConfig, TransformerConfig
from methods.alignvar.model import AlignVAR


def make_tiny(
    mask_input: str = "laplacian", seed: int = 0, transformer: TransformerConfig | None = None, **config
) -> AlignVAR:
    """Tiny model with constructor weights, eval mode; the SCA gate biased to ~0.5 so that it matters."""
    torch.manual_seed(seed)
    tcfg = transformer or ARCHS["tiny"].transformer
    model = AlignVAR(tcfg, ARCHS["tiny"].vqvae, AlignVARConfig(sca=SCAConfig(mask_input), **config))
    if model.sca is not None:
        with torch.no_grad():
            model.sca.mlp[2].bias.zero_()
            model.sca.mlp[2].weight.normal_(0, 0.5)
    return model.eval()
