"""Training checkpoints: weights in safetensors, optimizer/trainer state via torch.save (loaded weights_only).

Layout under ``<train_dir>/checkpoints/``::

    step_00000100/  model.safetensors  [ema.safetensors]  trainer_state.pt  meta.json
    latest          (text: the name of the newest complete checkpoint)

A checkpoint folder is written under a temporary name and renamed when complete, so a killed run never leaves a
half-written checkpoint that ``latest`` points to.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from harness.core.atomic import write_text


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
    root = Path(train_dir) / "checkpoints"
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    if not (path / "trainer_state.pt").is_file():
        return None
    return Checkpoint(path, int(path.name.split("_")[1]))


def load_trainer_state(ckpt: Checkpoint, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return torch.load(ckpt.trainer_state, map_location=map_location, weights_only=True)


def load_weights(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    return load_file(str(path), device=str(device))


def final_weights(ckpt: Checkpoint | None, where: Path, use_ema: bool = False, prefix: str = "model.") -> dict:
    """The weights to export from a finished run: the checkpoint's (with the EMA parameters laid over them when
    ``use_ema`` and present), ``prefix`` (the ``LossModule`` wrapper's) stripped from the keys."""
    if ckpt is None:
        raise RuntimeError(f"{where}: training wrote no checkpoint to export")
    weights = load_weights(ckpt.model)
    if use_ema and ckpt.ema.is_file():
        weights.update(load_weights(ckpt.ema))
    return {k.removeprefix(prefix): v for k, v in weights.items()}
