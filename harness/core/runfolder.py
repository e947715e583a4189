"""Run folders: where a run may live, which files in it the harness wrote, and how a new run replaces an old one.

- **Containment**: ``run_folder(output_root, name)`` is ``<output_root>/<name>`` for a plain folder name only
  (absolute names, ``..``, ``.``, separators and hidden names are refused), and never a link out of
  ``output_root``.
- **Manifest**: ``.harness-files.json`` lists every file the harness wrote into the folder and the stage that
  wrote it (bench, train, sweep, report, ...). The harness deletes or replaces only files listed there; any
  other file in the way of a run is a conflict reported before any work starts (``conflicts``).
- **Build new, then swap**: ``Staging`` is a temporary folder inside the run folder; a stage writes its whole
  output there and ``commit`` moves it into place (the old files of that stage go to a trash folder first,
  the finished marker moves last), so a failed run leaves the previous one as it was. Leftover staging and
  trash folders of a killed process are removed by the next writer (``clean_leftovers``, under the lock).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from harness.core.atomic import write_json
from harness.core.mapping import ConfigError
from harness.core.runlock import LOCK_FILE, OWNER_FILE

MANIFEST_FILE = ".harness-files.json"
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"
INTERNAL_FILES = (LOCK_FILE, OWNER_FILE, MANIFEST_FILE)
RESERVED_NAMES = ("_tokenizers",)  # folders of output_root the harness uses itself


class RunFolderError(RuntimeError):
    """A run folder holds files the harness did not write where a run would write; the message lists them."""


# ----------------------------------------------------------------------------------------------- containment
def check_run_name(name: object, key: str = "name") -> str:
    """``name`` as a run folder name, or ``ValueError("<key>: ...")`` saying why it cannot be one."""
    rule = "must be a plain folder name (no '/', '\\', '..', '.', leading '.' or absolute path)"
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{key}: {rule}, got {name!r}")
    bad = (
        name in (".", "..")
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or os.path.isabs(name)
        or Path(name).name != name
    )
    if bad:
        raise ValueError(f"{key}: {name!r} {rule}; the run goes to <output_root>/<{key}>")
    if name in RESERVED_NAMES:
        raise ValueError(f"{key}: {name!r} is reserved for the harness's own files; choose another name")
    return name


def run_folder(output_root: str | Path, name: str, key: str = "name") -> Path:
    """``<output_root>/<name>``, checked to stay inside ``output_root`` (raises ``ConfigError``)."""
    try:
        check_run_name(name, key)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    root = Path(output_root)
    path = root / name
    real_root, real = root.resolve(), path.resolve()
    if real.parent != real_root:
        raise ConfigError(
            f"{key}: {path} resolves to {real}, outside output_root {real_root} (a link?); refusing to write there"
        )
    return path


# ----------------------------------------------------------------------------------------------- manifest
def read_manifest(folder: str | Path) -> dict[str, str]:
    """{relative path: stage} of the files the harness wrote into ``folder`` ({} when none)."""
    path = Path(folder) / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path}: unreadable file manifest ({exc}); delete the run folder by hand") from None
    files = data.get("files") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def write_manifest(folder: str | Path, files: dict[str, str]) -> None:
    write_json(Path(folder) / MANIFEST_FILE, {"files": dict(sorted(files.items()))})


def register(folder: str | Path, paths: Iterable[str | Path], stage: str) -> None:
    """Record ``paths`` (inside ``folder``: given under it, absolute, or relative to it) as written by ``stage``."""
    folder = Path(folder)
    files = read_manifest(folder)
    for p in paths:
        files[_relative(folder, Path(p)).as_posix()] = stage
    write_manifest(folder, files)


def _relative(folder: Path, path: Path) -> Path:
    for base, candidate in ((folder, path), (folder.resolve(), path.resolve())):
        try:
            return candidate.relative_to(base)
        except ValueError:
            continue
    if path.is_absolute():
        raise ValueError(f"{path} is not inside the run folder {folder}")
    return path  # already relative to the folder


def files_under(folder: Path, entry: str) -> list[str]:
    """Relative paths of the files at or under ``folder/entry`` (``[]`` when absent)."""
    root = folder / entry
    if root.is_symlink() or root.is_file():
        return [entry]
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file() or path.is_symlink():
            out.append(path.relative_to(folder).as_posix())
    return out


def conflicts(folder: str | Path, entries: Sequence[str], owned: dict[str, str] | None = None) -> list[str]:
    """Files at or under ``folder/<entry>`` the harness did not write (not in the manifest or ``owned``)."""
    folder = Path(folder)
    known = read_manifest(folder) if owned is None else owned
    return [rel for entry in entries for rel in files_under(folder, entry) if rel not in known]


def conflict_error(folder: Path, found: list[str], what: str) -> RunFolderError:
    listed = ", ".join(found[:10]) + (f", ... and {len(found) - 10} more" if len(found) > 10 else "")
    return RunFolderError(
        f"{folder}: holds {len(found)} file(s) that alignvar-bench did not write where {what} would write: "
        f"{listed}; nothing was run. Move them away or choose another name/output_root (the harness only ever "
        f"replaces files listed in {folder / MANIFEST_FILE})"
    )


def clean_leftovers(folder: str | Path, keep: str | None = None) -> list[Path]:
    """Remove staging and trash folders left by a killed writer (call with the folder's lock held); ``keep``
    names one this run shares with its other processes (torchrun ranks)."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        if path.name == keep:
            continue
        if path.is_dir() and not path.is_symlink() and path.name.startswith((STAGING_PREFIX, TRASH_PREFIX)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _move(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)


def _prune_empty_dirs(folder: Path, rel_files: Iterable[str]) -> None:
    """Remove the folders of ``rel_files`` that are now empty, bottom up, never ``folder`` itself."""
    dirs = {p for rel in rel_files for p in Path(rel).parents if str(p) != "."}
    for rel in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        path = folder / rel
        try:
            path.rmdir()  # only when empty
        except OSError:
            pass


# ----------------------------------------------------------------------------------------------- staging
class Staging:
    """A stage's output built in ``<folder>/.staging-<stage>-<token>/`` and swapped in by ``commit``.

    ``replaces``: the stages whose files the new output supersedes (their files are moved out first);
    ``last``: files moved in last (the finished marker, e.g. ``summary.json``), and moved out first.
    """

    def __init__(
        self,
        folder: str | Path,
        stage: str,
        replaces: Sequence[str] = (),
        last: Sequence[str] = (),
        name: str | None = None,
        owner: bool = True,
    ):
        self.folder = Path(folder)
        self.owner = owner  # False: another process of the run commits (or removes) the shared folder
        self.stage = stage
        self.replaces = tuple(replaces) or (stage,)
        self.last = tuple(last)
        self.shared = name is not None  # one staging folder for the processes of one run (torchrun ranks)
        self.path = self.folder / (name or f"{STAGING_PREFIX}{stage}-{os.getpid()}-{secrets.token_hex(4)}")

    def __enter__(self) -> Staging:
        self.path.mkdir(parents=True, exist_ok=self.shared)
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        if self.owner and self.path.exists():  # not committed (an error, or commit was never called)
            shutil.rmtree(self.path, ignore_errors=True)

    def new_files(self) -> list[str]:
        """The staged files (relative), the staging folder's own bookkeeping (lock, file manifest) left out."""
        files = [p.relative_to(self.path).as_posix() for p in sorted(self.path.rglob("*")) if p.is_file()]
        return [rel for rel in files if rel not in INTERNAL_FILES]

    def commit(self, extra_owned: dict[str, str] | None = None) -> list[str]:
        """Move the staged files into the run folder (see the class docstring); returns them (relative)."""
        manifest = read_manifest(self.folder)
        manifest.update(extra_owned or {})
        new = self.new_files()
        old = [rel for rel, stage in manifest.items() if stage in self.replaces]
        old.sort(key=lambda rel: rel not in self.last)  # the finished marker leaves first
        trash = self.folder / f"{TRASH_PREFIX}{self.stage}-{os.getpid()}-{secrets.token_hex(4)}"
        for rel in old:
            src = self.folder / rel
            if src.is_file() or src.is_symlink():
                _move(src, trash / rel)
            manifest.pop(rel, None)
        _prune_empty_dirs(self.folder, old)
        manifest.update({rel: self.stage for rel in new})
        write_manifest(self.folder, manifest)
        new.sort(key=lambda rel: rel in self.last)  # the finished marker arrives last
        for rel in new:
            _move(self.path / rel, self.folder / rel)
        shutil.rmtree(self.path, ignore_errors=True)
        shutil.rmtree(trash, ignore_errors=True)
        return new
