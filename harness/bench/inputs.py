"""The identity of a bench run: its resolved config and the data manifest of everything it reads.

The data manifest has one group per dataset (``datasets/<name>``: ``lr/<key>`` and ``hr/<key>`` of every image
evaluated, with file name, size and sha256) and one per method that reads files (``methods/<name>``: its
checkpoints, output folders, timings files). Files are hashed once per run, streamed; a dataset that knows its
digests already (the bundled cache verifies them) is not hashed again. ``regress`` compares the ``datasets/``
groups of two runs: a change there is a change of the data, not of the method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.config.experiment import ExperimentConfig
from harness.core.identity import RunIdentity, file_entry

# Config keys that do not change what a bench computes (names, paths, the report's look, other stages)
BENCH_IDENTITY_EXCLUDED = ("name", "description", "output_root", "sweep", "report", "model", "train", "analysis")
METHOD_FILES = ("checkpoint", "vqvae", "output folder", "timings CSV")  # Requirement.what of a method's inputs
DATASET_GROUP = "datasets/"


def bench_config(cfg: ExperimentConfig) -> dict:
    """The part of the resolved config a bench run's identity covers."""
    return {k: v for k, v in cfg.to_dict().items() if k not in BENCH_IDENTITY_EXCLUDED}


def dataset_manifest(ds: Any, n: int | None) -> dict[str, Any]:
    """``{lr/<key>: {name, size, sha256}, hr/<key>: ...}`` of the first ``n`` images of ``ds``.

    Datasets that are not files (test stand-ins) are recorded by their keys only.
    """
    keys = list(ds.keys)[:n]
    path_of = getattr(ds, "path_of", None)
    known = getattr(ds, "digests", None) or {}
    out: dict[str, Any] = {}
    for key in keys:
        paths = path_of(key) if callable(path_of) else (None, None)
        for role, path in zip(("lr", "hr"), paths):
            if path is None:
                if role == "lr":
                    out[f"lr/{key}"] = "not a file"
                continue
            path = Path(path)
            out[f"{role}/{key}"] = file_entry(path, known.get(str(path)))
    return out


def method_manifest(spec: Any, index: int) -> dict[str, Any]:
    """``{<what>: {name, size, sha256}}`` of the files a method reads (every file of a folder)."""
    from harness.bench.prepare import component_requirements

    out: dict[str, Any] = {}
    for req in component_requirements(spec, index, "methods"):
        if req.what not in METHOD_FILES:
            continue
        if req.kind == "file" and req.path.is_file():
            out[req.what] = file_entry(req.path)
        elif req.kind == "dir" and req.path.is_dir():
            for path in sorted(p for p in req.path.rglob("*") if p.is_file()):
                out[f"{req.what}/{path.relative_to(req.path).as_posix()}"] = file_entry(path)
    return out


def bench_identity(cfg: ExperimentConfig, prepared: Any) -> RunIdentity:
    """The identity of the bench run ``cfg`` once its components are built (``prepared``)."""
    data: dict[str, Any] = {}
    for name, ds in prepared.datasets.items():
        data[f"{DATASET_GROUP}{name}"] = dataset_manifest(ds, cfg.bench.max_images)
    for i, spec in enumerate(cfg.methods):
        files = method_manifest(spec, i)
        if files:
            data[f"methods/{spec.name}"] = files
    return RunIdentity("bench", bench_config(cfg), data)


def dataset_groups(data: dict[str, Any]) -> dict[str, Any]:
    """The dataset part of a data manifest (what ``regress`` compares)."""
    return {k: v for k, v in data.items() if k.startswith(DATASET_GROUP)}
