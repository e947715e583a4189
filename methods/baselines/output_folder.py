"""A method whose SR images were produced elsewhere (StableSR, DiffBIR, PASD, SeeSR, OSEDiff, ...).

Diffusion baselines are run with their own repositories and environments; their output folders are then
benchmarked here like any other method. For each LR key (file stem) the adapter loads
``<path>/<filename_tmpl.format(key)><suffix>.<any image extension>``, e.g. OSEDiff writes ``Canon_10_x1.png``
for the LR ``Canon_10_x1.png`` (template ``{}``, the default); BasicSR-style ``{}_ESRGAN`` templates or a
``suffix: _ESRGAN`` work too.

Checks, before and during a bench:
- missing outputs: an error listing them (``strict: true``, the default); with ``strict: false`` they are
  reported as a warning and skipped (the runner asks ``available(keys)``; ``upscale`` raises
  ``MissingOutputError`` for a batch that still contains one);
- extra files that match no LR key: a warning listing them (a sign of a wrong folder or template);
- wrong size (not LR size x ``scale``): an error naming the file and both sizes. Outputs are never resized
  silently, since that would change every full-reference metric.

Latency: these images were not produced here, so there is nothing to time; ``timings_csv`` (columns
``image,seconds``, one row per image, as measured by whoever ran the method) supplies
``reported_latency(key)`` for efficiency tables, which mark them as reported rather than measured.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from harness.data.imageio import IMAGE_SUFFIXES, load_image
from harness.registry import register
from methods.base import SRMethod

MAX_LISTED = 10  # names listed in a message before "... and N more"


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


@dataclass
class OutputFolderConfig:
    path: str  # folder with the method's SR images
    filename_tmpl: str = "{}"  # output stem from the LR key, '{}' = key (BasicSR's filename_tmpl)
    suffix: str = ""  # appended to the templated stem, e.g. '_ESRGAN' (BasicSR's val.suffix)
    scale: int = 4
    timings_csv: str | None = None  # per-image seconds, columns image,seconds
    strict: bool = True  # missing outputs are an error (true) or skipped with a warning (false)
    inference_steps: int | None = None  # as published (e.g. 1 for OSEDiff), for efficiency tables

    def __post_init__(self) -> None:
        if self.filename_tmpl.count("{}") != 1:
            raise ValueError(f"filename_tmpl must contain '{{}}' exactly once, got {self.filename_tmpl!r}")
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")


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


class OutputFolderMethod(SRMethod):
    """Benchmark SR images that another tool already wrote to a folder."""

    precomputed = True

    def __init__(self, config: OutputFolderConfig) -> None:
        super().__init__()
        self.config = config
        self.path = Path(config.path)
        self.scale = config.scale
        self.inference_steps = config.inference_steps
        if not self.path.is_dir():
            raise OutputFolderError(f"{self.path}: output folder not found")
        self._files = self._index()
        self._timings = read_timings(config.timings_csv) if config.timings_csv else None

    def _index(self) -> dict[str, Path]:
        """{stem: file} for every image in the folder; two images with one stem are ambiguous."""
        files: dict[str, Path] = {}
        for file in sorted(self.path.iterdir()):
            if not (file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES):
                continue
            if file.stem in files:
                raise OutputFolderError(
                    f"{self.path}: ambiguous outputs {files[file.stem].name} and {file.name} for one image"
                )
            files[file.stem] = file
        return files

    def output_stem(self, key: str) -> str:
        return self.config.filename_tmpl.format(key) + self.config.suffix

    def output_file(self, key: str) -> Path | None:
        """The output image for LR ``key``, or None if there is none."""
        return self._files.get(self.output_stem(key))

    def missing(self, keys: Sequence[str]) -> list[str]:
        return [k for k in keys if self.output_file(k) is None]

    def available(self, keys: Sequence[str]) -> list[str]:
        """The keys that have an output (what a non-strict bench evaluates)."""
        return [k for k in keys if self.output_file(k) is not None]

    def extra(self, keys: Sequence[str]) -> list[str]:
        """File names in the folder that match no key."""
        wanted = {self.output_stem(k) for k in keys}
        return [f.name for stem, f in self._files.items() if stem not in wanted]

    def _missing_message(self, missing: Sequence[str], total: int) -> str:
        expected = self.output_stem("<key>") + ".<png|jpg|...>"
        names = format_names(missing)
        return f"{self.path}: no output for {len(missing)} of {total} images ({expected}): {names}"

    def check(self, keys: Sequence[str]) -> list[str]:
        """Problems that should stop a bench before it starts (missing outputs when strict).

        Extra files, and missing outputs when not strict, are reported with ``warnings.warn`` instead.
        """
        problems: list[str] = []
        missing = self.missing(keys)
        if missing:
            message = self._missing_message(missing, len(keys))
            if self.config.strict:
                problems.append(message)
            else:
                warnings.warn(f"{message}; skipping them (strict: false)", stacklevel=2)
        extra = self.extra(keys)
        if extra:
            warnings.warn(
                f"{self.path}: {len(extra)} files match no LR image and are ignored: {format_names(extra)}",
                stacklevel=2,
            )
        return problems

    def upscale(self, lr: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        if lr.shape[0] != len(keys):
            raise ValueError(f"got {lr.shape[0]} LR images but {len(keys)} keys")
        missing = self.missing(keys)
        if missing:
            raise MissingOutputError(self._missing_message(missing, len(keys)), missing)
        h, w = lr.shape[-2:]
        want = (h * self.scale, w * self.scale)
        outputs = []
        for key in keys:
            file = self.output_file(key)
            assert file is not None
            img = load_image(file)
            if tuple(img.shape[-2:]) != want:
                raise OutputFolderError(
                    f"{file}: size {img.shape[-1]}x{img.shape[-2]} but expected {want[1]}x{want[0]} "
                    f"(LR {w}x{h} x{self.scale})"
                )
            outputs.append(img)
        return torch.stack(outputs).to(self.device)

    def output_size(self, key: str) -> tuple[int, int] | None:
        """(width, height) of the output image from its header (no decoding), or None if missing."""
        file = self.output_file(key)
        if file is None:
            return None
        with Image.open(file) as img:
            return img.size

    def reported_latency(self, key: str) -> float | None:
        """Seconds for image ``key`` from ``timings_csv`` (None without a CSV or a row for it)."""
        if self._timings is None:
            return None
        return self._timings.get(Path(key).stem, self._timings.get(self.output_stem(key)))

    def reported_latencies(self) -> dict[str, float]:
        """Every row of ``timings_csv`` ({image stem: seconds}); empty without a CSV."""
        return dict(self._timings or {})


@register("methods", "output_folder", description="Precomputed SR images from a folder", config=OutputFolderConfig)
def build_output_folder(config: OutputFolderConfig) -> OutputFolderMethod:
    return OutputFolderMethod(config)
