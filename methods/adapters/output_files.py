"""The files of precomputed SR outputs: folder index, timings CSV, the ``{dataset}`` template, their errors.

The building blocks of ``methods.adapters.output_folder`` (the ``output_folder`` method): pure functions and
one frozen dataclass, no method state. Every error names the file or folder (or the config key).
"""

from __future__ import annotations

import csv
import math
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.imageio import IMAGE_SUFFIXES

MAX_LISTED = 10  # names listed in a message before "... and N more"
PLACEHOLDER = "dataset"  # the one field ``path`` and ``timings_csv`` may contain: '{dataset}'


def format_names(names: Sequence[str], limit: int = MAX_LISTED) -> str:
    """``a, b, c`` or ``a, b, ... and 7 more`` (sorted), for messages that list files."""
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... and {len(names) - limit} more"


class OutputFolderError(ValueError):
    """A problem with a precomputed output folder; the message names the folder or file."""


class MissingOutputError(OutputFolderError):
    """Outputs missing for some keys; ``keys`` lists them (the runner may skip them when not strict)."""

    def __init__(self, message: str, keys: Sequence[str]) -> None:
        super().__init__(message)
        self.keys = list(keys)


# ----------------------------------------------------------------------------------------------- templates
def has_placeholder(template: str | None, key: str) -> bool:
    """Whether ``template`` (config key ``key``) contains ``{dataset}``; any other placeholder is an error."""
    if template is None:
        return False
    allowed = f"the only placeholder is '{{{PLACEHOLDER}}}' (the dataset's name)"
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{key}: {template!r}: {exc}; {allowed}, write '{{{{' and '}}}}' for braces") from None
    found = False
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name != PLACEHOLDER or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ValueError(f"{key}: unknown placeholder {shown!r} in {template!r}; {allowed}")
        found = True
    return found


def fill(template: str, dataset: str | None) -> str:
    """``template`` with ``{dataset}`` replaced by ``dataset`` (and ``{{``/``}}`` by braces)."""
    return template.format(**{PLACEHOLDER: dataset})


# ----------------------------------------------------------------------------------------------- files
def read_timings(path: str | Path) -> dict[str, float]:
    """``image,seconds`` CSV -> {image stem: seconds}. Errors name the file, row and value."""
    path = Path(path)
    if not path.is_file():
        raise OutputFolderError(f"{path}: timings CSV not found")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        if "image" not in columns or "seconds" not in columns:
            raise OutputFolderError(
                f"{path}: expected columns 'image' and 'seconds', found {', '.join(columns) or 'none'}"
            )
        timings: dict[str, float] = {}
        for row_number, row in enumerate(reader, start=2):
            value = row["seconds"]
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                raise OutputFolderError(f"{path}: line {row_number}: seconds {value!r} is not a number") from None
            if not math.isfinite(seconds) or seconds < 0:
                raise OutputFolderError(f"{path}: line {row_number}: seconds {value!r} must be finite and >= 0")
            stem = Path(row["image"]).stem
            if stem in timings:
                raise OutputFolderError(f"{path}: line {row_number}: image {row['image']!r} appears twice")
            timings[stem] = seconds
    return timings


def index_folder(path: Path) -> dict[str, Path]:
    """{stem: file} for every image in the folder; two images with one stem are ambiguous."""
    files: dict[str, Path] = {}
    for file in sorted(path.iterdir()):
        if not (file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES):
            continue
        if file.stem in files:
            raise OutputFolderError(f"{path}: ambiguous outputs {files[file.stem].name} and {file.name} for one image")
        files[file.stem] = file
    return files


@dataclass(frozen=True)
class DatasetFolder:
    """The outputs of one dataset (``dataset`` None: of every dataset): its images and reported timings."""

    dataset: str | None
    path: Path
    files: dict[str, Path]  # output stem -> image file
    timings_csv: Path | None
    timings: dict[str, float] | None  # image stem -> seconds, from timings_csv


def open_folder(
    path: Path, dataset: str | None, timings_csv: Path | None, read: Callable[[Path], dict[str, float]] = read_timings
) -> DatasetFolder:
    """Index ``path`` and read ``timings_csv``; a missing folder names the path (and the dataset)."""
    if not path.is_dir():
        raise OutputFolderError(f"{path}: output folder not found" + (f" for dataset {dataset!r}" if dataset else ""))
    timings = read(timings_csv) if timings_csv is not None else None
    return DatasetFolder(dataset, path, index_folder(path), timings_csv, timings)
