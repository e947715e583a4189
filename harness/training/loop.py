"""The generic training loop shared by the tokenizer and AlignVAR trainers.

A ``TrainTask`` supplies the module to optimise, a deterministic batch for every step and the loss; this loop does
the rest: AdamW + warm-up/cosine schedule, autocast (bf16/fp16 on GPU), gradient accumulation, gradient clipping,
optional EMA, DDP under torchrun, checkpoints with exact resume, logs (``harness.training.metrics_log``:
metrics.csv, TensorBoard, W&B), progress, and a hard stop on a non-finite loss naming the step and the last good
checkpoint.

Exact resume: every source of randomness is a function of (seed, step, rank): the batch (the task derives it from
the step) and the global torch RNG (re-seeded before every step, for dropout/drop-path). Restoring weights,
optimizer moments, EMA and the step therefore continues the very same loss curve.

Gradient accumulation (``grad_accum`` = A): an optimiser step sums the gradients of A micro-batches, each loss
divided by A, so that with equal micro-batches the step equals one on their union (the losses are means over
the batch). Micro-batch m of rank r is the batch of *virtual rank* r * A + m of world_size * A (data shard,
degradation and RNG seeds alike): one GPU with A = 8 trains on exactly the batches of 8 GPUs with A = 1. DDP
all-reduces once per step (``no_sync`` for the first A - 1 micro-batches). Logged values are the means over the
micro-batches. State a task updates in its forward pass (the tokenizer's code-usage EMA and dead-code restarts)
is updated per micro-batch, as on A separate GPUs, not once per step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch

from harness.core.device import resolve_device
from harness.core.progress import progress
from harness.training import distributed as dist_utils
from harness.training.checkpointing import Checkpoint, resume_point, save_checkpoint
from harness.training.ema import EMA
from harness.training.metrics_log import MetricsLog, WandbConfig
from harness.training.optim import OptimConfig, build_optimizer, lr_at, set_lr

log = logging.getLogger(__name__)


@dataclass
class LoopConfig:
    steps: int = 1000  # optimiser steps (the batch size lives in the data config: per rank)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype on GPU (fp32 on CPU unless bf16)
    # micro-batches per optimiser step: global batch = data.batch_size x GPUs x grad_accum (see the module doc)
    grad_accum: int = 1
    ema_decay: float | None = None
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    device: str = "auto"
    tensorboard: bool = True  # used when the tensorboard package is installed
    logger: Literal["none", "wandb"] = "none"  # an experiment tracker besides metrics.csv and TensorBoard
    wandb: WandbConfig = field(default_factory=WandbConfig)  # with logger: wandb
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.grad_accum < 1:
            raise ValueError(f"grad_accum must be >= 1 (micro-batches per optimiser step), got {self.grad_accum}")
        if self.logger == "wandb" and importlib.util.find_spec("wandb") is None:
            raise ValueError(
                "logger: wandb needs the wandb package, which is not installed: pip install 'alignvar-bench[wandb]' "
                "(or pip install wandb), or set logger: none"
            )


class TrainTask(Protocol):
    """What a trainer plugs into ``train_loop``."""

    module: torch.nn.Module  # the parameters to optimise (frozen helpers such as the VQ-VAE live elsewhere)

    def setup(self, device: torch.device) -> None: ...

    def make_batch(self, step: int, rank: int, world_size: int, device: torch.device) -> Any: ...

    def compute_loss(self, module: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]: ...

    def images_in(self, batch: Any) -> int: ...

    # optional: ``find_unused_parameters`` (bool, default False), passed to DistributedDataParallel for a
    # module with parameters that some steps do not use


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class TrainResult:
    train_dir: Path
    steps_done: int
    final_checkpoint: Checkpoint | None
    losses: dict[int, float] = field(default_factory=dict)  # step -> loss (this process, this invocation)


def step_seed(seed: int, step: int, rank: int) -> int:
    digest = hashlib.sha256(f"{seed}:{step}:{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type != "cuda" and precision == "fp16":
        raise ValueError("precision fp16 needs a CUDA device; use fp32 or bf16 on CPU")
    return torch.autocast(device_type=device.type, dtype=dtype)


def _scalar(value: Any) -> float:
    return float(value.detach().float().item()) if torch.is_tensor(value) else float(value)


def train_loop(
    task: TrainTask,
    loop: LoopConfig,
    optim: OptimConfig,
    train_dir: Path,
    *,
    seed: int = 0,
    resume: bool = True,
    stop_after: int | None = None,
    meta: dict[str, Any] | None = None,
    run_config: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``task.module`` for ``loop.steps`` steps; resumes from ``train_dir`` when a checkpoint exists.

    ``stop_after`` ends this invocation early after that many total steps (simulates an interruption in tests;
    a checkpoint is written there). ``run_config`` (the experiment's config) goes to the experiment tracker.
    """
    train_dir = Path(train_dir)
    device = resolve_device(loop.device, key="train.loop.device")
    info = dist_utils.init_distributed(device)
    device = resolve_device(loop.device, key="train.loop.device", local_rank=info.local_rank if info.enabled else None)
    task.setup(device)
    module = task.module.to(device)
    optimizer = build_optimizer(module, optim)
    ema = EMA(module, loop.ema_decay) if loop.ema_decay else None
    scaler = torch.amp.GradScaler("cuda", enabled=(loop.precision == "fp16" and device.type == "cuda"))

    start = 0
    loaded = resume_point(train_dir, device) if resume else None
    ckpt = loaded.checkpoint if loaded is not None else None
    if loaded is not None:
        state = loaded.trainer_state
        module.load_state_dict(loaded.model, strict=True)
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if ema is not None and loaded.ema is not None:
            ema.load_state_dict(loaded.ema)
        start = int(state["step"])
        if info.is_main:
            log.info("resuming from %s (step %d)", ckpt.path, start)

    wrapped: torch.nn.Module = module
    if info.enabled:
        ddp_kwargs: dict[str, Any] = {"device_ids": [device.index]} if device.type == "cuda" else {}
        ddp_kwargs["find_unused_parameters"] = bool(getattr(task, "find_unused_parameters", False))
        wrapped = torch.nn.parallel.DistributedDataParallel(module, **ddp_kwargs)

    accum = loop.grad_accum
    if info.is_main and (accum > 1 or info.enabled):
        log.info(
            "%d GPU process(es) x %d micro-batch(es) per optimiser step (global batch = data.batch_size x %d)",
            info.world_size, accum, info.world_size * accum,
        )  # fmt: skip
    metrics = None
    if info.is_main:
        tracked = None  # the tracker's run config: the experiment, the git commit, the loop as it runs
        if loop.logger != "none":
            tracked = {"experiment": run_config or {}, "git": _git(), "seed": seed, **(meta or {})}
            tracked.update(loop=dataclasses.asdict(loop), optim=dataclasses.asdict(optim), world_size=info.world_size)
        metrics = MetricsLog.open(
            train_dir, start, tensorboard=loop.tensorboard, logger=loop.logger, wandb=loop.wandb, config=tracked
        )
    end = loop.steps if stop_after is None else min(loop.steps, stop_after)
    desc = f"train {meta['trainer']}" if meta and meta.get("trainer") else "train"  # vqvae, alignvar
    bar = progress(total=loop.steps, initial=start, desc=desc, unit="step", enabled=info.is_main and loop.progress)
    result = TrainResult(train_dir, start, ckpt)
    last_good = ckpt
    t_last, images_since = time.perf_counter(), 0
    module.train()
    try:
        for step in range(start, end):
            lr = lr_at(step, loop.steps, optim)
            set_lr(optimizer, lr)
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            logged = metrics is not None and (done % loop.log_every == 0 or done == end)
            losses, logs = [], {}
            for micro in range(accum):
                vrank, vworld = info.rank * accum + micro, info.world_size * accum  # see the module docstring
                torch.manual_seed(step_seed(seed, step, vrank))
                batch = task.make_batch(step, vrank, vworld, device)
                last = micro == accum - 1
                with contextlib.nullcontext() if last or not info.enabled else wrapped.no_sync():
                    with _autocast(device, loop.precision):
                        loss, micro_logs = task.compute_loss(wrapped, batch)
                    losses.append(_scalar(loss))
                    scaler.scale(loss / accum).backward()  # every rank, finite or not: DDP's all-reduce needs all
                if logged:
                    for key, value in micro_logs.items():
                        logs[key] = logs.get(key, 0.0) + _scalar(value) / accum
                images_since += task.images_in(batch) * info.world_size
            loss_value = losses[0] if accum == 1 else sum(losses) / accum
            if dist_utils.any_rank_true(not math.isfinite(loss_value), device, info):
                where = last_good.path if last_good is not None else "none (no checkpoint written yet)"
                raise TrainingDiverged(
                    f"non-finite loss ({loss_value}) at step {step}; stopping. Last good checkpoint: {where}"
                )
            grad_norm = None
            if optim.grad_clip > 0:
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(module.parameters(), optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update(module)
            result.losses[step] = loss_value
            bar.update(1)
            if logged:
                now = time.perf_counter()
                row = {
                    "step": done,
                    "lr": lr,
                    "loss": loss_value,
                    "images_per_s": images_since / max(now - t_last, 1e-9),
                }
                if grad_norm is not None:
                    row["grad_norm"] = _scalar(grad_norm)
                row.update(logs)
                metrics.log(row)
                bar.set_postfix(loss=f"{loss_value:.4f}", img_s=f"{row['images_per_s']:.1f}")
                t_last, images_since = now, 0
            if done % loop.checkpoint_every == 0 or done == end:
                if info.is_main:
                    last_good = save_checkpoint(
                        train_dir,
                        done,
                        module.state_dict(),
                        {
                            "optimizer": optimizer.state_dict(),
                            "step": done,
                            "scaler": scaler.state_dict(),
                            "seed": seed,
                        },
                        {"seed": seed, **(meta or {})},
                        ema.state_dict() if ema is not None else None,
                        loop.keep_checkpoints,
                    )
                dist_utils.barrier(info)
            result.steps_done = done
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
    result.final_checkpoint = last_good
    if info.enabled:
        dist_utils.cleanup(info)
    return result


def _git() -> dict[str, Any]:
    from harness.core.envinfo import git_info

    return git_info()
