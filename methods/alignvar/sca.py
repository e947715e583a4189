"""Spatial Consistency Autoregression (SCA): structure-gated transformer input tokens (AlignVAR, CVPR 2026).

The paper: a structure map s = |Laplacian(I_LR)| is resized to every scale and normalised (s_k), a light MLP
predicts a gate m_k = sigmoid(MLP([r_k, s_k])) per token, and the tokens become (1 + m_k) * r_k.

Our reading (no public code exists; docs/ASSUMPTIONS.md lists every choice next to the paper's words):

* **Which tokens.** r_k are the scale-k *input tokens* of the transformer, i.e. the latent tokens
  ``area_down(F_{k-1}, (h_k, w_k))`` (Cvae channels) that ``word_embed`` turns into the scale-k input: the
  teacher-forcing tokens in training, the tokens built from the generated ones at inference. In VAR these are
  the *cumulative* quantised latent seen at scale k, not the residual r_k the paper's symbol suggests (the
  transformer has no residual input). They are gated *before* ``word_embed`` (the MLP input and the gated
  tensor are the same tokens). The class token (scale 1's slot) is not gated, and the accumulated latent f_hat
  that is decoded is never gated.
* **MLP input.** [r_k (Cvae channels), s_k (1 channel)] -> Linear -> GELU -> Linear -> 1 (the latent token,
  not its C-wide embedding: the same information, ``word_embed`` being linear, and a gate independent of the
  transformer width).
* **Structure map** (``mask_input``), always computed from the LR image as the model sees it (upsampled to the
  output size, [-1, 1]) -> [0, 1] -> grayscale (ITU-R BT.601 luma), replicate padding:

  - ``laplacian`` (the paper): |3x3 Laplacian [[0,1,0],[1,-4,1],[0,1,0]]|;
  - ``sobel``: the gradient magnitude sqrt(Gx^2 + Gy^2) of the 3x3 Sobel operators (a first-order edge map);
  - ``random`` (the paper's "random input" ablation): U[0, 1) noise from an explicit generator;
  - ``none``: SCA off; the model does not build this module at all, so it is exactly VARSR.

  then area-resized to (h_k, w_k) and min-max normalised *per image and per scale* to [0, 1] (a constant map,
  e.g. the 1x1 scale, becomes 0).
* **Initialisation.** The last layer's weights are small (std 1e-3) and its bias is ``init_bias``
  (``SCAConfig``): 0 by default, so m starts at 1/2 where the sigmoid's slope is largest (1/4) and the gate
  can move within a training schedule; -6 gives a near-identity start (m = 0.0025, slope 0.0025) that
  Adam barely moves (docs/ASSUMPTIONS.md, "SCA gate initialisation").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from methods.alignvar.scales import ScaleSchedule

MaskInput = Literal["laplacian", "sobel", "random", "none"]
MASK_INPUTS: tuple[str, ...] = ("laplacian", "sobel", "random", "none")
STRUCTURE_INPUTS: tuple[str, ...] = ("laplacian", "sobel", "random")  # the ones that build a gate
LUMA = (0.299, 0.587, 0.114)
LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))
SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))  # d/dx (columns); SOBEL_Y is its transpose


def luma01(img: Tensor) -> Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, 1, H, W) BT.601 luma in [0, 1]."""
    x = (img.float() + 1) * 0.5
    return sum(w * x[:, c : c + 1] for c, w in enumerate(LUMA))


def _correlate3x3(gray: Tensor, *kernels: tuple[tuple[float, ...], ...]) -> Tensor:
    """(B, 1, H, W) correlated with each 3x3 kernel (replicate padding) -> (B, len(kernels), H, W)."""
    weight = torch.tensor(kernels, dtype=gray.dtype, device=gray.device).view(len(kernels), 1, 3, 3)
    return F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), weight)


def laplacian_magnitude(img: Tensor) -> Tensor:
    """|3x3 Laplacian| of the grayscale image: (B, 3, H, W) in [-1, 1] -> (B, 1, H, W), replicate padding."""
    return _correlate3x3(luma01(img), LAPLACIAN).abs()


def sobel_magnitude(img: Tensor) -> Tensor:
    """Sobel gradient magnitude sqrt(Gx^2 + Gy^2) of the grayscale image: (B, 3, H, W) in [-1, 1] ->
    (B, 1, H, W), replicate padding."""
    sobel_y = tuple(zip(*SOBEL_X))
    g = _correlate3x3(luma01(img), SOBEL_X, sobel_y)
    return g.pow(2).sum(dim=1, keepdim=True).sqrt()


def minmax_per_image(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Min-max normalise every image of (B, 1, h, w) to [0, 1]; a constant image maps to 0."""
    flat = x.flatten(1)
    lo, hi = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    span = hi - lo
    out = torch.where(span > eps, (flat - lo) / span.clamp_min(eps), torch.zeros_like(flat))
    return out.view_as(x)


def structure_maps(
    lr: Tensor, schedule: ScaleSchedule, mask_input: MaskInput, generator: torch.Generator | None = None
) -> list[Tensor]:
    """Normalised guidance s_k for every scale k, each (B, h_k*w_k, 1) row-major (pure function, no gradient).

    ``lr`` (B, 3, H, W) in [-1, 1] at the model input size. ``random`` draws U[0, 1) noise at (B, 1, H, W)
    from ``generator`` (drawn on the generator's device, then moved).
    """
    with torch.no_grad():
        if mask_input == "laplacian":
            s = laplacian_magnitude(lr)
        elif mask_input == "sobel":
            s = sobel_magnitude(lr)
        elif mask_input == "random":
            shape = (lr.shape[0], 1, lr.shape[-2], lr.shape[-1])
            src = generator.device if generator is not None else lr.device
            s = torch.rand(shape, generator=generator, device=src).to(lr.device)
        else:
            raise ValueError(
                f"structure maps need mask_input {', '.join(map(repr, STRUCTURE_INPUTS))}, got {mask_input!r}"
            )
        out = []
        for hw in schedule.patch_nums:
            sk = minmax_per_image(F.interpolate(s, size=tuple(hw), mode="area"))
            out.append(rearrange(sk, "b c h w -> b (h w) c"))
        return out


class SCAGate(nn.Module):
    """The SCA mask generator M_phi: m = sigmoid(MLP([r, s])) per token (keys ``mlp.0.*``, ``mlp.2.*``)."""

    def __init__(self, cvae: int, hidden: int = 64, mask_input: MaskInput = "laplacian", init_bias: float = 0.0):
        super().__init__()
        if mask_input == "none":
            raise ValueError("mask_input 'none' means SCA off: do not build an SCAGate")
        if mask_input not in STRUCTURE_INPUTS:
            raise ValueError(f"unknown mask_input {mask_input!r}; valid choices: {', '.join(MASK_INPUTS)}")
        self.cvae, self.mask_input = cvae, mask_input
        self.mlp = nn.Sequential(nn.Linear(cvae + 1, hidden), nn.GELU(), nn.Linear(hidden, 1))
        nn.init.normal_(self.mlp[2].weight, std=1e-3)
        nn.init.constant_(self.mlp[2].bias, init_bias)

    def guidance(self, lr: Tensor, schedule: ScaleSchedule, generator: torch.Generator | None = None) -> list[Tensor]:
        """Per-scale normalised structure maps s_k (B, h_k*w_k, 1) for this module's ``mask_input``."""
        return structure_maps(lr, schedule, self.mask_input, generator)

    def gate(self, tokens: Tensor, s: Tensor) -> Tensor:
        """m = sigmoid(MLP([tokens, s])): tokens (B, n, Cvae), s (B, n, 1) -> (B, n, 1)."""
        feats = torch.cat([tokens, s.to(tokens.dtype)], dim=-1)
        return torch.sigmoid(self.mlp(feats))

    def forward(
        self, lr: Tensor, x_in: Tensor, schedule: ScaleSchedule, generator: torch.Generator | None = None
    ) -> Tensor:
        """Gate for the whole teacher-forcing input x_in (B, L - 1, Cvae) (scales 2..K) -> m (B, L - 1, 1)."""
        maps = self.guidance(lr, schedule, generator)
        s = torch.cat(maps[1:], dim=1) if len(maps) > 1 else x_in.new_zeros(x_in.shape[0], 0, 1)
        if s.shape[1] != x_in.shape[1]:
            raise ValueError(f"x_in has {x_in.shape[1]} tokens but schedule {schedule} gives {s.shape[1]} inputs")
        return self.gate(x_in, s)

    def gate_fn(self, maps: list[Tensor]) -> Callable[[int, Tensor], Tensor]:
        """A ``(k, tokens) -> m`` closure over precomputed maps, for ``VARTransformer.generate``."""
        return lambda k, tokens: self.gate(tokens, maps[k])


def gate_statistics(gate: Tensor, schedule: ScaleSchedule, threshold: float = 0.5) -> dict[str, Tensor]:
    """Per-scale statistics of a gate m (B, L - 1, 1) over the teacher-forcing input (scales 2..K).

    Returns 0-d tensors (detached) keyed ``gate_mean_s{k}``, ``gate_std_s{k}`` (population std over the batch
    and positions) and ``gate_open_s{k}`` (fraction of tokens with m > ``threshold``) for k = 1..K-1 (0-based
    scale index; scale 0 is the class slot, never gated), plus the same over all gated tokens as
    ``gate_mean``, ``gate_std``, ``gate_open``.
    """
    g = gate.detach().float().flatten(1) if gate.dim() == 3 else gate.detach().float()
    if g.shape[1] != schedule.total_tokens - 1:
        raise ValueError(f"gate has {g.shape[1]} tokens; schedule {schedule} has {schedule.total_tokens - 1} inputs")
    out: dict[str, Tensor] = {}
    for k, (b, e) in enumerate(schedule.begin_ends[1:], start=1):
        part = g[:, b - 1 : e - 1]
        out[f"gate_mean_s{k}"] = part.mean()
        out[f"gate_std_s{k}"] = part.std(unbiased=False)
        out[f"gate_open_s{k}"] = (part > threshold).float().mean()
    if g.numel():
        out["gate_mean"], out["gate_std"] = g.mean(), g.std(unbiased=False)
        out["gate_open"] = (g > threshold).float().mean()
    return out
