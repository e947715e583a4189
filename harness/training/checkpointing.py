"""Training checkpoints: weights in safetensors, optimizer/trainer state via torch.save (loaded weights_only).

Layout under ``<train_dir>/checkpoints/``::

    step_00000100/  model.safetensors  [ema.safetensors]  trainer_state.pt  meta.json
    latest          (text: the name of the newest complete checkpoint)

A checkpoint folder is written under a temporary name and renamed when complete, so a killed run never leaves a
half-written checkpoint that ``latest`` points to. A checkpoint damaged later (a truncated file, a disk error) is
skipped on resume with a warning, in favour of the newest one that reads completely (``resume_point``).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from harness.bench.layout import first_line
from harness.core.atomic import write_text
from methods.alignvar.weights import CheckpointError, read_safetensors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int

    @property
    def model(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def ema(self) -> Path:
        return self.path / "ema.safetensors"

    @property
    def trainer_state(self) -> Path:
        return self.path / "trainer_state.pt"

    def meta(self) -> dict:
        return json.loads((self.path / "meta.json").read_text())


def tensors_for_safetensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous, CPU, de-aliased copies (safetensors refuses shared storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_checkpoint(
    train_dir: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    trainer_state: dict[str, Any],
    meta: dict[str, Any],
    ema_state: dict[str, torch.Tensor] | None = None,
    keep_last: int = 2,
) -> Checkpoint:
    root = Path(train_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    final = root / name
    tmp = root / f".{name}.tmp{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    metadata = {"step": str(step), "format": "alignvar-bench"}
    save_file(tensors_for_safetensors(model_state), str(tmp / "model.safetensors"), metadata=metadata)
    if ema_state is not None:
        save_file(tensors_for_safetensors(ema_state), str(tmp / "ema.safetensors"), metadata=metadata)
    torch.save(trainer_state, tmp / "trainer_state.pt")
    (tmp / "meta.json").write_text(json.dumps({"step": step, **meta}, indent=2, default=str))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_text(root / "latest", name + "\n")
    _prune(root, keep_last, protect=name)
    return Checkpoint(final, step)


def _prune(root: Path, keep_last: int, protect: str) -> None:
    if keep_last <= 0:
        return
    done = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in done[:-keep_last]:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(train_dir: Path) -> Checkpoint | None:
    """The checkpoint ``latest`` names (None when there is none); it may still turn out to be damaged."""
    candidates = checkpoints(train_dir)
    return candidates[0] if candidates else None


def checkpoints(train_dir: Path) -> list[Checkpoint]:
    """Every checkpoint folder, the one ``latest`` names first, then the others from the newest."""
    root = Path(train_dir) / "checkpoints"
    found = {}
    for path in root.glob("step_*"):
        try:
            found[path.name] = Checkpoint(path, int(path.name.split("_")[1]))
        except (IndexError, ValueError):
            continue
    ordered = sorted(found.values(), key=lambda c: c.step, reverse=True)
    pointer = root / "latest"
    try:
        named = found.get(pointer.read_text().strip())
    except OSError:
        named = None
    return ([named] if named else []) + [c for c in ordered if c is not named]


class NoUsableCheckpointError(RuntimeError):
    """Every checkpoint of a train folder is damaged; the message lists each one and why."""


@dataclass
class LoadedCheckpoint:
    checkpoint: Checkpoint
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    trainer_state: dict[str, Any]


def load_checkpoint(ckpt: Checkpoint, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Read every file of ``ckpt`` strictly (a damaged one raises ``CheckpointError`` naming the file)."""
    state = load_trainer_state(ckpt, device)
    if not isinstance(state, dict) or "step" not in state or "optimizer" not in state:
        raise CheckpointError(f"{ckpt.trainer_state}: not a trainer state (no 'step'/'optimizer' entries)")
    model = load_weights(ckpt.model, device)
    ema = load_weights(ckpt.ema, device) if ckpt.ema.is_file() else None
    return LoadedCheckpoint(ckpt, model, ema, state)


def resume_point(train_dir: Path, device: str | torch.device = "cpu") -> LoadedCheckpoint | None:
    """The newest checkpoint that reads completely; damaged newer ones are skipped with a warning.

    None when the folder has no checkpoint; ``NoUsableCheckpointError`` when it has only damaged ones.
    """
    damaged = []
    for ckpt in checkpoints(train_dir):
        try:
            loaded = load_checkpoint(ckpt, device)
        except (CheckpointError, OSError) as exc:
            damaged.append(f"{ckpt.path}: {exc}")
            continue
        if damaged:
            log.warning(
                f"{len(damaged)} newer checkpoint(s) are damaged and were skipped ({'; '.join(damaged)}); "
                f"resuming from {ckpt.path} (step {ckpt.step})"
            )
        return loaded
    if damaged:
        raise NoUsableCheckpointError(
            f"{train_dir}: no usable checkpoint, every one is damaged:\n  "
            + "\n  ".join(damaged)
            + "\npass --force to train afresh"
        )
    return None


def load_trainer_state(ckpt: Checkpoint, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``trainer_state.pt`` via ``torch.load(weights_only=True)``; an unreadable file raises ``CheckpointError``."""
    path = ckpt.trainer_state
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"{path}: not a readable trainer state ({first_line(exc)})") from None


def load_weights(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, read strictly (``CheckpointError`` naming the file when damaged)."""
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: missing")
    weights = read_safetensors(path)
    return {k: v.to(device) for k, v in weights.items()} if str(device) != "cpu" else weights


def final_weights(ckpt: Checkpoint | None, where: Path, use_ema: bool = False, prefix: str = "model.") -> dict:
    """The weights to export from a finished run: the checkpoint's (with the EMA parameters laid over them when
    ``use_ema`` and present), ``prefix`` (the ``LossModule`` wrapper's) stripped from the keys."""
    if ckpt is None:
        raise RuntimeError(f"{where}: training wrote no checkpoint to export")
    weights = load_weights(ckpt.model)
    if use_ema and ckpt.ema.is_file():
        weights.update(load_weights(ckpt.ema))
    return {k.removeprefix(prefix): v for k, v in weights.items()}
