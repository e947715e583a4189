"""Blur kernels of the Real-ESRGAN degradation model, drawn from an explicit ``torch.Generator``.

Kernel families (Wang et al., Real-ESRGAN, ICCVW 2021, Sec. 3.2), all on a ``k x k`` grid centred at 0 and
normalised to sum 1, with ``q = x^T Sigma^-1 x`` and ``Sigma = R(theta) diag(sx^2, sy^2) R(theta)^T``:

- ``iso`` / ``aniso``: Gaussian ``exp(-q / 2)``;
- ``generalized_iso`` / ``generalized_aniso``: ``exp(-q^beta / 2)`` (beta < 1 heavy tails, > 1 flat top);
- ``plateau_iso`` / ``plateau_aniso``: ``1 / (1 + q^beta)``;
- ``sinc``: the ideal circular low-pass ``wc J1(wc r) / (2 pi r)`` (ringing / overshoot artifacts).

``iso`` kernels use ``sy = sx`` and no rotation; ``aniso`` kernels draw ``sx``, ``sy`` independently and
``theta ~ U(-pi, pi)``. Shape parameters beta are drawn from ``[lo, 1)`` or ``[1, hi]`` with probability 1/2
each, so both sides of the Gaussian are equally likely whatever the range. Kernel sizes are odd, uniform in
``kernel_range``, zero-padded to ``pad_to`` (padding does not change the filter, only the tensor size).

Every random number comes from :class:`Sampler` (a thin wrapper over one ``torch.Generator``), never from the
global RNG, so a seed fixes the kernels exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

KERNEL_TYPES = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)


class Sampler:
    """Scalar random draws (uniform, choice, Bernoulli) from one ``torch.Generator`` (CPU or CUDA)."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def rand(self) -> float:
        g = self.generator
        return float(torch.rand((), generator=g, device=g.device, dtype=torch.float64).item())

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.rand()

    def bernoulli(self, p: float) -> bool:
        return self.rand() < p

    def choice(self, items: Sequence, probs: Sequence[float] | None = None):
        """One item of ``items``, uniformly or with the given (unnormalised) probabilities."""
        if probs is None:
            return items[min(int(self.rand() * len(items)), len(items) - 1)]
        total = float(sum(probs))
        u = self.rand() * total
        acc = 0.0
        for item, p in zip(items, probs):
            acc += p
            if u < acc:
                return item
        return items[-1]

    def randint(self, lo: int, hi: int) -> int:
        """An integer uniform in ``[lo, hi]`` (both inclusive)."""
        return self.choice(list(range(lo, hi + 1)))


# ------------------------------------------------------------------------------------------- deterministic
def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) coordinate grids of a ``size x size`` kernel centred at 0 (float64, x along columns)."""
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return xx, yy


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """``q = x^T Sigma^-1 x`` on the grid, ``Sigma = R diag(sx^2, sy^2) R^T`` with R the rotation by theta."""
    c, s = math.cos(theta), math.sin(theta)
    xx, yy = _grid(size)
    u = c * xx + s * yy  # coordinates in the kernel's principal axes
    v = -s * xx + c * yy
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def _normalise(kernel: torch.Tensor) -> torch.Tensor:
    return kernel / kernel.sum()


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> torch.Tensor:
    """Bivariate Gaussian ``exp(-q/2)`` (isotropic when ``sigma_y`` is None), sums to 1, float64."""
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalise(torch.exp(-0.5 * q))


def generalized_gaussian_kernel(
    size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0, beta: float = 1.0
) -> torch.Tensor:
    """Generalized Gaussian ``exp(-q^beta / 2)``; beta = 1 is the Gaussian. Sums to 1, float64."""
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalise(torch.exp(-0.5 * q.pow(beta)))


def plateau_kernel(
    size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0, beta: float = 1.0
) -> torch.Tensor:
    """Plateau-shaped ``1 / (1 + q^beta)``. Sums to 1, float64."""
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalise(1.0 / (1.0 + q.pow(beta)))


def sinc_kernel(cutoff: float, size: int) -> torch.Tensor:
    """Circular ideal low-pass ``wc J1(wc r) / (2 pi r)`` (value ``wc^2 / (4 pi)`` at r = 0). Sums to 1."""
    if size % 2 == 0:
        raise ValueError(f"sinc kernel size must be odd, got {size}")
    xx, yy = _grid(size)
    r = torch.sqrt(xx**2 + yy**2)
    safe_r = torch.where(r > 0, r, torch.ones_like(r))
    kernel = cutoff * torch.special.bessel_j1(cutoff * safe_r) / (2.0 * math.pi * safe_r)
    kernel = torch.where(r > 0, kernel, torch.full_like(r, cutoff**2 / (4.0 * math.pi)))
    return _normalise(kernel)


def pulse_kernel(size: int) -> torch.Tensor:
    """The identity filter: 1 at the centre, 0 elsewhere."""
    kernel = torch.zeros(size, size, dtype=torch.float64)
    kernel[size // 2, size // 2] = 1.0
    return kernel


def pad_kernel(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad an odd square kernel to ``size x size`` (centred)."""
    k = kernel.shape[-1]
    if k > size or (size - k) % 2:
        raise ValueError(f"cannot pad a {k}x{k} kernel to {size}x{size} (need an odd size <= {size})")
    p = (size - k) // 2
    return torch.nn.functional.pad(kernel, (p, p, p, p))


# ----------------------------------------------------------------------------------------------- random
@dataclass(frozen=True)
class KernelSpec:
    """The distribution one blur stage draws its kernel from (Real-ESRGAN's ``kernel_info`` block)."""

    kernel_list: tuple[str, ...] = KERNEL_TYPES
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    kernel_range: tuple[int, int] = (7, 21)  # odd sizes drawn uniformly in this range
    pad_to: int = 21
    rotation_range: tuple[float, float] = (-math.pi, math.pi)


def draw_kernel_size(sampler: Sampler, kernel_range: tuple[int, int]) -> int:
    lo, hi = kernel_range
    return sampler.choice(list(range(lo, hi + 1, 2)))


def _draw_beta(sampler: Sampler, beta_range: tuple[float, float]) -> float:
    lo, hi = beta_range
    return sampler.uniform(lo, 1.0) if sampler.bernoulli(0.5) else sampler.uniform(1.0, hi)


def draw_mixed_kernel(sampler: Sampler, spec: KernelSpec, size: int) -> torch.Tensor:
    """One kernel of a type drawn from ``spec.kernel_list`` with ``spec.kernel_prob`` (unpadded, float64)."""
    kind = sampler.choice(spec.kernel_list, spec.kernel_prob)
    isotropic = kind.endswith("iso") and not kind.endswith("aniso")
    sigma_x = sampler.uniform(*spec.blur_sigma)
    if isotropic:
        sigma_y, theta = sigma_x, 0.0
    else:
        sigma_y = sampler.uniform(*spec.blur_sigma)
        theta = sampler.uniform(*spec.rotation_range)
    if kind.startswith("generalized"):
        return generalized_gaussian_kernel(size, sigma_x, sigma_y, theta, _draw_beta(sampler, spec.betag_range))
    if kind.startswith("plateau"):
        return plateau_kernel(size, sigma_x, sigma_y, theta, _draw_beta(sampler, spec.betap_range))
    return gaussian_kernel(size, sigma_x, sigma_y, theta)


def sinc_cutoff_range(size: int) -> tuple[float, float]:
    """Real-ESRGAN's cutoff range for a blur-stage sinc: U(pi/3, pi) below size 13, else U(pi/5, pi)."""
    return (math.pi / 3, math.pi) if size < 13 else (math.pi / 5, math.pi)


def draw_blur_kernel(sampler: Sampler, spec: KernelSpec) -> torch.Tensor:
    """A blur-stage kernel: sinc with ``spec.sinc_prob``, else a mixed kernel; padded to ``spec.pad_to``."""
    size = draw_kernel_size(sampler, spec.kernel_range)
    if sampler.bernoulli(spec.sinc_prob):
        kernel = sinc_kernel(sampler.uniform(*sinc_cutoff_range(size)), size)
    else:
        kernel = draw_mixed_kernel(sampler, spec, size)
    return pad_kernel(kernel, spec.pad_to).float()


def draw_final_sinc(
    sampler: Sampler, prob: float, kernel_range: tuple[int, int] = (7, 21), pad_to: int = 21
) -> torch.Tensor:
    """Final-stage filter: with ``prob`` a sinc (size in ``kernel_range``, cutoff U(pi/3, pi)), else pulse."""
    if sampler.bernoulli(prob):
        size = draw_kernel_size(sampler, kernel_range)
        kernel = sinc_kernel(sampler.uniform(math.pi / 3, math.pi), size)
        return pad_kernel(kernel, pad_to).float()
    return pulse_kernel(pad_to).float()
