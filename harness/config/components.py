"""Component blocks of an experiment: ``{type: NAME, name: LABEL, **options}``, validated against the registry.

The options are mapped strictly onto the config dataclass the component registered (``register(...,
config=...)``); an unknown type lists the valid ones, an unknown key names itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.core import registry
from harness.core.mapping import ConfigError, from_dict, to_dict


@dataclass
class ComponentSpec:
    """One ``{type: NAME, name: LABEL, **options}`` block, validated against the registry."""

    kind: str  # registry kind: methods, datasets, metrics, degradations, models, trainers
    type: str
    name: str
    options: Any = None  # the component's config dataclass instance, or None when it takes no options

    def create(self, **kwargs: Any) -> Any:
        return registry.create(self.kind, self.type, self.options, **kwargs)

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
