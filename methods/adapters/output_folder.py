"""A method whose SR images were produced elsewhere (StableSR, DiffBIR, PASD, SeeSR, OSEDiff, ...).

Diffusion baselines are run with their own repositories and environments; their output folders are then
benchmarked here like any other method. For each LR key (file stem) the adapter loads
``<folder>/<filename_tmpl.format(key)><suffix>.<any image extension>``, e.g. OSEDiff writes ``Canon_10_x1.png``
for the LR ``Canon_10_x1.png`` (template ``{}``, the default); BasicSR-style ``{}_ESRGAN`` templates or a
``suffix: _ESRGAN`` work too.

Where the images are, for a bench over several test sets (Table 1):

- ``path: outputs/OSEDiff``: one folder for every dataset (file stems must not collide across the sets);
- ``path: outputs/OSEDiff/{dataset}``: one folder per dataset, ``{dataset}`` being the dataset's name in the
  experiment (its ``name``, as in ``metrics/<dataset>.csv``). The method learns which dataset it is run on from
  ``for_dataset(name)`` (``SRMethod``'s hook, for the runner to call per dataset), which opens that folder;
- ``datasets: {DIV2K-Val: outputs/OSEDiff/DIV2K-Val, RealSR: ...}``: the same per-dataset folders listed
  explicitly (relative ones are under ``path`` when it is given). All are opened when the method is built, so
  this works without ``for_dataset`` too: each key is then looked up in every folder and must be in one only.

``timings_csv`` takes the ``{dataset}`` placeholder as well (one timings file per dataset); ``{dataset}`` is the
only placeholder (``{{``/``}}`` for literal braces).

Checks, before and during a bench:
- a missing folder: "``<folder>: output folder not found``" (``for dataset '<name>'`` for per-dataset folders);
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

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from harness.core.imageio import load_image
from harness.core.registry import register
from methods.adapters.output_files import (
    DatasetFolder,
    MissingOutputError,
    OutputFolderError,
    fill,
    format_names,
    has_placeholder,
    open_folder,
    read_timings,
)
from methods.base import SRMethod

log = logging.getLogger(__name__)

__all__ = ["MissingOutputError", "OutputFolderConfig", "OutputFolderError", "OutputFolderMethod", "dataset_paths"]


# ----------------------------------------------------------------------------------------------- config
@dataclass
class OutputFolderConfig:
    # folder with the method's SR images; '{dataset}' is replaced by the name of the dataset being evaluated
    path: str | None = None
    # {dataset name: folder} instead of a '{dataset}' placeholder; relative folders are under `path` if given
    datasets: dict[str, str] | None = None
    filename_tmpl: str = "{}"  # output stem from the LR key, '{}' = key (BasicSR's filename_tmpl)
    suffix: str = ""  # appended to the templated stem, e.g. '_ESRGAN' (BasicSR's val.suffix)
    scale: int = 4
    timings_csv: str | None = None  # per-image seconds, columns image,seconds; may contain '{dataset}'
    strict: bool = True  # missing outputs are an error (true) or skipped with a warning (false)
    inference_steps: int | None = None  # as published (e.g. 1 for OSEDiff), for efficiency tables

    def __post_init__(self) -> None:
        if self.filename_tmpl.count("{}") != 1:
            raise ValueError(f"filename_tmpl must contain '{{}}' exactly once, got {self.filename_tmpl!r}")
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        if self.path is None and self.datasets is None:
            raise ValueError(
                "give 'path' (one folder, or a folder per dataset with '{dataset}') or 'datasets' ({name: folder})"
            )
        has_placeholder(self.timings_csv, "timings_csv")
        if has_placeholder(self.path, "path") and self.datasets is not None:
            raise ValueError(
                f"path: {self.path!r} has a '{{dataset}}' placeholder and 'datasets' is given too; use one of "
                f"them ('datasets' folders are relative to 'path')"
            )
        if self.datasets is not None:
            if not self.datasets:
                raise ValueError("datasets: empty; map each dataset name to its folder, or leave 'datasets' out")
            for name, folder in self.datasets.items():
                if not folder:
                    raise ValueError(f"datasets.{name}: empty folder")

    @property
    def per_dataset(self) -> bool:
        """Whether each dataset has its own folder or timings file (a mapping or a '{dataset}' placeholder)."""
        return (
            self.datasets is not None
            or has_placeholder(self.path, "path")
            or has_placeholder(self.timings_csv, "timings_csv")
        )


def dataset_paths(config: OutputFolderConfig, dataset: str | None) -> tuple[Path, Path | None]:
    """(output folder, timings CSV or None) of ``dataset`` (None: the one folder of a plain ``path``).

    Raises OutputFolderError when ``config.datasets`` has no entry for ``dataset``, or when a per-dataset
    config is asked for ``dataset`` None.
    """
    if dataset is None and config.per_dataset:
        raise OutputFolderError("per-dataset outputs ('{dataset}' or 'datasets'): a dataset name is needed")
    if config.datasets is not None:
        if dataset not in config.datasets:
            listed = ", ".join(config.datasets)
            raise OutputFolderError(f"no output folder for dataset {dataset!r}: 'datasets' lists {listed}")
        folder = Path(config.datasets[dataset])
        if config.path is not None and not folder.is_absolute():
            folder = Path(fill(config.path, dataset)) / folder
    else:
        assert config.path is not None  # OutputFolderConfig requires path or datasets
        folder = Path(fill(config.path, dataset))
    timings = Path(fill(config.timings_csv, dataset)) if config.timings_csv else None
    return folder, timings


# ----------------------------------------------------------------------------------------------- method
class OutputFolderMethod(SRMethod):
    """Benchmark SR images that another tool already wrote to a folder (one for all datasets, or one each).

    ``dataset`` is the dataset this instance is bound to (``for_dataset``), None for the instance the registry
    builds. Opened folders are cached and shared by an instance and its per-dataset views.
    """

    precomputed = True

    def __init__(self, config: OutputFolderConfig) -> None:
        super().__init__()
        self.config = config
        self.scale = config.scale
        self.inference_steps = config.inference_steps
        self.per_dataset = config.per_dataset
        self.dataset: str | None = None
        self._folders: dict[str | None, DatasetFolder] = {}  # dataset (None: the one plain folder) -> folder
        self._timings: dict[Path, dict[str, float]] = {}  # timings file -> rows, each file read once
        if not self.per_dataset:
            self._folder(None)
        elif config.datasets is not None:  # listed: open them all now (works without for_dataset)
            for name in config.datasets:
                self._folder(name)

    # ------------------------------------------------------------------------------------------- folders
    def for_dataset(self, name: str) -> OutputFolderMethod:
        """This method bound to dataset ``name``: its folder is opened now (errors name folder and dataset).

        With one plain folder for every dataset, ``self``; otherwise a view sharing config, device and cache.
        """
        if not self.per_dataset:
            return self
        self._folder(name)
        view = copy.copy(self)
        view.dataset = name
        return view

    def _folder(self, dataset: str | None) -> DatasetFolder:
        """The folder of ``dataset`` (None: of a plain ``path``), opened and indexed on first use."""
        if dataset not in self._folders:
            path, timings_csv = dataset_paths(self.config, dataset)
            self._folders[dataset] = open_folder(path, dataset, timings_csv, self._read_timings)
        return self._folders[dataset]

    def _read_timings(self, path: Path) -> dict[str, float]:
        if path not in self._timings:
            self._timings[path] = read_timings(path)
        return self._timings[path]

    def _selection(self) -> list[DatasetFolder] | None:
        """The folders lookups search: the bound dataset's, the one plain folder, or every folder listed in
        ``datasets``; None for a ``{dataset}`` template that is not bound to a dataset."""
        if not self.per_dataset:
            return [self._folder(None)]
        if self.dataset is not None:
            return [self._folder(self.dataset)]
        if self.config.datasets is not None:
            return [self._folder(name) for name in self.config.datasets]
        return None

    def _active(self) -> list[DatasetFolder]:
        folders = self._selection()
        if folders is None:
            key = "path" if has_placeholder(self.config.path, "path") else "timings_csv"
            raise OutputFolderError(
                f"{key} {getattr(self.config, key)!r}: the '{{dataset}}' placeholder needs the dataset being "
                f"evaluated: use for_dataset(name), or list the folders with 'datasets: {{name: folder}}'"
            )
        return folders

    @staticmethod
    def _where(folders: Sequence[DatasetFolder]) -> str:
        return ", ".join(str(folder.path) for folder in folders)

    # ------------------------------------------------------------------------------------------- lookups
    def output_stem(self, key: str) -> str:
        return self.config.filename_tmpl.format(key) + self.config.suffix

    def _locate(self, key: str, folders: Sequence[DatasetFolder]) -> tuple[DatasetFolder, Path] | None:
        """(folder, file) of the output for ``key`` among ``folders``; in two of them it is ambiguous."""
        stem = self.output_stem(key)
        hits = [(folder, folder.files[stem]) for folder in folders if stem in folder.files]
        if len(hits) > 1:
            raise OutputFolderError(
                f"{key}: an output in each of {len(hits)} dataset folders ({', '.join(str(f) for _, f in hits)}); "
                f"the file names of the datasets collide, so bind the method to one with for_dataset(name)"
            )
        return hits[0] if hits else None

    def output_file(self, key: str) -> Path | None:
        """The output image for LR ``key``, or None if there is none."""
        found = self._locate(key, self._active())
        return found[1] if found else None

    def missing(self, keys: Sequence[str]) -> list[str]:
        return [k for k in keys if self.output_file(k) is None]

    def available(self, keys: Sequence[str]) -> list[str]:
        """The keys that have an output (what a non-strict bench evaluates)."""
        return [k for k in keys if self.output_file(k) is not None]

    def _extra(self, keys: Sequence[str]) -> tuple[list[DatasetFolder], list[str]]:
        wanted = {self.output_stem(k) for k in keys}
        folders = self._active()
        if len(folders) > 1:  # every listed dataset's folder: only those holding some of these keys count
            folders = [folder for folder in folders if not wanted.isdisjoint(folder.files)]
        return folders, [file.name for folder in folders for stem, file in folder.files.items() if stem not in wanted]

    def extra(self, keys: Sequence[str]) -> list[str]:
        """File names in the folder(s) that match no key."""
        return self._extra(keys)[1]

    def _missing_message(self, missing: Sequence[str], total: int) -> str:
        expected = self.output_stem("<key>") + ".<png|jpg|...>"
        names = format_names(missing)
        return f"{self._where(self._active())}: no output for {len(missing)} of {total} images ({expected}): {names}"

    def check(self, keys: Sequence[str]) -> list[str]:
        """Problems that should stop a bench before it starts (missing outputs when strict).

        Extra files, and missing outputs when not strict, are logged as warnings instead.
        """
        problems: list[str] = []
        missing = self.missing(keys)
        if missing:
            message = self._missing_message(missing, len(keys))
            if self.config.strict:
                problems.append(message)
            else:
                log.warning(f"{message}; skipping them (strict: false)")
        folders, extra = self._extra(keys)
        if extra:
            log.warning(
                f"{self._where(folders)}: {len(extra)} files match no LR image and are ignored: {format_names(extra)}"
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

    # ------------------------------------------------------------------------------------------- timings
    def _timed_folders(self) -> list[DatasetFolder]:
        """Folders with a timings file: as for lookups, or every one opened so far for an unbound template."""
        folders = self._selection()
        folders = list(self._folders.values()) if folders is None else folders
        return [folder for folder in folders if folder.timings is not None]

    def reported_latency(self, key: str) -> float | None:
        """Seconds for image ``key`` from ``timings_csv`` (None without a CSV or a row for it)."""
        folders = self._timed_folders()
        if len(folders) > 1:  # the timings of the dataset whose folder holds the output
            found = self._locate(key, folders)
            folders = [found[0]] if found else []
        if not folders:
            return None
        timings = folders[0].timings or {}
        return timings.get(Path(key).stem, timings.get(self.output_stem(key)))

    def reported_latencies(self) -> dict[str, float]:
        """Every row of ``timings_csv`` ({image stem: seconds}); empty without a CSV.

        Rows of several timings files (one per dataset, the method not bound to one) are keyed ``dataset/stem``.
        """
        files = {folder.timings_csv: folder for folder in self._timed_folders()}  # a shared file counts once
        if len(files) == 1:
            return dict(next(iter(files.values())).timings or {})
        return {f"{f.dataset}/{stem}": s for f in files.values() for stem, s in (f.timings or {}).items()}


@register("methods", "output_folder", description="Precomputed SR images from a folder", config=OutputFolderConfig)
def build_output_folder(config: OutputFolderConfig) -> OutputFolderMethod:
    return OutputFolderMethod(config)
