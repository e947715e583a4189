"""Gaussian diffusion maths of the VARSR/MAR refiner (improved-DDPM: cosine schedule, respacing, learned
range).

Rebuilt from the IDDPM / DiT / MAR conventions the official code uses (``create_diffusion``,
``space_timesteps``,
``SpacedDiffusion``, ``p_mean_variance`` with ``LEARNED_RANGE`` and epsilon prediction). Schedules are
computed in float64 and gathered per timestep to float32, like the official ``_extract_into_tensor``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def cosine_betas(num_steps: int = 1000, max_beta: float = 0.999) -> list[float]:
    """IDDPM cosine schedule: beta_i = min(1 - abar((i+1)/T) / abar(i/T), max_beta),
    abar(t)=cos((t+.008)/1.008*pi/2)^2."""

    def abar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return [min(1 - abar((i + 1) / num_steps) / abar(i / num_steps), max_beta) for i in range(num_steps)]


def space_timesteps(num_timesteps: int, section_counts: str | list[int]) -> set[int]:
    """IDDPM's respacing: split [0, T) into equal sections and take evenly strided steps in each.

    ``space_timesteps(1000, "10")`` -> {0, 111, 222, ..., 888, 999} (stride (1000-1)/(10-1) = 111, rounded).
    """
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = int(section_counts[len("ddim") :])
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == desired:
                    return set(range(0, num_timesteps, stride))
            raise ValueError(f"cannot create exactly {desired} steps with an integer stride from {num_timesteps}")
        section_counts = [int(x) for x in section_counts.split(",")]
    size_per = num_timesteps // len(section_counts)
    extra = num_timesteps % len(section_counts)
    start_idx = 0
    all_steps: list[int] = []
    for i, section_count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if size < section_count:
            raise ValueError(f"cannot divide section of {size} steps into {section_count}")
        frac_stride = 1 if section_count <= 1 else (size - 1) / (section_count - 1)
        cur_idx = 0.0
        for _ in range(section_count):
            all_steps.append(start_idx + round(cur_idx))
            cur_idx += frac_stride
        start_idx += size
    return set(all_steps)


@dataclass
class DiffusionSchedule:
    """All per-step coefficients of a (possibly respaced) diffusion, float64 on CPU.

    ``timestep_map[i]`` is the original (1000-step) timestep that respaced step ``i`` corresponds to; the
    network is always called with original timesteps.
    """

    betas: Tensor
    timestep_map: Tensor  # int64

    def __post_init__(self) -> None:
        b = self.betas.double()
        alphas = 1.0 - b
        self.alphas_cumprod = torch.cumprod(alphas, 0)
        self.alphas_cumprod_prev = torch.cat([b.new_ones(1), self.alphas_cumprod[:-1]])
        ac, acp = self.alphas_cumprod, self.alphas_cumprod_prev
        self.sqrt_alphas_cumprod = ac.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - ac).sqrt()
        self.sqrt_recip_alphas_cumprod = (1.0 / ac).sqrt()
        self.sqrt_recipm1_alphas_cumprod = (1.0 / ac - 1).sqrt()
        self.posterior_variance = b * (1.0 - acp) / (1.0 - ac)
        pv = self.posterior_variance
        # log of the posterior variance, with the (zero) variance at step 0 replaced by that of step 1
        self.posterior_log_variance_clipped = torch.log(torch.cat([pv[1:2], pv[1:]])) if len(pv) > 1 else pv.log()
        self.posterior_mean_coef1 = b * acp.sqrt() / (1.0 - ac)
        self.posterior_mean_coef2 = (1.0 - acp) * alphas.sqrt() / (1.0 - ac)
        self.log_betas = b.log()

    @property
    def num_timesteps(self) -> int:
        return int(self.betas.shape[0])

    def to(self, device: torch.device | str) -> DiffusionSchedule:
        """This schedule with every coefficient on ``device`` (the same values; copies cached per device), so
        a GPU sampling loop gathers coefficients without a host-to-device copy (and sync) per step."""
        device = torch.device(device)
        if self.betas.device == device:
            return self
        cache = self.__dict__.setdefault("_device_copies", {})
        if device not in cache:
            moved = object.__new__(type(self))  # (a copy made under inference mode serves training too)
            with torch.inference_mode(False):
                moved.__dict__.update(
                    {
                        k: v.to(device) if isinstance(v, Tensor) else v
                        for k, v in self.__dict__.items()
                        if k != "_device_copies"
                    }
                )
            cache[device] = moved
        return cache[device]

    @classmethod
    def cosine(cls, num_steps: int = 1000, respacing: str | None = None) -> DiffusionSchedule:
        """Cosine schedule of ``num_steps``, optionally respaced (``"10"`` -> 10 sampling steps)."""
        # explicit device: the schedule is CPU float64 whatever the default device
        base = torch.tensor(cosine_betas(num_steps), dtype=torch.float64, device="cpu")
        if not respacing:
            return cls(base, torch.arange(num_steps, device="cpu"))
        use = space_timesteps(num_steps, respacing)
        base_ac = torch.cumprod(1.0 - base, 0)
        last, new_betas, tmap = 1.0, [], []
        for i in range(num_steps):
            if i in use:
                ac = float(base_ac[i])
                new_betas.append(1.0 - ac / last)
                last = ac
                tmap.append(i)
        return cls(
            torch.tensor(new_betas, dtype=torch.float64, device="cpu"),
            torch.tensor(tmap, dtype=torch.int64, device="cpu"),
        )

    # ------------------------------------------------------------------------------------------- maths
    @staticmethod
    def _at(arr: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """arr[t] as float32 column (N, 1) on ``like``'s device (the official ``_extract_into_tensor``)."""
        return arr.to(like.device)[t.to(like.device)].float().view(-1, *([1] * (like.ndim - 1)))

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        return (
            self._at(self.sqrt_alphas_cumprod, t, x0) * x0 + self._at(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )

    def q_posterior(self, x0: Tensor, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and clipped log-variance of q(x_{t-1} | x_t, x_0)."""
        mean = self._at(self.posterior_mean_coef1, t, xt) * x0 + self._at(self.posterior_mean_coef2, t, xt) * xt
        return mean, self._at(self.posterior_log_variance_clipped, t, xt)

    def predict_x0(self, xt: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return (
            self._at(self.sqrt_recip_alphas_cumprod, t, xt) * xt
            - self._at(self.sqrt_recipm1_alphas_cumprod, t, xt) * eps
        )

    def p_mean_variance(
        self, xt: Tensor, t: Tensor, eps: Tensor, var_values: Tensor, clip_denoised: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Model mean, log-variance and x0 prediction for epsilon prediction with a LEARNED_RANGE variance:
        log var = frac * log(beta_t) + (1 - frac) * log(posterior var), frac = (v + 1) / 2."""
        min_log = self._at(self.posterior_log_variance_clipped, t, xt)
        max_log = self._at(self.log_betas, t, xt)
        frac = (var_values + 1) / 2
        log_var = frac * max_log + (1 - frac) * min_log
        x0 = self.predict_x0(xt, t, eps)
        if clip_denoised:
            x0 = x0.clamp(-1, 1)
        mean, _ = self.q_posterior(x0, xt, t)
        return mean, log_var, x0


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_std_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_log_likelihood(x: Tensor, means: Tensor, log_scales: Tensor) -> Tensor:
    """Log-likelihood of ``x`` in [-1, 1] under a Gaussian discretised to 256 bins (IDDPM's decoder NLL)."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = _approx_std_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = _approx_std_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))
