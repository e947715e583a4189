"""Trainer ``alignvar``: teacher-forced AlignVAR training (CE + lambda * HCC, SCA-gated tokens).

The model is the experiment's ``model:`` block (``AlignVARConfig``: arch, SCA/HCC toggles, ``checkpoint`` to
initialise from, e.g. the official ``VARSR.pth``, and ``vqvae``). The trainer block holds data, loop and
optimiser settings. Paper recipe (8 GPUs): AdamW, global batch 32, lr 5e-5 cosine, 100 epochs, lambda = 1, data
LSDIR + first 10k FFHQ degraded by the Real-ESRGAN pipeline; see README "Training on LSDIR/FFHQ".

Without ``model.vqvae`` the ``tokenizer`` block (a ``vqvae`` trainer config) trains one first; it is cached under
``<output_root>/_tokenizers/<hash of its config and seed>/`` so every cell of a sweep reuses the same tokenizer.

Classes: label 0 = high-quality target (the HR crop). VARSR trains the negative class 1 (the CFG "unconditional"
branch) on low-quality images; with ``negative_fraction > 0`` that share of samples gets label 1 and the degraded
image itself (LR upsampled to HR size) as its target, so image-based CFG has a meaningful negative branch.

Logs (``metrics.csv``, see ``scalar_logs``): CE and HCC overall and per scale at every step that is logged (HCC
at lambda = 0 too); on those steps also HCC's gradient share on the logits and the SCA gate's statistics.

Output: ``<train_dir>/model.safetensors`` (our format, VQ-VAE included, configs in the metadata), loadable with
``methods.alignvar.model.AlignVAR.from_pretrained`` and by the ``alignvar`` method (``checkpoint: ...``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from harness.core.fetch import resolve_optional
from harness.core.mapping import to_dict
from harness.core.registry import register
from harness.data.training.config import TrainDataConfig
from harness.data.training.sampling import mix_seed
from harness.data.training.sources import data_manifest
from harness.data.training.stream import TrainBatch, TrainData
from harness.training.batches import StepBatches
from harness.training.checkpointing import final_weights
from harness.training.loop import LoopConfig, TrainResult, train_loop
from harness.training.loss_module import LossModule
from harness.training.optim import OptimConfig
from harness.training.tokenizer import TokenizerTrainConfig, TokenizerTrainer
from methods.alignvar.configs import AlignVARConfig
from methods.alignvar.hcc import LossOutput, alignvar_losses
from methods.alignvar.model import AlignVAR
from methods.alignvar.sca import gate_statistics


def _default_data() -> TrainDataConfig:
    from harness.data.training.config import DegradationSpec

    return TrainDataConfig(crop_size=64, batch_size=4, degradation=DegradationSpec(name="bicubic"))


@dataclass
class AlignVARTrainConfig:
    data: TrainDataConfig = field(default_factory=_default_data)
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=200, log_every=10, checkpoint_every=100))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, warmup_steps=10))
    tokenizer: TokenizerTrainConfig | None = None  # trained first when model.vqvae is not given
    negative_fraction: float = 0.1  # share of samples trained as class 1 on their degraded image
    freeze: list[str] = field(default_factory=list)  # parameter-name prefixes to freeze, e.g. transformer.con_
    use_ema: bool = False  # export EMA weights (needs loop.ema_decay)
    find_unused_parameters: bool = True  # DDP: parts unused in a step (e.g. refiner with refiner_weight 0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.negative_fraction < 1.0:
            raise ValueError(f"negative_fraction must be in [0, 1), got {self.negative_fraction}")


def scalar_logs(out: LossOutput, hcc_lambda: float) -> dict[str, torch.Tensor]:
    """The ``metrics.csv`` columns of one step (0-d tensors; k = 0-based scale):

    ``ce``, ``hcc`` (logged at every lambda, 0 included), ``refiner``; ``ce_s{k}``, ``hcc_s{k}`` per scale;
    when the step measured gradients: ``hcc_grad_ratio`` = ||dHCC/dlogits|| / ||dCE/dlogits|| (unweighted,
    so a lambda = 0 run tells which lambda gives which share), ``hcc_share`` = lambda * that ratio (HCC's pull
    on the logits relative to CE's) and ``hcc_share_s{k}`` per scale; with SCA on, ``gate_mean`` /
    ``gate_std`` / ``gate_open`` (fraction of gates > 0.5) over all gated tokens and per scale
    (``gate_mean_s{k}``, ..., k >= 1: scale 0 is the class slot).
    """
    logs = {"ce": out.ce.detach(), "hcc": out.hcc.detach()}
    if out.refiner is not None:
        logs["refiner"] = out.refiner.detach()
    for k, v in enumerate(out.ce_per_scale.detach()):
        logs[f"ce_s{k}"] = v
    for k, v in enumerate(out.hcc_per_scale.detach()):
        logs[f"hcc_s{k}"] = v
    if out.gradient_ratio is not None:
        ratio = out.gradient_ratio
        logs["hcc_grad_ratio"] = ratio[-1]
        logs["hcc_share"] = hcc_lambda * ratio[-1]
        for k, v in enumerate(ratio[:-1]):
            logs[f"hcc_share_s{k}"] = hcc_lambda * v
    if out.gate is not None and out.schedule is not None:
        logs.update(gate_statistics(out.gate, out.schedule))
    return logs


class AlignVARTask:
    """TrainTask for ``harness.training.loop``."""

    def __init__(self, model: AlignVAR, cfg: AlignVARTrainConfig, seed: int) -> None:
        for name, param in model.named_parameters():
            if name.startswith("vqvae.") or any(name.startswith(p) for p in cfg.freeze):
                param.requires_grad_(False)
        self.model, self.cfg, self.seed = model, cfg, seed
        self.find_unused_parameters = cfg.find_unused_parameters
        self.module = LossModule(model, self._loss)
        self.batches = StepBatches(TrainData(cfg.data, seed=seed))

    def setup(self, device: torch.device) -> None:
        self.device = device

    def make_batch(self, step: int, rank: int, world_size: int, device: torch.device) -> dict[str, Any]:
        batch: TrainBatch = self.batches.get(step, rank, world_size, device)
        target, lr_up = batch.target * 2 - 1, batch.lr_up * 2 - 1
        gen = torch.Generator().manual_seed(mix_seed(self.seed, "labels", step, rank))
        negative = torch.rand(target.shape[0], generator=gen) < self.cfg.negative_fraction
        negative = negative.to(device)
        label = negative.long()
        target = torch.where(negative[:, None, None, None], lr_up, target)
        sca_gen = torch.Generator(device=device).manual_seed(mix_seed(self.seed, "sca", step, rank))
        done, loop = step + 1, self.cfg.loop
        log = done % loop.log_every == 0 or done == loop.steps  # the loop writes metrics.csv at these steps
        return {"hr": target, "lr_up": lr_up, "label": label, "generator": sca_gen, "log": log}

    def _loss(self, model: AlignVAR, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        out = alignvar_losses(
            model,
            batch["hr"],
            batch["lr_up"],
            batch["label"],
            generator=batch["generator"],
            measure_gradients=bool(batch.get("log", False)),
        )
        return out.total, scalar_logs(out, model.config.hcc.lambda_)

    def compute_loss(self, module: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        return module(batch)

    def images_in(self, batch: dict[str, Any]) -> int:
        return batch["hr"].shape[0]


def tokenizer_cache_dir(output_root: Path, cfg: TokenizerTrainConfig, seed: int) -> Path:
    """The cache folder of a tokenizer: a hash of its config, seed and the content of its training data."""
    content = {
        g: {k: [f["size"], f["sha256"]] for k, f in files.items()} for g, files in data_manifest(cfg.data).items()
    }
    data = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()  # where the data is: no matter
    key = json.dumps({"cfg": to_dict(cfg), "seed": seed, "data": data}, sort_keys=True, default=str)
    return Path(output_root) / "_tokenizers" / hashlib.sha256(key.encode()).hexdigest()[:12]


def ensure_tokenizer(cfg: TokenizerTrainConfig, output_root: Path, seed: int) -> Path:
    """Train (once, under a lock) or reuse the cached tokenizer for this config and seed."""
    out_dir = tokenizer_cache_dir(output_root, cfg, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / "tokenizer.safetensors"
    with FileLock(str(out_dir / ".lock")):
        if not final.is_file():
            TokenizerTrainer(cfg).fit(out_dir, seed=seed)
    return final


@register(
    "trainers",
    "alignvar",
    config=AlignVARTrainConfig,
    description="teacher-forced AlignVAR/VARSR training: CE + lambda*HCC with SCA-gated tokens",
)
class AlignVARTrainer:
    def __init__(self, cfg: AlignVARTrainConfig) -> None:
        self.cfg = cfg

    def build_model(self, model_cfg: AlignVARConfig, output_root: Path, seed: int) -> AlignVAR:
        # hf:// and https:// references (downloaded unless offline) -> local files for the model core
        model_cfg = dataclasses.replace(
            model_cfg, checkpoint=resolve_optional(model_cfg.checkpoint), vqvae=resolve_optional(model_cfg.vqvae)
        )
        if model_cfg.vqvae is None and model_cfg.checkpoint is None:
            if self.cfg.tokenizer is None:
                raise ValueError(
                    "model.vqvae is not set and the trainer has no 'tokenizer' block: give a VQ-VAE checkpoint "
                    "(model.vqvae: path/to/VQVAE.pth) or add train.tokenizer to train one first"
                )
            model_cfg = dataclasses.replace(
                model_cfg, vqvae=str(ensure_tokenizer(self.cfg.tokenizer, output_root, seed))
            )
        torch.manual_seed(seed)
        return AlignVAR.from_config(model_cfg)

    def fit(
        self,
        train_dir: Path,
        *,
        seed: int = 0,
        model_spec: Any = None,
        resume: bool = True,
        stop_after: int | None = None,
        output_root: Path | None = None,
        run_config: dict[str, Any] | None = None,
    ) -> Path:
        """Train the ``model_spec`` (experiment ``model:`` block); returns ``<train_dir>/model.safetensors``."""
        if model_spec is None:
            raise ValueError("the alignvar trainer needs the experiment's 'model:' block (type: alignvar)")
        model_cfg: AlignVARConfig = getattr(model_spec, "options", model_spec)
        train_dir = Path(train_dir)
        model = self.build_model(model_cfg, Path(output_root or train_dir.parent), seed)
        task = AlignVARTask(model, self.cfg, seed)
        result = train_loop(
            task,
            self.cfg.loop,
            self.cfg.optim,
            train_dir,
            seed=seed,
            resume=resume,
            stop_after=stop_after,
            meta={"trainer": "alignvar", "model": to_dict(model_cfg)},
            run_config=run_config,
        )
        return export_model(result, task, train_dir, use_ema=self.cfg.use_ema)


def export_model(result: TrainResult, task: AlignVARTask, train_dir: Path, use_ema: bool = False) -> Path:
    weights = final_weights(result.final_checkpoint, train_dir, use_ema)
    task.model.cpu().load_state_dict(weights, strict=True)
    out = Path(train_dir) / "model.safetensors"
    task.model.save(out, metadata={"step": str(result.final_checkpoint.step)})
    return out
