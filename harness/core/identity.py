"""What a run was made from: the resolved config, the input data and the code, recorded and compared.

``RunIdentity`` holds the config (plain data) and its sha256, a manifest of the input files (name, size and
sha256 of every file, streamed, hashed once per run) and its sha256, and the code version (package version,
git commit). ``identity.json`` in a run folder records it; a run is resumed only when the recorded identity
equals the current one, otherwise ``differences`` names every key that differs, e.g.::

    config.model.hcc.lambda: 1.0 (recorded) -> 3.0 (now)
    data.bundled.lr/astronaut: sha256 3f2a... -> 91c0...
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.core.atomic import write_json

IDENTITY_FILE = "identity.json"
MAX_LISTED = 12  # differences listed in a message before "... and N more"
_CHUNK = 1 << 20


class IdentityMismatchError(RuntimeError):
    """A run folder holds a run made from another config, other data or other code; the message lists the keys."""


# ----------------------------------------------------------------------------------------------- config
def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace) of plain data."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(obj: Any) -> str:
    """sha256 hex of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": [1, {"c": 2}]}}`` -> ``{"a.b[0]": 1, "a.b[1].c": 2}`` (leaves only; empty containers kept)."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict) and obj:
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(obj, (list, tuple)) and obj:
        for i, value in enumerate(obj):
            out.update(flatten(value, f"{prefix}[{i}]"))
    else:
        out[prefix] = obj
    return out


# ----------------------------------------------------------------------------------------------- files
def file_sha256(path: str | Path) -> str:
    """sha256 hex of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: str | Path, sha256: str | None = None) -> dict[str, Any]:
    """``{name, size, sha256}`` of one input file (``sha256`` given when already known, e.g. from a cache)."""
    path = Path(path)
    return {"name": str(path), "size": path.stat().st_size, "sha256": sha256 or file_sha256(path)}


# ----------------------------------------------------------------------------------------------- code
@functools.lru_cache(maxsize=4)
def code_version(repo: str | Path | None = None) -> dict:
    """``{version, commit, dirty, diff_sha256}`` of this package (git fields None outside a git checkout)."""
    from harness.core.envinfo import source_checkout

    # the package this module belongs to is imported already; importing it here would be an import cycle
    # (harness's notebook API imports the bench runner, which imports this module)
    __version__ = sys.modules["harness"].__version__

    repo = Path(repo) if repo is not None else source_checkout()  # None for an installed copy: no commit of its own
    if repo is None:
        return {"version": __version__, "commit": None, "dirty": None, "diff_sha256": None}

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=20, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"version": __version__, "commit": None, "dirty": None, "diff_sha256": None}
    diff = git("diff", "HEAD") or ""
    dirty = bool(diff.strip())
    return {
        "version": __version__,
        "commit": commit.strip(),
        "dirty": dirty,
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if dirty else None,
    }


# Code fields a resume must agree on (uncommitted edits are recorded, not compared: every edit would block it)
CODE_KEYS = ("version", "commit")


# ----------------------------------------------------------------------------------------------- identity
@dataclass
class RunIdentity:
    """The identity of one run (see the module docstring). ``kind``: bench, train, ..."""

    kind: str
    config: dict
    data: dict  # {group: {entry: {name, size, sha256} | note}}
    code: dict = field(default_factory=lambda: dict(code_version()))
    config_sha256: str = ""
    data_sha256: str = ""

    def __post_init__(self) -> None:
        self.config_sha256 = self.config_sha256 or digest(self.config)
        self.data_sha256 = self.data_sha256 or digest(self.data)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> RunIdentity:
        return cls(
            kind=str(data.get("kind", "")),
            config=dict(data.get("config") or {}),
            data=dict(data.get("data") or {}),
            code=dict(data.get("code") or {}),
            config_sha256=str(data.get("config_sha256", "")),
            data_sha256=str(data.get("data_sha256", "")),
        )

    def differences(self, now: RunIdentity) -> list[str]:
        """One line per key that differs between this (recorded) identity and ``now``; [] when they match.

        Input files are compared by content (size, sha256), not by where they are.
        """
        lines: list[str] = []
        if self.config_sha256 != now.config_sha256:
            lines += _diff("config", flatten(self.config), flatten(now.config), _show)
        if self.data_sha256 != now.data_sha256:
            lines += _data_diff(self.data, now.data)
        for key in CODE_KEYS:
            if self.code.get(key) != now.code.get(key):
                lines.append(f"code.{key}: {self.code.get(key)} (recorded) -> {now.code.get(key)} (now)")
        return lines


def _show(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else repr(value)


def _diff(prefix: str, old: dict[str, Any], new: dict[str, Any], show) -> list[str]:
    lines = []
    for key in dict.fromkeys([*old, *new]):
        if key not in new:
            lines.append(f"{prefix}.{key}: {show(old[key])} (recorded) -> absent (now)")
        elif key not in old:
            lines.append(f"{prefix}.{key}: absent (recorded) -> {show(new[key])} (now)")
        elif old[key] != new[key]:
            lines.append(f"{prefix}.{key}: {show(old[key])} (recorded) -> {show(new[key])} (now)")
    return lines


def _data_diff(old: dict, new: dict) -> list[str]:
    lines = []
    for group in dict.fromkeys([*old, *new]):
        a, b = old.get(group), new.get(group)
        if a == b:
            continue
        if not isinstance(a, dict) or not isinstance(b, dict):
            lines.append(f"data.{group}: {'absent' if a is None else 'recorded'} -> {'absent' if b is None else 'now'}")
            continue
        for entry in dict.fromkeys([*a, *b]):
            x, y = a.get(entry), b.get(entry)
            if x == y or _same_content(x, y):
                continue
            if x is None:
                lines.append(f"data.{group}.{entry}: added ({_describe_file(y)})")
            elif y is None:
                lines.append(f"data.{group}.{entry}: removed (was {_describe_file(x)})")
            elif isinstance(x, dict) and isinstance(y, dict) and x.get("sha256") != y.get("sha256"):
                lines.append(
                    f"data.{group}.{entry}: content changed (sha256 {str(x.get('sha256'))[:12]} -> "
                    f"{str(y.get('sha256'))[:12]}, {y.get('name')})"
                )
            else:
                lines.append(f"data.{group}.{entry}: {_show(x)} (recorded) -> {_show(y)} (now)")
    return lines


def _same_content(x: Any, y: Any) -> bool:
    """Two file entries with the same bytes (a data folder moved elsewhere is the same data)."""
    keys = ("size", "sha256")
    return isinstance(x, dict) and isinstance(y, dict) and all(x.get(k) == y.get(k) for k in keys)


def _describe_file(entry: Any) -> str:
    if isinstance(entry, dict) and "sha256" in entry:
        return f"{entry.get('name')}, {entry.get('size')} bytes"
    return _show(entry)


def format_differences(lines: list[str], limit: int = MAX_LISTED) -> str:
    shown = "\n  ".join(lines[:limit])
    more = f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else ""
    return f"  {shown}{more}"


def read_identity(folder: str | Path, name: str = IDENTITY_FILE) -> RunIdentity | None:
    """The identity recorded in ``folder`` (None when absent); unreadable JSON raises ``IdentityMismatchError``."""
    path = Path(folder) / name
    if not path.is_file():
        return None
    try:
        return RunIdentity.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, AttributeError) as exc:
        raise IdentityMismatchError(f"{path}: unreadable run identity ({exc}); this folder cannot be resumed") from None


def write_identity(folder: str | Path, identity: RunIdentity, name: str = IDENTITY_FILE) -> Path:
    path = Path(folder) / name
    write_json(path, identity.to_json())
    return path
