"""Sweep expansion: ``sweep.grid`` (cartesian product) x ``sweep.zip`` (paired lists) x ``sweep.seeds``
(replicates) -> validated cells.

Every cell is the base experiment with its overrides applied to the RAW config mapping (the same path syntax
as ``run.py ... key.sub=value`` overrides), then validated with ``experiment_from_dict``. All cells are
validated before any work starts, so a bad value in cell 17 fails the sweep up front, naming the cell and the
key::

    exp.yaml [sweep cell bench.on_corrupt=ignore,seed=1]: bench.on_corrupt: invalid value 'ignore'; ...

Cell names are readable and filesystem-safe: each swept key is shortened to its last components (at least two,
more where needed to stay unique), e.g. ``hcc.lambda=0.5,sca.mask_input=laplacian``; the cell's folder adds
the first 8 hex digits of its identity hash (``harness.sweep.cache.cell_identity``), which makes it unique.

``sweep.seeds: [0, 1, 2]`` repeats every cell once per seed (the seed varies fastest): the cell's override
``seed`` (name ``...,seed=1``) sets the experiment's ``seed`` (training data order, initialisation, the bench's
RNGs and bootstrap) and the ``seed`` option of every method and model that has one (the sampling seed), so
the replicates differ in every random choice. Sweeps without ``seeds:`` expand (and hash) as before.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from harness.config.experiment import ExperimentConfig, SweepConfig, experiment_from_dict
from harness.config.files import load_experiment_tree, set_by_path
from harness.core.mapping import ConfigError, from_dict
from harness.core.runfolder import check_run_name, run_folder
from harness.sweep.cache import cell_identity

MAX_NAME_CHARS = 96  # readable part of a cell folder name (the hash suffix keeps names unique)
_RESERVED_KEYS = ("sweep", "name", "output_root", "source", "base")
_COMPONENT_LISTS = ("datasets", "methods", "metrics")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]+")


# -------------------------------------------------------------------------------------------------- the plan
@dataclass
class SweepSpec:
    """A sweep before expansion: the raw base config (without ``sweep:``) and its validated sweep block."""

    name: str
    output_root: str
    sweep: SweepConfig
    base: dict  # raw base experiment mapping, without ``sweep``
    source: str = "<config>"

    @property
    def sweep_dir(self) -> Path:
        return run_folder(self.output_root, self.name)

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> SweepSpec:
        """From a validated experiment (its ``to_dict()`` is the raw base)."""
        if cfg.sweep is None:
            raise ConfigError(f"{cfg.source}: sweep: missing; add a 'sweep:' block with 'grid:' and/or 'zip:'")
        base = cfg.to_dict()
        base.pop("sweep", None)
        return cls(cfg.name, cfg.output_root, cfg.sweep, base, cfg.source)

    @classmethod
    def from_raw(cls, data: dict, source: str = "<config>") -> SweepSpec:
        """From a raw merged mapping. Only ``sweep``, ``name`` and ``output_root`` are checked here; the rest
        is validated per cell (so a key whose only valid values come from the sweep does not fail the
        base)."""
        data = copy.deepcopy(data)
        data.pop("base", None)
        # ``- bicubic`` -> ``- {type: bicubic}``, so that sweep keys can address the item by its name
        for key in _COMPONENT_LISTS:
            if isinstance(data.get(key), list):
                data[key] = [{"type": v} if isinstance(v, str) else v for v in data[key]]
        raw_sweep = data.pop("sweep", None)
        if raw_sweep is None:
            raise ConfigError(f"{source}: sweep: missing; add a 'sweep:' block with 'grid:' and/or 'zip:'")
        sweep = from_dict(SweepConfig, raw_sweep, path="sweep", source=source)
        name = data.get("name")
        output_root = data.get("output_root", "runs")
        for key, value in (("name", name), ("output_root", output_root)):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{source}: {key}: expected a non-empty str, got {value!r}")
        try:
            check_run_name(name)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        return cls(name, output_root, sweep, data, source)


def load_sweep(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SweepSpec:
    """Read an experiment YAML (``base:`` resolved; a bare name may name a bundled experiment), apply
    ``key=value`` overrides, return its SweepSpec."""
    path, data = load_experiment_tree(path, overrides)
    return SweepSpec.from_raw(data, source=str(path))


@dataclass
class Cell:
    """One point of a sweep: overrides, the resolved (validated) config, and its identity.

    ``raw`` is the cell's normalised config mapping (``ExperimentConfig.to_dict()``) with ``name`` and
    ``output_root`` pointing at the cell folder, so ``cell.config.run_dir == cell_dir`` and the folder's
    ``config.yaml`` is a plain experiment file (``run.py bench cells/<cell>/config.yaml`` reproduces it).
    """

    index: int
    name: str  # readable, e.g. "hcc.lambda=0.5,sca.mask_input=laplacian"
    overrides: dict[str, Any]  # full key path -> value, in sweep key order
    id: str  # sha256 hex of the identity payload (harness.sweep.cache.identity_payload)
    stages: tuple[str, ...]
    raw: dict
    source: str = "<config>"
    code_version: dict = field(default_factory=dict)
    fresh: bool = False  # run with --force: start over instead of resuming what the cell left (not identity)

    @property
    def dir_name(self) -> str:
        return f"{self.name}-{self.id[:8]}"

    @functools.cached_property
    def config(self) -> ExperimentConfig:
        return experiment_from_dict(copy.deepcopy(self.raw), source=f"{self.source} [sweep cell {self.name}]")

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "name": self.name,
            "dir": self.dir_name,
            "id": self.id,
            "overrides": self.overrides,
            "stages": list(self.stages),
            "source": self.source,
            "code_version": self.code_version,
            "config": self.raw,
        }

    @classmethod
    def from_json(cls, data: dict) -> Cell:
        return cls(
            index=data["index"],
            name=data["name"],
            overrides=dict(data["overrides"]),
            id=data["id"],
            stages=tuple(data["stages"]),
            raw=data["config"],
            source=data.get("source", "<config>"),
            code_version=data.get("code_version") or {},
        )

    def __getstate__(self) -> dict:  # pickle (submitit/joblib) without the cached, re-derivable config
        state = dict(self.__dict__)
        state.pop("config", None)
        return state


# ------------------------------------------------------------------------------------------------- expansion
def combinations(sweep: SweepConfig, source: str = "<config>") -> list[dict[str, Any]]:
    """The override mappings of every cell: grid (cartesian, last key fastest) x zip (paired rows)."""
    for kind, table in (("grid", sweep.grid), ("zip", sweep.zip)):
        for key, values in table.items():
            where = f"{source}: sweep.{kind}.{key}"
            if not values:
                raise ConfigError(f"{where}: empty list; give at least one value")
            parts = key.split(".")
            if not all(parts):
                raise ConfigError(f"{where}: empty key component")
            if parts[0] in _RESERVED_KEYS:
                raise ConfigError(f"{where}: '{parts[0]}' cannot be swept (it names the sweep and its folders)")
    both = [k for k in sweep.grid if k in sweep.zip]
    if both:
        raise ConfigError(f"{source}: sweep: key {both[0]!r} is in both 'grid' and 'zip'; put it in one")
    if sweep.zip:
        lengths = {k: len(v) for k, v in sweep.zip.items()}
        if len(set(lengths.values())) > 1:
            listing = ", ".join(f"{k} ({n})" for k, n in lengths.items())
            raise ConfigError(f"{source}: sweep.zip: lists must have equal lengths; got {listing}")
        zip_rows = [dict(zip(sweep.zip, row)) for row in zip(*sweep.zip.values())]
    else:
        zip_rows = [{}]
    grid_rows = [dict(zip(sweep.grid, row)) for row in itertools.product(*sweep.grid.values())]
    rows = [{**g, **z} for g in grid_rows for z in zip_rows]
    seeds = check_seeds(sweep, source)
    if seeds is None:
        return rows
    return [{**row, SEED_KEY: s} for row in rows for s in seeds]


SEED_KEY = "seed"  # the override key of the replicate axis (``sweep.seeds``)


def check_seeds(sweep: SweepConfig, source: str = "<config>") -> list[int] | None:
    """The validated ``sweep.seeds`` (None when not given): a non-empty list of distinct integers >= 0, and
    ``seed`` not also swept by ``grid`` / ``zip``."""
    seeds = sweep.seeds
    if seeds is None:
        return None
    where = f"{source}: sweep.seeds"
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"{where}: expected a non-empty list of integers such as [0, 1, 2], got {seeds!r}")
    for i, s in enumerate(seeds):
        if not isinstance(s, int) or isinstance(s, bool):
            raise ConfigError(f"{where}[{i}]: expected an integer seed, got {s!r} ({type(s).__name__})")
        if s < 0:
            raise ConfigError(f"{where}[{i}]: seeds must be >= 0, got {s}")
    dupes = sorted({s for s in seeds if seeds.count(s) > 1})
    if dupes:
        raise ConfigError(f"{where}: duplicate seeds {dupes}; give each seed once")
    for kind, table in (("grid", sweep.grid), ("zip", sweep.zip)):
        if SEED_KEY in table:
            raise ConfigError(
                f"{source}: sweep.{kind}.{SEED_KEY}: 'seed' is swept by sweep.seeds too; give the seeds in one place"
            )
    return list(seeds)


def apply_seed(cfg: ExperimentConfig, seed: int) -> None:
    """Set the replicate ``seed`` on ``cfg`` and on every method / model option called ``seed``."""
    cfg.seed = seed
    for spec in [*cfg.methods, *([cfg.model] if cfg.model is not None else [])]:
        options = spec.options
        if dataclasses.is_dataclass(options) and any(f.name == "seed" for f in dataclasses.fields(options)):
            spec.options = dataclasses.replace(options, seed=seed)


def expand(spec: SweepSpec, *, code_version: dict | None = None, strict_code_version: bool = False) -> list[Cell]:
    """Validate and return every cell of the sweep (raises ConfigError naming the first bad cell and key)."""
    code_version = dict(code_version or {})
    rows = combinations(spec.sweep, spec.source)
    keys = list(spec.sweep.grid) + list(spec.sweep.zip) + ([SEED_KEY] if spec.sweep.seeds is not None else [])
    short = short_keys(keys)
    cells_dir = (Path(spec.output_root) / spec.name / "cells").absolute()
    stages = tuple(s for s in ("train", "bench", "analyze") if s in spec.sweep.stages)  # always in this order
    if not stages:
        raise ConfigError(f"{spec.source}: sweep.stages: empty; give any of 'train', 'bench', 'analyze'")
    cells: list[Cell] = []
    seen: dict[str, Cell] = {}
    for index, overrides in enumerate(rows):
        name = cell_name(overrides, short)
        where = f"{spec.source} [sweep cell {name}]"
        data = copy.deepcopy(spec.base)
        for key, value in overrides.items():
            set_by_path(data, key.split("."), copy.deepcopy(value), what=f"{where}: sweep key")
        cfg = experiment_from_dict(data, source=where)
        if spec.sweep.seeds is not None:
            apply_seed(cfg, overrides[SEED_KEY])
        cell_id = cell_identity(cfg, stages, code_version if strict_code_version else None)
        if cell_id in seen:
            raise ConfigError(
                f"{spec.source}: sweep: cells {seen[cell_id].name!r} and {name!r} resolve to the same "
                "config; remove the duplicate value"
            )
        cell = Cell(index, name, dict(overrides), cell_id, stages, {}, spec.source, code_version)
        raw = cfg.to_dict()
        raw["name"] = cell.dir_name
        raw["output_root"] = str(cells_dir)
        raw["sweep"] = None
        cell.raw = raw
        cell.__dict__["config"] = _with_paths(cfg, cell.dir_name, str(cells_dir), where)
        seen[cell_id] = cell
        cells.append(cell)
    return cells


def _with_paths(cfg: ExperimentConfig, name: str, output_root: str, source: str) -> ExperimentConfig:
    cfg.name, cfg.output_root, cfg.sweep, cfg.source = name, output_root, None, source
    return cfg


# ----------------------------------------------------------------------------------------------------- names
def short_keys(keys: list[str]) -> dict[str, str]:
    """Shorten key paths to their last components: at least two (list indices don't count), more until unique.

    ``model.hcc.lambda`` -> ``hcc.lambda``; ``seed`` -> ``seed``; ``methods.0.checkpoint`` ->
    ``methods.0.checkpoint``; ``a.x.lr`` and ``b.x.lr`` -> ``a.x.lr``, ``b.x.lr``.
    """
    parts = {k: k.split(".") for k in keys}
    take: dict[str, int] = {}
    for key, p in parts.items():
        n, named = 0, 0
        while n < len(p) and named < 2:
            n += 1
            named += not p[-n].lstrip("-").isdigit()
        take[key] = n
    while True:
        shorts = {k: ".".join(parts[k][-take[k] :]) for k in keys}
        clashes = [k for k in keys if list(shorts.values()).count(shorts[k]) > 1 and take[k] < len(parts[k])]
        if not clashes:
            return shorts
        for key in clashes:
            take[key] += 1


def name_part(value: Any) -> str:
    """A short readable rendering of a swept value (paths -> their file stem)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if "/" in value or "\\" in value:
            return PurePath(value.replace("\\", "/")).stem or value
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def cell_name(overrides: dict[str, Any], short: dict[str, str] | None = None) -> str:
    """``key=value`` pairs joined by commas, made filesystem-safe and at most MAX_NAME_CHARS long."""
    if not overrides:
        return "base"
    short = short or short_keys(list(overrides))
    text = ",".join(f"{short[k]}={name_part(v)}" for k, v in overrides.items())
    text = _UNSAFE.sub("_", text).strip("._-") or "cell"
    if len(text) > MAX_NAME_CHARS:
        text = text[:MAX_NAME_CHARS].rstrip("._-,=")
    return text
