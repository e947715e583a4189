"""The HR image files of training sources: folders (recursive), ``.txt`` list files, globs, bundled photos.

A folder is searched recursively (LSDIR's ``HR/train/0001000/*.png`` and FFHQ's ``images1024x1024/00000/*.png``
layouts alike); a list file names one path per line, relative to the list file. Files are sorted by path, then
a source's ``limit`` keeps the first N.
"""

from __future__ import annotations

import glob as globlib
from collections.abc import Sequence
from pathlib import Path

from harness.core.imageio import is_image_file
from harness.data.pairing import DatasetError
from harness.data.training.config import SourceConfig, TrainDataConfig


def _sorted_images(paths: Sequence[Path], base: Path | None = None) -> list[Path]:
    keyed = [(p.relative_to(base).as_posix() if base else p.as_posix(), p) for p in paths]
    return [p for _, p in sorted(keyed)]


def _list_source(src: SourceConfig) -> list[Path]:
    if src.bundled:
        from harness.data import bundled

        return list(bundled.resolve_images(None, None, src.split).values())
    if src.glob is not None:
        found = [Path(p) for p in globlib.glob(str(Path(src.glob).expanduser()), recursive=True)]
        files = _sorted_images([p for p in found if p.is_file() and is_image_file(p)])
        if not files:
            raise DatasetError(f"glob {src.glob!r}: matched no image files")
        return files
    path = Path(src.path).expanduser()
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and is_image_file(p) and not p.name.startswith(".")]
        if not found:
            raise DatasetError(f"{path}: no image files found (searched recursively for *.png, *.jpg, ...)")
        return _sorted_images(found, path)
    if path.is_file() and is_image_file(path):
        return [path]
    if path.is_file():
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        files = [(path.parent / ln).expanduser() for ln in lines if ln and not ln.startswith("#")]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise DatasetError(f"{path}: {len(missing)} listed files do not exist, e.g. {missing[0]}")
        if not files:
            raise DatasetError(f"{path}: the list file names no images")
        return files
    raise DatasetError(f"{path}: no such folder or list file")


def resolve_sources(sources: Sequence[SourceConfig]) -> list[Path]:
    """All HR image files of ``sources``, each sorted by path and cut to its ``limit``, in source order."""
    files: list[Path] = []
    for src in sources:
        found = _list_source(src)
        files.extend(found[: src.limit] if src.limit is not None else found)
    return files


def data_manifest(cfg: TrainDataConfig, where: str = "data") -> dict[str, dict]:
    """The files of a trainer's ``data:`` block, one group per source (``<where>.sources[i]``, or
    ``<where>.paired[i].lr|hr``): ``{file: {name, size, sha256}}``, every file hashed once.

    Listing the sources checks them too: a missing or empty folder raises ``DatasetError``.
    """
    from harness.core.identity import file_entry
    from harness.data.pairing import list_images

    data: dict[str, dict] = {}
    if cfg.paired:
        for i, src in enumerate(cfg.paired):
            for role, folder in (("lr", src.lr_dir), ("hr", src.hr_dir)):
                files = list_images(Path(folder).expanduser(), role.upper())
                data[f"{where}.paired[{i}].{role}"] = {k: file_entry(p) for k, p in sorted(files.items())}
        return data
    for i, src in enumerate(cfg.sources):
        root = Path(src.path).expanduser() if src.path else None
        data[f"{where}.sources[{i}]"] = {
            _entry_name(p, root, src.bundled): file_entry(p) for p in resolve_sources([src])
        }
    return data


def _entry_name(path: Path, root: Path | None, bundled: bool) -> str:
    if root is not None and root.is_dir():
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.name if bundled else str(path)
