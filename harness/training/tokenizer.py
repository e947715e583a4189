"""Trainer ``vqvae``: train the multi-scale residual VQ-VAE tokenizer (for users without VQ-VAE weights).

Experiment YAML::

    train:
      type: vqvae
      arch: tiny                   # VQ-VAE sizes of a named architecture (methods/alignvar/configs.py)
      data: {sources: [{bundled: true}], crop_size: 64, batch_size: 4}
      loop: {steps: 300, log_every: 10}
      optim: {lr: 2.0e-3, weight_decay: 0.0}

The result, ``<train_dir>/tokenizer.safetensors``, is what ``VQVAE.from_state_dict`` (and ``--vqvae`` /
``model.vqvae``) loads: the VQ-VAE architecture is read back from the tensor shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.core.registry import register
from harness.data.training.config import TrainDataConfig
from harness.data.training.stream import TrainData
from harness.training.batches import StepBatches
from harness.training.checkpointing import final_weights
from harness.training.loop import LoopConfig, TrainResult, train_loop
from harness.training.loss_module import LossModule
from harness.training.optim import OptimConfig
from methods.alignvar.configs import get_arch
from methods.alignvar.tokenizer_loss import restart_dead_codes, tokenizer_loss, update_code_usage
from methods.alignvar.vqvae import VQVAE
from methods.alignvar.weights import load_vqvae, read_state_dict, save_safetensors


def _default_data() -> TrainDataConfig:
    return TrainDataConfig(crop_size=64, batch_size=4)


@dataclass
class TokenizerTrainConfig:
    arch: str = "tiny"  # VQ-VAE sizes from a named architecture
    vqvae_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {vocab_size: 1024}
    init_from: str | None = None  # start from an existing VQ-VAE checkpoint
    mse_weight: float = 1.0
    vq_weight: float = 1.0
    data: TrainDataConfig = field(default_factory=_default_data)
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=300, log_every=10, checkpoint_every=100))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3, weight_decay=0.0, warmup_steps=10))
    use_ema: bool = False  # export EMA weights instead of the raw ones (needs loop.ema_decay)
    restart_dead_codes_every: int = 10  # steps between dead-code restarts (0: never); see tokenizer_loss.py
    find_unused_parameters: bool = True  # DDP: phi convs a scale schedule does not use get no gradient


class TokenizerTask:
    """TrainTask: reconstruction + commitment loss of the VQ-VAE on HR crops (no degradation needed)."""

    def __init__(self, cfg: TokenizerTrainConfig, seed: int) -> None:
        vq_kwargs = {**get_arch(cfg.arch).vqvae, **cfg.vqvae_overrides}
        if cfg.init_from:
            vae = load_vqvae(read_state_dict(cfg.init_from), source=cfg.init_from)
        else:
            torch.manual_seed(seed)
            vae = VQVAE(**vq_kwargs)
        vae.requires_grad_(True)
        self.cfg = cfg
        self.find_unused_parameters = cfg.find_unused_parameters
        self.module = LossModule(vae, self._loss)
        self.batches = StepBatches(TrainData(cfg.data, seed=seed))

    def setup(self, device: torch.device) -> None:
        self.device = device

    def make_batch(self, step: int, rank: int, world_size: int, device: torch.device) -> dict[str, Any]:
        return {"img": self.batches.get(step, rank, world_size, device).hr * 2 - 1, "step": step}

    def compute_loss(self, module: torch.nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        return module(batch)  # LossModule (or DDP around it): DDP sees the whole loss computation

    def _loss(self, vae: VQVAE, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        out = tokenizer_loss(vae, batch["img"], mse_weight=self.cfg.mse_weight, vq_weight=self.cfg.vq_weight)
        update_code_usage(vae, out.codes)
        every = self.cfg.restart_dead_codes_every
        restarted = restart_dead_codes(vae, out.residuals) if every and (batch["step"] + 1) % every == 0 else 0
        return out.total, {
            "recon_l1": out.recon_l1.detach(),
            "recon_mse": out.recon_mse.detach(),
            "vq": out.vq.detach(),
            "codebook_usage": out.codebook_usage,
            "codes_restarted": restarted,
        }

    def images_in(self, batch: dict[str, Any]) -> int:
        return batch["img"].shape[0]


@register(
    "trainers",
    "vqvae",
    config=TokenizerTrainConfig,
    description="train the multi-scale residual VQ-VAE tokenizer (reconstruction + commitment loss)",
)
class TokenizerTrainer:
    def __init__(self, cfg: TokenizerTrainConfig) -> None:
        self.cfg = cfg

    def fit(
        self,
        train_dir: Path,
        *,
        seed: int = 0,
        model_spec: Any = None,
        resume: bool = True,
        stop_after: int | None = None,
        output_root: Path | None = None,  # accepted like every trainer's; a tokenizer needs no shared cache
        run_config: dict[str, Any] | None = None,
    ) -> Path:
        """Train; returns the exported tokenizer checkpoint (``<train_dir>/tokenizer.safetensors``)."""
        train_dir = Path(train_dir)
        task = TokenizerTask(self.cfg, seed)
        result: TrainResult = train_loop(
            task,
            self.cfg.loop,
            self.cfg.optim,
            train_dir,
            seed=seed,
            resume=resume,
            stop_after=stop_after,
            meta={"trainer": "vqvae", "arch": self.cfg.arch},
            run_config=run_config,
        )
        return export_tokenizer(result, train_dir, use_ema=self.cfg.use_ema)


def export_tokenizer(result: TrainResult, train_dir: Path, use_ema: bool = False) -> Path:
    out = Path(train_dir) / "tokenizer.safetensors"
    weights = final_weights(result.final_checkpoint, train_dir, use_ema)
    save_safetensors(weights, out, metadata={"kind": "vqvae", "step": str(result.final_checkpoint.step)})
    return out
