"""VARSR's diffusion refiner: a per-token MLP diffusion model (MAR's ``SimpleMLPAdaLN``) that samples the
continuous residual the last scale's discrete token leaves unexplained.

The transformer holds it as ``self.diffloss`` so the official keys ``diffloss.net.*`` load unchanged.
Conventions (VARSR ``models/diffloss.py`` on MAR/IDDPM): targets are divided by ``vae_scale`` = 0.6 in
training and samples multiplied by it; cosine schedule with 1000 training steps; sampling respaced to 10 steps
(t = 0, 111, ..., 999); epsilon prediction plus a learned-range variance (network output 2 x 32 channels); x0
clamped to [-1, 1] while sampling. Image-based CFG: the condition batch is [cond; negative] and eps = (1 + s)
eps_cond - s eps_neg with the same noise for both halves.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from methods.alignvar.refiner_diffusion import DiffusionSchedule, discretized_gaussian_log_likelihood, normal_kl
from methods.alignvar.sampling import Generators, split_generators


def _randn(shape: tuple[int, ...], generator: Generators, device: torch.device) -> Tensor:
    """Standard normal noise drawn on the generator's own device (so a CPU generator also works for CUDA).

    A sequence of generators (one per image) draws equal consecutive groups of rows, one group each.
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        parts = split_generators(generator, shape[0])
        return torch.cat([_randn((sl.stop - sl.start, *shape[1:]), g, device) for sl, g in parts])
    src = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=src, dtype=torch.float32).to(device)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class TimestepEmbedder(nn.Module):
    """Sinusoidal embedding [cos, sin] of size 256 (max period 1e4) -> Linear -> SiLU -> Linear (keys
    ``mlp.0/2``)."""

    def __init__(self, hidden: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    @staticmethod
    def sinusoidal(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(self.sinusoidal(t, self.freq_dim))


class ResBlock(nn.Module):
    """x + gate * MLP(modulate(LN(x), shift, scale)); adaLN chunks in the order (shift, scale, gate)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.in_ln = nn.LayerNorm(channels, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(channels, channels), nn.SiLU(), nn.Linear(channels, channels))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(channels, 3 * channels))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        shift, scale, gate = self.adaLN_modulation(y).chunk(3, dim=-1)
        return x + gate * self.mlp(modulate(self.in_ln(x), shift, scale))


class FinalLayer(nn.Module):
    """LN (no affine) -> modulate(shift, scale) -> Linear to ``out_channels``."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(channels, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(channels, out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(channels, 2 * channels))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(y).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class SimpleMLPAdaLN(nn.Module):
    """eps/variance network: input_proj(x) through ``depth`` AdaLN ResBlocks conditioned on
    time_embed(t) + cond_embed(c); outputs ``out_channels`` (= 2 x in: epsilon, then variance
    interpolation)."""

    def __init__(self, in_channels: int, width: int, out_channels: int, z_channels: int, depth: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.time_embed = TimestepEmbedder(width)
        self.cond_embed = nn.Linear(z_channels, width)
        self.input_proj = nn.Linear(in_channels, width)
        self.res_blocks = nn.ModuleList([ResBlock(width) for _ in range(depth)])
        self.final_layer = FinalLayer(width, out_channels)

    def forward(self, x: Tensor, t: Tensor, c: Tensor) -> Tensor:
        h = self.input_proj(x)
        y = self.time_embed(t) + self.cond_embed(c)
        for block in self.res_blocks:
            h = block(h, y)
        return self.final_layer(h, y)


class DiffusionRefiner(nn.Module):
    """Diffusion head over per-token latents: ``net`` (keys ``net.*``), a 1000-step cosine schedule for
    training
    and a respaced one (``num_sampling_steps``) for sampling.

    Args: ``target_channels`` (Cvae = 32), ``z_channels`` (transformer width C), ``width``/``depth`` of the
    MLP (1024 / 6), ``num_sampling_steps`` (10), ``vae_scale`` (0.6: data are divided by it for the
    diffusion).
    """

    def __init__(
        self,
        target_channels: int = 32,
        z_channels: int = 1536,
        width: int = 1024,
        depth: int = 6,
        num_sampling_steps: int = 10,
        vae_scale: float = 0.6,
        diffusion_steps: int = 1000,
    ) -> None:
        super().__init__()
        self.target_channels, self.vae_scale = target_channels, vae_scale
        self.net = SimpleMLPAdaLN(target_channels, width, 2 * target_channels, z_channels, depth)
        self.train_schedule = DiffusionSchedule.cosine(diffusion_steps)
        self.sample_schedule = DiffusionSchedule.cosine(diffusion_steps, respacing=str(num_sampling_steps))

    def forward_net(self, x: Tensor, t: Tensor, c: Tensor) -> Tensor:
        """Raw network output (N, 2*target): channels [:target] = eps, [target:] = variance interpolation in
        [-1,1].
        ``t`` holds original (0..999) timesteps."""
        return self.net(x, t, c)

    # ------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(
        self,
        z: Tensor,
        cfg: float | None,
        temperature: float = 1.0,
        generator: Generators = None,
        clip_denoised: bool = True,
    ) -> Tensor:
        """Sample residual latents (N, target_channels), already multiplied by ``vae_scale``.

        ``cfg=None``: unguided, every row of ``z`` (N, C) is a condition. ``cfg=s`` (a float, VARSR uses 6.0):
        ``z`` is [cond; negative] (N even), each step uses eps = (1 + s) eps_cond - s eps_neg on a shared
        noise trajectory, and the guided sample is returned in BOTH halves (rows i and i + N/2 are equal), so
        callers may take the first half like the official code. ``cfg=0`` equals the unguided conditional
        sample.

        IDDPM ancestral sampling over the respaced steps (999, 888, ..., 0): x0 = predict_x0(x_t, eps),
        clamped to [-1,1] (``clip_denoised``), x_{t-1} ~ N(posterior mean, learned-range variance) with the
        noise multiplied by ``temperature`` (no noise at the last step). All noise comes from ``generator`` (or
        one generator per image: equal consecutive groups of rows, see ``sampling.split_generators``)
        (torch's global RNG is never used when a generator is given).
        """
        if z.ndim != 2:
            raise ValueError(f"refiner condition must be (N, C), got shape {tuple(z.shape)}")
        n = z.shape[0]
        guided = cfg is not None
        if guided and n % 2:
            raise ValueError(f"guided sampling needs z = [cond; negative] with an even row count, got {n}")
        rows = n // 2 if guided else n
        sched, tc = self.sample_schedule.to(z.device), self.target_channels
        x = _randn((rows, tc), generator, z.device)
        for i in reversed(range(sched.num_timesteps)):
            t_resp = torch.full((rows,), i, dtype=torch.int64, device=z.device)
            t_orig = sched.timestep_map[t_resp]
            if guided:
                out = self.forward_net(torch.cat([x, x]), torch.cat([t_orig, t_orig]), z).float()
                eps_c, eps_n = out[:rows, :tc], out[rows:, :tc]
                eps = (1 + cfg) * eps_c - cfg * eps_n
                var_values = out[:rows, tc:]
            else:
                out = self.forward_net(x, t_orig, z).float()
                eps, var_values = out[:, :tc], out[:, tc:]
            mean, log_var, _ = sched.p_mean_variance(x, t_resp, eps, var_values, clip_denoised)
            if i > 0:
                noise = _randn(tuple(x.shape), generator, x.device)
                x = mean + torch.exp(0.5 * log_var) * noise * temperature
            else:
                x = mean
        x = x * self.vae_scale
        return torch.cat([x, x]) if guided else x

    # ------------------------------------------------------------------------------------------- training
    def training_loss(
        self,
        target: Tensor,
        z: Tensor,
        mul: int = 4,
        generator: torch.Generator | None = None,
        include_vb: bool = True,
    ) -> Tensor:
        """Diffusion loss for residual ``target`` (N, target_channels) given conditions ``z`` (N, C).

        VARSR/MAR convention: the target is divided by ``vae_scale``, every row is repeated ``mul`` times with
        independent timesteps t ~ U{0..999} and noise, and the loss is mean(MSE(eps) + VB), where VB is
        IDDPM's variational bound term (in bits/dim) for the learned variance, computed with the mean frozen
        (so it only trains the variance channels); at t = 0 it is the discretised-Gaussian decoder NLL.
        ``include_vb=False`` gives the plain epsilon MSE. ``z`` keeps its gradient (the loss trains the
        transformer too).
        """
        if target.ndim != 2 or z.ndim != 2 or target.shape[0] != z.shape[0]:
            raise ValueError(
                f"target (N, {self.target_channels}) and z (N, C) expected, got {tuple(target.shape)} and "
                f"{tuple(z.shape)}"
            )
        x0 = (target / self.vae_scale).repeat(mul, 1)
        c = z.repeat(mul, 1)
        sched, tc = self.train_schedule.to(x0.device), self.target_channels
        n = x0.shape[0]
        src = generator.device if generator is not None else x0.device
        t = torch.randint(0, sched.num_timesteps, (n,), generator=generator, device=src).to(x0.device)
        noise = _randn(tuple(x0.shape), generator, x0.device).to(x0.dtype)
        xt = sched.q_sample(x0, t, noise)
        out = self.forward_net(xt, t, c)
        eps, var_values = out[:, :tc], out[:, tc:]
        loss = (noise - eps).pow(2).mean(dim=1)
        if include_vb:
            true_mean, true_log_var = sched.q_posterior(x0, xt, t)
            mean, log_var, _ = sched.p_mean_variance(xt, t, eps.detach(), var_values, clip_denoised=False)
            kl = normal_kl(true_mean, true_log_var, mean, log_var).mean(dim=1) / math.log(2.0)
            nll = -discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_var).mean(dim=1) / math.log(2.0)
            loss = loss + torch.where(t == 0, nll, kl)
        return loss.mean()
