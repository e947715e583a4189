"""AdamW with VAR-style weight-decay groups and a warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

# Parameters whose names contain one of these get no weight decay (VAR/VARSR convention), as do 1-D tensors.
NO_DECAY_KEYWORDS = (
    "bias",
    "cls_token",
    "start_token",
    "task_token",
    "cfg_uncond",
    "pos_embed",
    "pos_1LC",
    "pos_start",
    "start_pos",
    "lvl_embed",
    "gamma",
    "beta",
    "ada_gss",
    "moe_bias",
    "scale_mul",
    "diffloss",
)


@dataclass
class OptimConfig:
    lr: float = 5e-5  # peak learning rate (paper: 5e-5)
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05
    schedule: Literal["cosine", "constant", "linear"] = "cosine"
    warmup_steps: int = 0
    warmup_start_ratio: float = 0.005  # lr at step 0 = peak * ratio (VARSR wp0)
    min_lr_ratio: float = 0.0  # floor of the decay, as a fraction of the peak
    grad_clip: float = 2.0  # max global grad norm; 0 disables
    fused: bool | None = None  # fused AdamW kernel; None = on when every parameter is on CUDA

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


def no_weight_decay(name: str, param: torch.Tensor) -> bool:
    return param.ndim <= 1 or any(key in name for key in NO_DECAY_KEYWORDS)


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, split into decay / no-decay groups."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if no_weight_decay(name, param) else decay).append(param)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    params = decay + no_decay
    fused = cfg.fused if cfg.fused is not None else all(p.is_cuda for p in params)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused or None)


def lr_at(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then cosine / linear decay / constant."""
    peak = cfg.lr
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        start = peak * cfg.warmup_start_ratio
        return start + (peak - start) * step / cfg.warmup_steps
    if cfg.schedule == "constant":
        return peak
    span = max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, max(0.0, (step - cfg.warmup_steps) / span))
    floor = peak * cfg.min_lr_ratio
    if cfg.schedule == "linear":
        return floor + (peak - floor) * (1.0 - progress)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
