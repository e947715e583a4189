"""Validation of a bench run before any work starts: build every component and check they fit together.

``prepare(cfg, device)`` first checks that every file and folder the experiment names exists
(``harness.requirements``: datasets, checkpoints, output folders, metric weights), then builds every dataset,
method and metric and cross-checks them (scales, method checks, set-level metrics need saved images). All
problems are reported in ONE ``BenchValidationError``.
"""

from __future__ import annotations

from typing import Any

import torch

from harness.bench_context import MetricFlags, Prepared
from harness.bench_errors import BenchValidationError, first_line
from harness.config import ExperimentConfig


def prepare(cfg: ExperimentConfig, device: torch.device) -> Prepared:
    """Build and cross-check every component; raise one BenchValidationError listing all problems.

    Missing files and folders are checked first, without building anything (loading checkpoints or metric
    networks is slow): if any is missing, the error lists every one of them and nothing else.
    """
    from harness.requirements import missing_paths_message

    missing = missing_paths_message(cfg)
    if missing is not None:
        raise BenchValidationError(missing)
    problems: list[str] = []
    notes: list[str] = []

    def build_all(kind: str, specs: list) -> dict[str, Any]:
        built = {}
        if kind != "metrics" and not specs:
            problems.append(f"{kind}: empty; list at least one {kind[:-1]}")
        for i, spec in enumerate(specs):
            try:
                built[spec.name] = spec.build()
            except Exception as exc:  # noqa: BLE001 - collected and reported together
                problems.append(f"{kind}[{i}] ({spec.name}): {first_line(exc)}")
        return built

    datasets = build_all("datasets", cfg.datasets)
    methods = build_all("methods", cfg.methods)
    metrics = build_all("metrics", cfg.metrics)
    limit = cfg.bench.max_images
    for ds_name, ds in datasets.items():
        if len(ds) == 0:
            problems.append(f"datasets ({ds_name}): no images found")
        keys = list(ds.keys)[:limit]
        for m_name, method in methods.items():
            if int(method.scale) != int(ds.scale):
                problems.append(
                    f"methods ({m_name}): scale x{method.scale} does not match dataset {ds_name!r} (x{ds.scale})"
                )
            try:
                bound = method.for_dataset(ds_name)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"methods ({m_name}) on {ds_name}: {first_line(exc)}")
                continue
            check = getattr(bound, "check", None)
            if callable(check):
                try:
                    problems.extend(f"methods ({m_name}) on {ds_name}: {p}" for p in check(keys) or [])
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"methods ({m_name}) on {ds_name}: check failed: {first_line(exc)}")
        for mt_name, metric in metrics.items():
            if MetricFlags.of(metric).needs_reference and not ds.has_reference:
                notes.append(f"{mt_name} needs HR references; not computed on {ds_name} (no HR images)")
    for mt_name, metric in metrics.items():
        if MetricFlags.of(metric).set_level and not cfg.bench.save_images:
            problems.append(
                f"metrics ({mt_name}): a set-level metric is computed from the saved images; "
                f"set bench.save_images: true"
            )
        if hasattr(metric, "to"):
            try:
                metric.to(device)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"metrics ({mt_name}): cannot move to {device}: {first_line(exc)}")
    if problems:
        for method in methods.values():
            method.close()
        raise BenchValidationError(
            f"{cfg.source}: {len(problems)} problem(s), nothing was run:\n  - " + "\n  - ".join(problems)
        )
    return Prepared(datasets, methods, metrics, notes)
