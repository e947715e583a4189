"""Typed experiment configs: YAML (with ``base:`` inheritance and ``key.sub=value`` overrides) -> dataclasses.

Everything is validated before any work starts. A wrong key, a wrong type or an unknown registry name raises
``ConfigError`` naming the file, the key path and the valid choices, e.g.::

    experiments/demo.yaml: methods[1].type: unknown method 'bicubik'; valid choices: bicubic, bilinear, ...

Component blocks (datasets, methods, metrics, model, train) are ``{type: NAME, name: LABEL, **options}``; their
options are validated against the config dataclass the component registered (``harness.registry``).
A dataclass field may carry ``metadata={"key": "lambda"}`` to be spelt differently in YAML. A ``__post_init__``
check that names one field first (``ValueError("radius: must be >= 0, got -1")``) is reported at that field's
key path (``analysis.radius: must be >= 0, got -1``).
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from harness import registry
from harness.analysis.options import AnalysisOptions


class ConfigError(ValueError):
    """A config problem, already phrased for the user (file, key path, what was expected)."""


# ----------------------------------------------------------------------------------------------- typed mapping
def _yaml_key(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, path: str, source: str) -> Any:
    """Convert ``value`` to type ``tp`` strictly (ints may widen to float; nothing else is coerced)."""

    def fail(expected: str | None = None) -> ConfigError:
        want = expected or _type_name(tp)
        return ConfigError(f"{source}: {path}: expected {want}, got {value!r} ({type(value).__name__})")

    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{source}: {path}: invalid value {value!r}; valid choices: {', '.join(map(str, args))}")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path, source)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise fail()
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise fail()
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise fail(f"{_type_name(tp)} ({len(args)} items)")
            items = [_convert(a, v, f"{path}[{i}]", source) for i, (a, v) in enumerate(zip(args, value))]
        else:
            item_tp = args[0] if args else Any
            items = [_convert(item_tp, v, f"{path}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise fail()
        key_tp, val_tp = args if args else (Any, Any)
        return {
            _convert(key_tp, k, f"{path}.{k}", source): _convert(val_tp, v, f"{path}.{k}", source)
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise fail("a mapping")
        return from_dict(tp, value, path=path, source=source)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise fail()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise fail()
    if tp is str:
        if isinstance(value, str):
            return value
        raise fail()
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise fail()


def from_dict(cls: type, data: dict, *, path: str = "", source: str = "<config>") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {path or '<root>'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {_yaml_key(f): f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        where = f"{path}.{unknown[0]}" if path else str(unknown[0])
        raise ConfigError(f"{source}: {where}: unknown key; valid keys: {', '.join(fields)}")
    kwargs = {}
    for key, f in fields.items():
        sub = f"{path}.{key}" if path else key
        if key in data:
            kwargs[f.name] = _convert(hints[f.name], data[key], sub, source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: {sub}: required key is missing")
    try:
        obj = cls(**kwargs)
    except (ValueError, TypeError) as exc:  # __post_init__ checks
        key, sep, message = str(exc).partition(": ")
        if sep and key in fields:  # "KEY: message": a check on one field, reported at its key path
            raise ConfigError(f"{source}: {f'{path}.{key}' if path else key}: {message}") from exc
        raise ConfigError(f"{source}: {path or '<root>'}: {exc}") from exc
    return obj


def to_dict(obj: Any) -> Any:
    """Inverse of ``from_dict``: plain YAML-able data (aliased keys restored)."""
    if isinstance(obj, ComponentSpec):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {_yaml_key(f): to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ----------------------------------------------------------------------------------------------- components
@dataclass
class ComponentSpec:
    """One ``{type: NAME, name: LABEL, **options}`` block, validated against the registry."""

    kind: str  # registry kind: methods, datasets, metrics, degradations, models, trainers
    type: str
    name: str
    options: Any = None  # the component's config dataclass instance, or None when it takes no options

    def build(self, **kwargs: Any) -> Any:
        return registry.build(self.kind, self.type, self.options, **kwargs)

    def to_dict(self) -> dict:
        out = {"type": self.type}
        if self.name != self.type:
            out["name"] = self.name
        if self.options is not None:
            out.update(to_dict(self.options))
        return out


def parse_component(kind: str, data: Any, path: str, source: str) -> ComponentSpec:
    if isinstance(data, str):
        data = {"type": data}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {path}: expected a name or a mapping with 'type', got {data!r}")
    data = dict(data)
    if "type" not in data:
        raise ConfigError(f"{source}: {path}.type: required key is missing")
    type_name = data.pop("type")
    label = data.pop("name", type_name)
    if not isinstance(label, str):
        raise ConfigError(f"{source}: {path}.name: expected str, got {label!r}")
    try:
        entry = registry.get(kind, type_name)
    except registry.RegistryError as exc:
        raise ConfigError(f"{source}: {path}.type: {exc}") from None
    if entry.config is None:
        if data:
            raise ConfigError(f"{source}: {path}.{next(iter(data))}: unknown key; {type_name!r} takes no options")
        options = None
    else:
        options = from_dict(entry.config, data, path=path, source=source)
    return ComponentSpec(kind, type_name, label, options)


# ----------------------------------------------------------------------------------------------- experiment
@dataclass
class EfficiencyConfig:
    """``bench.efficiency``: also measure a Table-2-style efficiency table (``efficiency.json``, see
    ``harness.bench_efficiency``): params, steps, latency median/IQR at a fixed LR size, peak memory."""

    lr_size: int = 128  # LR side of the timed input (128 -> 512 at x4, the paper's Table 2 setting)
    repeats: int = 5  # timed calls (median and IQR reported)
    warmup: int = 2  # untimed calls first
    memory: bool = True  # also measure peak memory (one more call)
    batch_sizes: list[int] = field(default_factory=list)  # optional throughput-vs-batch rows

    def __post_init__(self) -> None:
        if self.lr_size < 1 or self.repeats < 1 or self.warmup < 0:
            raise ValueError(
                f"bench.efficiency needs lr_size >= 1, repeats >= 1, warmup >= 0; got lr_size={self.lr_size}, "
                f"repeats={self.repeats}, warmup={self.warmup}"
            )
        if any(b < 1 for b in self.batch_sizes):
            raise ValueError(f"bench.efficiency.batch_sizes must be >= 1, got {self.batch_sizes}")


@dataclass
class BenchConfig:
    """How ``run.py bench`` evaluates methods on datasets."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = 1
    save_images: bool = True
    max_images: int | None = None  # evaluate only the first N images of every dataset
    on_corrupt: Literal["fail", "skip"] = "fail"  # a file that cannot be decoded
    bootstrap_samples: int = 1000  # for the 95% CIs in summaries and reports
    results_format: Literal["csv", "parquet"] = "csv"
    efficiency: EfficiencyConfig | None = None  # set (e.g. `bench.efficiency: {}`) to write efficiency.json

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"bench.batch_size must be >= 1, got {self.batch_size}")


@dataclass
class ReportConfig:
    title: str | None = None
    crop_size: int = 96  # zoomed crop in the image grid (HR pixels)
    max_images_in_grid: int = 6


@dataclass
class SweepConfig:
    """Cells = cartesian ``grid`` x paired ``zip`` over config keys (see harness.sweep)."""

    grid: dict[str, list[Any]] = field(default_factory=dict)
    zip: dict[str, list[Any]] = field(default_factory=dict)
    stages: list[Literal["train", "bench", "analyze"]] = field(default_factory=lambda: ["train", "bench"])
    backend: Literal["local", "submitit", "ray"] = "local"
    workers: int = 1  # local CPU workers (ignored when GPUs are visible: one cell per GPU)
    backend_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentConfig:
    name: str
    description: str = ""
    seed: int = 0
    output_root: str = "runs"
    datasets: list[ComponentSpec] = field(default_factory=list)
    methods: list[ComponentSpec] = field(default_factory=list)
    metrics: list[ComponentSpec] = field(default_factory=list)
    bench: BenchConfig = field(default_factory=BenchConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    model: ComponentSpec | None = None  # the model a `train` stage trains (kind "models")
    train: ComponentSpec | None = None  # the trainer (kind "trainers")
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)  # the analyze stage / `run.py analyze`
    sweep: SweepConfig | None = None
    source: str = "<config>"  # where it was loaded from (not a YAML key)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_root) / self.name

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "source":
                continue
            out[f.name] = to_dict(getattr(self, f.name))
        return out


_COMPONENT_LISTS = {"datasets": "datasets", "methods": "methods", "metrics": "metrics"}
_COMPONENT_SINGLE = {"model": "models", "train": "trainers"}


def experiment_from_dict(data: dict, source: str = "<config>") -> ExperimentConfig:
    """Validate a merged raw mapping into an ExperimentConfig (components checked against the registry)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    data = dict(data)
    data.pop("base", None)
    parsed: dict[str, Any] = {}
    for key, kind in _COMPONENT_LISTS.items():
        if key in data:
            items = data.pop(key)
            if not isinstance(items, list):
                raise ConfigError(f"{source}: {key}: expected a list of components, got {items!r}")
            specs = [parse_component(kind, item, f"{key}[{i}]", source) for i, item in enumerate(items)]
            names = [s.name for s in specs]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ConfigError(f"{source}: {key}: duplicate names {dupes}; give each a distinct 'name:'")
            parsed[key] = specs
    for key, kind in _COMPONENT_SINGLE.items():
        if data.get(key) is not None:
            parsed[key] = parse_component(kind, data.pop(key), key, source)
        else:
            data.pop(key, None)
    if "source" in data:
        raise ConfigError(f"{source}: source: reserved key")
    plain_cls = dataclasses.make_dataclass(
        "_Plain",
        [
            (f.name, f.type, f)
            for f in dataclasses.fields(ExperimentConfig)
            if f.name not in parsed
            and f.name not in _COMPONENT_LISTS
            and f.name not in _COMPONENT_SINGLE
            and f.name != "source"
        ],
    )
    plain_cls.__module__ = __name__
    plain = from_dict(plain_cls, data, source=source)
    kwargs = {f.name: getattr(plain, f.name) for f in dataclasses.fields(plain)}
    return ExperimentConfig(**kwargs, **parsed, source=source)


# ----------------------------------------------------------------------------------------------- YAML files
def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml_tree(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a YAML file (``yaml.safe_load``) and resolve ``base:`` (a path or list, relative to the file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    resolved = path.resolve()
    if resolved in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, resolved))
        raise ConfigError(f"{path}: circular base: {chain}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    bases = data.pop("base", None) or []
    if isinstance(bases, str):
        bases = [bases]
    merged: dict = {}
    for base in bases:
        merged = _deep_merge(merged, load_yaml_tree(path.parent / base, (*_seen, resolved)))
    return _deep_merge(merged, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (['a','b','c'], yaml-parsed value). List items: ``methods.0.scale=2``."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. model.hcc.lambda=0.5")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {text!r}: empty key component")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: invalid value: {exc}") from None
    return parts, value


def set_by_path(data: dict, parts: list[str], value: Any, what: str = "override") -> None:
    """Set a nested key in raw config data; list elements are addressed by index or by their ``name``."""
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        node = _child(node, part, parts[: i + 1], what, create=True)
    last = parts[-1]
    if isinstance(node, list):
        idx = _list_index(node, last, parts, what)
        node[idx] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"{what} {'.'.join(parts)}: {'.'.join(parts[:-1])} is not a mapping")


def _list_index(node: list, part: str, parts: list[str], what: str) -> int:
    if part.lstrip("-").isdigit():
        idx = int(part)
        if -len(node) <= idx < len(node):
            return idx
    for idx, item in enumerate(node):
        if isinstance(item, dict) and (item.get("name", item.get("type")) == part):
            return idx
        if isinstance(item, str) and item == part:  # shorthand component: `methods: [bicubic]`
            node[idx] = {"type": item}
            return idx
    raise ConfigError(f"{what} {'.'.join(parts)}: no list item {part!r} (use an index or an item's name)")


def _child(node: Any, part: str, parts: list[str], what: str, create: bool) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, part, parts, what)]
    if not isinstance(node, dict):
        raise ConfigError(f"{what} {'.'.join(parts)}: parent is not a mapping")
    if part not in node or node[part] is None:
        if not create:
            raise ConfigError(f"{what} {'.'.join(parts)}: no such key")
        node[part] = {}
    if isinstance(node[part], str) and len(parts) > 0:  # shorthand component 'bicubic' -> {type: bicubic}
        node[part] = {"type": node[part]}
    return node[part]


def load_experiment(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Load, merge bases, apply ``key.sub=value`` overrides, validate. Raises ConfigError."""
    data = load_yaml_tree(path)
    for text in overrides:
        parts, value = parse_override(text)
        set_by_path(data, parts, value)
    data.setdefault("name", Path(path).stem)
    return experiment_from_dict(data, source=str(path))


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(to_dict(data), sort_keys=False, allow_unicode=True)
