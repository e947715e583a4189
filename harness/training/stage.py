"""The two stages of a run: ``train`` (the experiment's ``train:`` + ``model:`` blocks) and ``bench``.

Layout shared by ``run.py train``, ``run.py bench`` and sweep cells::

    <output_root>/<name>/
        train/       identity.json config.yaml env.json checkpoints/ metrics.csv model.safetensors result.json
        config.yaml env.json identity.json metrics/ summary.* images/ ...     (bench stage)

A train folder is resumed only by a run with the same identity (config, data, code); ``result.json`` marks a
finished one; ``--force`` trains afresh in a staging folder that replaces the old run once it has finished.

A method in the experiment can evaluate the checkpoint the train stage produced by naming it ``@trained``::

    methods:
      - {type: alignvar, name: ours, checkpoint: "@trained"}
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from harness.config.experiment import ExperimentConfig
from harness.config.files import dump_yaml
from harness.core import runfolder
from harness.core.atomic import write_json, write_text
from harness.core.identity import (
    IDENTITY_FILE,
    IdentityMismatchError,
    RunIdentity,
    format_differences,
    read_identity,
    write_identity,
)
from harness.core.mapping import ConfigError, to_dict
from harness.core.runlock import RunLock

log = logging.getLogger(__name__)

TRAINED = "@trained"
RESULT_FILE = "result.json"  # written when a train run has finished: {"checkpoint": <file in train/>}


def train_dir_of(cfg: ExperimentConfig) -> Path:
    return cfg.run_dir / "train"


def trained_checkpoint(cfg: ExperimentConfig) -> Path:
    """Where the train stage of ``cfg`` leaves its final checkpoint."""
    return train_dir_of(cfg) / "model.safetensors"


# Files of a train folder (``train/``) the harness writes; anything else in it is left alone
TRAIN_ENTRIES = (
    "checkpoints",
    "metrics.csv",
    "tensorboard",
    "model.safetensors",
    "tokenizer.safetensors",
    IDENTITY_FILE,
    RESULT_FILE,
    "config.yaml",
    "env.json",
    "wandb",  # logger: wandb (its files, unless WANDB_DIR is set)
    "wandb.json",  # the id of the W&B run, to resume it
)


def _data_configs(options: Any, where: str = "train") -> list[tuple[str, Any]]:
    """Every ``TrainDataConfig`` in a trainer's options (``data``, and ``tokenizer.data``), with its key path."""
    from harness.data.training.config import TrainDataConfig

    found = []
    for f in dataclasses.fields(options) if dataclasses.is_dataclass(options) else ():
        value = getattr(options, f.name)
        if isinstance(value, TrainDataConfig):
            found.append((f"{where}.{f.name}", value))
        elif dataclasses.is_dataclass(value):
            found += _data_configs(value, f"{where}.{f.name}")
    return found


def training_data_manifest(options: Any) -> dict[str, Any]:
    """The data manifest of a trainer's sources (``harness.data.training.sources.data_manifest`` of every
    ``data:`` block, the tokenizer's included); listing them checks them before anything is trained."""
    from harness.data.training.sources import data_manifest

    data: dict[str, Any] = {}
    for where, cfg in _data_configs(options):
        data.update(data_manifest(cfg, where))
    return data


# Loop/data keys that do not change the weights a run produces (how it is shown, logged, kept, or where it runs)
NOT_IDENTITY = ("device", "progress", "tensorboard", "logger", "wandb", "log_every", "checkpoint_every",
                "keep_checkpoints", "num_workers")  # fmt: skip
# Keys added later, left out at the value that gives the earlier behaviour: runs made before still resume
LEFT_OUT_AT = {"grad_accum": 1}


def _without(data: Any, keys: tuple[str, ...]) -> Any:
    if isinstance(data, dict):
        return {
            k: _without(v, keys)
            for k, v in data.items()
            if k not in keys and not (k in LEFT_OUT_AT and v == LEFT_OUT_AT[k])
        }
    if isinstance(data, list):
        return [_without(v, keys) for v in data]
    return data


def train_identity(cfg: ExperimentConfig) -> RunIdentity:
    """What a train run is made from: seed, ``model:`` and ``train:`` blocks (``NOT_IDENTITY`` keys left out),
    the files of its training data, the code."""
    config = {"seed": cfg.seed, "model": to_dict(cfg.model), "train": _without(to_dict(cfg.train), NOT_IDENTITY)}
    return RunIdentity("train", config, training_data_manifest(cfg.train.options))


def _train_owned(run_dir: Path) -> dict[str, str]:
    return {rel: "train" for entry in TRAIN_ENTRIES for rel in runfolder.files_under(run_dir, f"train/{entry}")}


def _has_run(train_dir: Path) -> bool:
    return (train_dir / "checkpoints").is_dir() or (train_dir / RESULT_FILE).is_file()


def run_train(
    cfg: ExperimentConfig,
    *,
    force: bool = False,
    device: str | None = None,
    progress: bool | None = None,
    stop_after: int | None = None,
) -> Path:
    """Run the train stage; returns the exported checkpoint.

    The run folder is locked; ``train/identity.json`` records what the run is made from. A train folder holding
    a run is resumed from its latest good checkpoint only when its identity equals this one (otherwise
    ``IdentityMismatchError`` names the keys that differ); a finished one is returned as it is. ``force`` starts
    afresh: the new run is trained in a staging folder and replaces the old one only once it has finished.
    ``stop_after`` ends training after that many steps, unfinished (an interruption, for tests).
    """
    if cfg.train is None:
        raise ConfigError(f"{cfg.source}: train: this experiment has no 'train:' block")
    from harness.core.device import resolve_device

    options = cfg.train.options
    loop = getattr(options, "loop", None)
    if device is not None and loop is not None:
        loop.device = device
    if progress is not None and loop is not None:
        loop.progress = progress
    dev = resolve_device(device or getattr(loop, "device", "auto"), key="--device / train.loop.device")
    run_dir, train_dir = cfg.run_dir, train_dir_of(cfg)
    identity = train_identity(cfg)  # lists (and checks) the training data before anything is built or made
    trainer = cfg.train.create()
    # under torchrun every rank runs this: rank 0 is the folder's one writer, the others only read it
    main_rank = int(os.environ.get("RANK", "0")) == 0
    run_id = os.environ.get("TORCHELASTIC_RUN_ID") if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    staging_name = f"{runfolder.STAGING_PREFIX}train-{run_id}" if run_id else None  # one folder for all ranks
    with RunLock(run_dir, "training run folder") if main_rank else contextlib.nullcontext():
        if main_rank:
            runfolder.clean_leftovers(run_dir, keep=staging_name)
        if _has_run(train_dir) and not force:
            _check_resumable(train_dir, identity)
            result = _read_result(train_dir)
            if result is not None:
                log.info("%s: this training run has finished (same config, data and code); nothing to do", train_dir)
                return train_dir / result["checkpoint"]
            return _fit(cfg, trainer, train_dir, identity, dev, stop_after, main_rank)
        if not _has_run(train_dir):
            return _fit(cfg, trainer, train_dir, identity, dev, stop_after, main_rank)
        owned = _train_owned(run_dir)
        with runfolder.Staging(
            run_dir, "train", last=(f"train/{RESULT_FILE}",), name=staging_name, owner=main_rank
        ) as staging:
            staged = _fit(cfg, trainer, staging.path / "train", identity, dev, stop_after, main_rank)
            relative = staged.relative_to(staging.path)
            if main_rank:
                staging.commit(extra_owned=owned)
        return run_dir / relative


def _check_resumable(train_dir: Path, identity: RunIdentity) -> None:
    recorded = read_identity(train_dir)
    if recorded is None:
        raise IdentityMismatchError(
            f"{train_dir} holds a training run without a recorded identity (made by an earlier version), so it "
            f"cannot be checked to match this config, data and code; pass --force to train afresh (the new run "
            f"replaces it only once it has finished)"
        )
    diff = recorded.differences(identity)
    if diff:
        raise IdentityMismatchError(
            f"{train_dir} holds a training run made from another config, data or code, so it is not resumed:\n"
            + format_differences(diff)
            + "\npass --force to train afresh (the new run replaces this one only once it has finished), or "
            "choose another name/output_root"
        )


def _read_result(train_dir: Path) -> dict | None:
    import json

    path = train_dir / RESULT_FILE
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or not (train_dir / str(result.get("checkpoint", ""))).is_file():
        return None
    return result


def _fit(
    cfg: ExperimentConfig,
    trainer: Any,
    train_dir: Path,
    identity: RunIdentity,
    dev: Any,
    stop_after: int | None,
    main_rank: bool = True,
) -> Path:
    """Train into ``train_dir`` (resuming what it holds), recording identity, config and env; then the result
    (not when stopped early). Only the main rank writes these records."""
    from harness.core.envinfo import collect_env

    train_dir.mkdir(parents=True, exist_ok=True)
    if main_rank:
        write_identity(train_dir, identity)
        write_text(train_dir / "config.yaml", dump_yaml(cfg.to_dict()))
        write_json(train_dir / "env.json", collect_env(dev))
    kwargs = {"stop_after": stop_after} if stop_after is not None else {}
    checkpoint = Path(
        trainer.fit(
            train_dir,
            seed=cfg.seed,
            model_spec=cfg.model,
            resume=True,
            output_root=Path(cfg.output_root),
            run_config=cfg.to_dict(),  # for the experiment tracker (logger: wandb)
            **kwargs,
        )
    )
    if not main_rank:
        return checkpoint
    folder = train_dir.parent
    runfolder.register(folder, list(_train_owned(folder)), "train")
    if stop_after is None:
        write_json(train_dir / RESULT_FILE, {"checkpoint": checkpoint.relative_to(train_dir).as_posix()})
        runfolder.register(folder, [f"train/{RESULT_FILE}"], "train")
    return checkpoint


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
