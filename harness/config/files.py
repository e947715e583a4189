"""Config files: read YAML with ``base:`` inheritance, apply ``key.sub=value`` overrides, write YAML back.

``load_yaml_tree`` reads a file with ``yaml.safe_load`` and deep-merges its ``base:`` files (a path or a list,
relative to the file; later bases and then the file itself win). A bare name that is no file (``demo``,
``tiny_train.yaml``) names a bundled experiment (``find_experiment``). ``parse_override`` + ``set_by_path`` apply a
command-line override such as ``methods.0.scale=2`` or ``methods.bicubic.scale=2`` to the raw data (list items
are addressed by index or by their ``name``). These work on plain data; validation happens in
``harness.config.experiment``.
"""

from __future__ import annotations

import copy
import importlib.resources
from pathlib import Path
from typing import Any

import yaml

from harness.core.mapping import ConfigError, to_dict

__all__ = ["bundled_experiments", "dump_yaml", "find_experiment", "load_yaml_tree", "parse_override", "set_by_path"]

BUNDLED_PACKAGE = "experiments"  # the package whose *.yaml files are the bundled experiments


# ----------------------------------------------------------------------------------------------- YAML files
def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def bundled_experiments() -> dict[str, Path]:
    """``{name: file}`` of the experiments installed with the package (``experiments/*.yaml``), by name."""
    try:
        folder = importlib.resources.files(BUNDLED_PACKAGE)
    except ModuleNotFoundError:
        return {}
    if not isinstance(folder, Path):  # a zipped install: base: needs real files (pip always unpacks wheels)
        return {}
    return {entry.stem: entry for entry in sorted(folder.glob("*.yaml")) if entry.is_file()}


def find_experiment(path: str | Path) -> Path:
    """``path`` itself if it is a file; else, for a bare name (``demo`` or ``demo.yaml``), the bundled
    experiment of that name. Raises ConfigError naming the path and the bundled experiments."""
    path = Path(path)
    if path.is_file():
        return path
    bundled = bundled_experiments()
    name = path.name.removesuffix(".yaml")
    if len(path.parts) == 1 and name in bundled:
        return bundled[name]
    choices = ", ".join(bundled) or "none installed"
    raise ConfigError(f"{path}: config file not found (nor a bundled experiment; bundled: {choices})")


def load_yaml_tree(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a YAML file (``yaml.safe_load``) and resolve ``base:`` (a path or list, relative to the file).

    The top-level ``path`` may name a bundled experiment (``find_experiment``); ``base:`` files may not.
    """
    path = Path(path)
    if not _seen:
        path = find_experiment(path)
    elif not path.is_file():
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


def load_experiment_tree(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> tuple[Path, dict]:
    """(the file, its raw data): an experiment YAML (or bundled name) with ``base:`` merged, the ``key=value``
    overrides applied and ``name`` defaulting to the file's stem. Not validated yet."""
    path = find_experiment(path)
    data = load_yaml_tree(path)
    for text in overrides:
        set_by_path(data, *parse_override(text))
    data.setdefault("name", Path(path).stem)
    return path, data


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


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(to_dict(data), sort_keys=False, allow_unicode=True)
