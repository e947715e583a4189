"""Decorator registries for methods, datasets, metrics, degradations, models and trainers.

Each entry is a factory (a class or function) plus an optional typed config dataclass; YAML blocks of the form
``{type: NAME, **options}`` are validated against that dataclass (``harness.config.components``) and created by
name::

    @register("methods", "bicubic", description="Bicubic upscaling (PyTorch, antialias off)")
    class Bicubic(SRMethod): ...

    method = create("methods", "bicubic")

Plugins live in the modules listed in ``PLUGIN_MODULES``; they are imported lazily on first lookup, each on its
own, so one broken module (say, a baseline whose dependency is missing) cannot break the others: it is warned
about, listed by ``describe`` (``run.py list``) and named in the error of any lookup that fails.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

KINDS = ("methods", "datasets", "metrics", "degradations", "models", "trainers")

# Modules that register entries when imported. Explicit (no folder scanning), imported lazily.
PLUGIN_MODULES = (
    "harness.data.datasets",
    "harness.data.degradations.bicubic",
    "harness.data.degradations.realesrgan",
    "harness.metrics.iqa",
    "methods.adapters.interpolation",
    "methods.adapters.spandrel",
    "methods.adapters.output_folder",
    "methods.adapters.command",
    "methods.adapters.alignvar",
    "harness.training.alignvar",
    "harness.training.tokenizer",
)


class RegistryError(KeyError):
    """Unknown kind or name; the message lists the valid choices."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    factory: Callable[..., Any]
    config: type | None  # a dataclass type validated from YAML options, or None (no options)
    description: str


_REGISTRY: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
_IMPORT_ERRORS: dict[str, str] = {}
_plugins_loaded = False


def _check_kind(kind: str) -> None:
    if kind not in _REGISTRY:
        raise RegistryError(f"unknown registry kind {kind!r}; valid kinds: {', '.join(KINDS)}")


def register(kind: str, name: str, *, description: str = "", config: type | None = None):
    """Register ``factory`` under ``kind``/``name``. ``config`` is a dataclass type for its YAML options."""
    _check_kind(kind)
    if config is not None and not dataclasses.is_dataclass(config):
        raise TypeError(f"config for {kind}/{name} must be a dataclass type, got {config!r}")

    def decorator(factory):
        existing = _REGISTRY[kind].get(name)
        if existing is not None and existing.factory is not factory:
            if getattr(existing.factory, "__qualname__", None) != getattr(factory, "__qualname__", None):
                raise ValueError(f"{kind} entry {name!r} is already registered by {existing.factory!r}")
        doc_lines = (factory.__doc__ or "").strip().splitlines()
        desc = description or (doc_lines[0] if doc_lines else "")
        _REGISTRY[kind][name] = Entry(kind, name, factory, config, desc)
        return factory

    return decorator


def load_plugins(modules: tuple[str, ...] = PLUGIN_MODULES) -> dict[str, str]:
    """Import every plugin module once. Returns {module: error} for modules that failed to import."""
    global _plugins_loaded
    if _plugins_loaded:
        return dict(_IMPORT_ERRORS)
    _plugins_loaded = True
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not break the rest (a missing one counts)
            _IMPORT_ERRORS[module] = f"{type(exc).__name__}: {exc}"
    for module, err in _IMPORT_ERRORS.items():
        log.warning(f"plugin module {module} failed to import: {err}")
    return dict(_IMPORT_ERRORS)


def list_entries(kind: str) -> dict[str, Entry]:
    """All entries of one kind, by name (plugins loaded)."""
    _check_kind(kind)
    load_plugins()
    return dict(sorted(_REGISTRY[kind].items()))


def get(kind: str, name: str) -> Entry:
    """The entry ``name`` of ``kind``; an unknown name raises RegistryError listing the valid names."""
    available = list_entries(kind)
    if name not in available:
        valid = ", ".join(available) or "(none registered)"
        broken = "".join(f"; plugin module {m} failed to import ({e})" for m, e in _IMPORT_ERRORS.items())
        raise RegistryError(f"unknown {kind[:-1]} {name!r}; valid choices: {valid}{broken}")
    return available[name]


def create(kind: str, name: str, options: Any = None, **kwargs: Any) -> Any:
    """Build entry ``name``. ``options`` is its validated config dataclass (or a dict, validated here)."""
    entry = get(kind, name)
    if entry.config is None:
        if options:
            raise ValueError(f"{kind[:-1]} {name!r} takes no options, got {sorted(dict(options))}")
        return entry.factory(**kwargs)
    if options is None or isinstance(options, dict):
        from harness.core.mapping import from_dict

        options = from_dict(entry.config, dict(options or {}), path=f"{kind}.{name}")
    return entry.factory(options, **kwargs)


def describe() -> str:
    """A human-readable listing of every registered entry (``run.py list``)."""
    lines: list[str] = []
    for kind in KINDS:
        kind_entries = list_entries(kind)
        lines.append(f"{kind} ({len(kind_entries)})")
        width = max((len(n) for n in kind_entries), default=0)
        for name, entry in kind_entries.items():
            lines.append(f"  {name:<{width}}  {entry.description}")
    if _IMPORT_ERRORS:
        lines.append("plugins that failed to import")
        lines.extend(f"  {m}: {e}" for m, e in _IMPORT_ERRORS.items())
    return "\n".join(lines)
