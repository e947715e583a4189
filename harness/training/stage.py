"""The two stages of a run: ``train`` (the experiment's ``train:`` + ``model:`` blocks) and ``bench``.

Layout shared by ``run.py train``, ``run.py bench`` and sweep cells::

    <output_root>/<name>/
        config.yaml  env.json              (written by each stage)
        train/       checkpoints/ metrics.csv model.safetensors   (train stage)
        metrics/ summary.* images/ ...     (bench stage)

A method in the experiment can evaluate the checkpoint the train stage produced by naming it ``@trained``::

    methods:
      - {type: alignvar, name: ours, checkpoint: "@trained"}
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

from harness.config.experiment import ExperimentConfig
from harness.config.files import dump_yaml
from harness.core.atomic import write_json, write_text
from harness.core.mapping import ConfigError

TRAINED = "@trained"


def train_dir_of(cfg: ExperimentConfig) -> Path:
    return cfg.run_dir / "train"


def trained_checkpoint(cfg: ExperimentConfig) -> Path:
    """Where the train stage of ``cfg`` leaves its final checkpoint."""
    return train_dir_of(cfg) / "model.safetensors"


def run_train(cfg: ExperimentConfig, *, resume: bool = True, device: str | None = None) -> Path:
    """Run the train stage; returns the exported checkpoint. Resumes from the latest checkpoint by default."""
    if cfg.train is None:
        raise ConfigError(f"{cfg.source}: train: this experiment has no 'train:' block")
    from harness.core.envinfo import collect_env

    trainer = cfg.train.create()
    options = cfg.train.options
    if device is not None and hasattr(options, "loop"):
        options.loop.device = device
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "train_config.yaml", dump_yaml(cfg.to_dict()))
    from harness.core.device import resolve_device

    loop_device = getattr(getattr(options, "loop", None), "device", "auto")
    write_json(run_dir / "train_env.json", collect_env(resolve_device(device or loop_device)))
    return Path(
        trainer.fit(
            train_dir_of(cfg),
            seed=cfg.seed,
            model_spec=cfg.model,
            resume=resume,
            output_root=Path(cfg.output_root),
        )
    )


def _replace_trained(obj: Any, path: str) -> Any:
    if isinstance(obj, str):
        return path if obj == TRAINED else obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: _replace_trained(getattr(obj, f.name), path) for f in dataclasses.fields(obj)}
        return dataclasses.replace(obj, **changes)
    if isinstance(obj, list):
        return [_replace_trained(v, path) for v in obj]
    if isinstance(obj, dict):
        return {k: _replace_trained(v, path) for k, v in obj.items()}
    return obj


def uses_trained(cfg: ExperimentConfig) -> bool:
    """Whether any method option is the string ``@trained``."""
    marker = "\0"
    return any(_replace_trained(spec.options, marker) != spec.options for spec in cfg.methods)


def resolve_trained(cfg: ExperimentConfig, checkpoint: Path | None = None) -> ExperimentConfig:
    """A copy of ``cfg`` whose ``@trained`` method options point at the train stage's checkpoint."""
    if not uses_trained(cfg):
        return cfg
    checkpoint = Path(checkpoint or trained_checkpoint(cfg))
    if not checkpoint.is_file():
        raise ConfigError(
            f"{cfg.source}: methods: a method uses checkpoint '@trained' but {checkpoint} does not exist; "
            f"run the train stage first (python run.py train {cfg.source})"
        )
    out = copy.copy(cfg)
    out.methods = [dataclasses.replace(s, options=_replace_trained(s.options, str(checkpoint))) for s in cfg.methods]
    return out
