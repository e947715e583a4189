"""Strict mapping between plain (YAML) data and dataclasses: ``from_dict``, ``to_dict``, ``ConfigError``.

``from_dict`` builds a dataclass from a mapping and ``to_dict`` turns it back into plain data. Nothing is
coerced except ints widening to float and exponent-notation strings such as ``1e-4`` (which YAML 1.1, hence
``yaml.safe_load``, reads as strings) becoming floats for float fields; a wrong key or a wrong type raises
``ConfigError`` naming the source file and the key path, e.g.::

    experiments/demo.yaml: bench.batch_size: expected int, got 'two' (str)

A dataclass field may carry ``metadata={"key": "lambda"}`` to be spelt differently in YAML. A ``__post_init__``
check that names one field first (``ValueError("radius: must be >= 0, got -1")``) is reported at that field's
key path (``analysis.radius: must be >= 0, got -1``).

An object with its own ``to_dict`` method (a component block, an experiment) is written back by that method.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

# A number in scientific notation without a dot (`1e-4`, `5E+3`), which YAML 1.1 leaves a string
_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


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
        if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            return float(value)  # `1e-4`: YAML 1.1 (safe_load) reads a float without a dot as a string
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
    if callable(getattr(obj, "to_dict", None)) and not isinstance(obj, type):
        return obj.to_dict()  # objects that know their YAML form (component blocks, experiments)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {_yaml_key(f): to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj
