"""The benchmark runner: every method on every dataset, per-image metrics, saved outputs, summary statistics.

``run_bench(cfg)`` is the whole ``run.py bench`` command as a function (a sweep calls it once per cell):

1. ``prepare``: first check that every file and folder the experiment names exists (``harness.requirements``:
   datasets, checkpoints, output folders, metric weights; all missing paths in one error), then build every
   dataset, method and metric and check they fit together (scales, method checks, set-level metrics need saved
   images). All problems are reported in ONE ``BenchValidationError`` before any work starts.
2. For each method (built once, moved to the device once) and each dataset: upscale in batches of same-size
   images, time every batch, quantise the output to 8 bit (so the metrics equal what the saved PNGs give),
   compute per-image metrics, save the SR PNGs. A method that raises is recorded (traceback in ``errors/``)
   and the others carry on; corrupt input images stop the run or are skipped (``bench.on_corrupt``).
   A non-strict precomputed method (``output_folder`` with ``strict: false``) is evaluated on the images it
   has (``available(keys)``); the others are recorded as skipped for that method (``method_skipped`` in
   ``summary.json``, a note in the report). Precomputed methods get the per-image latency they report
   (``reported_latency(key)``), marked ``latency_source: reported``.
3. Set-level metrics (FID) from the saved folders; summary statistics with bootstrap CIs; ``summary.json``
   written last. Raises ``BenchFailedError`` at the very end if any method failed (the CLI exits 1).

``bench.efficiency`` (or ``run.py bench --efficiency``) adds ``harness.bench_efficiency.EfficiencyHook``, which
writes ``efficiency.json`` (the paper's Table 2: params, steps, latency, peak memory per method).

The on-disk layout is defined in ``harness.results``.
"""

from __future__ import annotations

import datetime as _dt
import random
import shutil
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from harness import results as R
from harness.atomic import write_json, write_text
from harness.config import ConfigError, ExperimentConfig, dump_yaml
from harness.data.imageio import ImageError, save_image
from harness.envinfo import collect_env


class BenchValidationError(ConfigError):
    """Problems found before any work started; the message lists every one of them."""


class RunExistsError(FileExistsError):
    """The run directory already holds a finished run and ``force`` was not given."""


class CorruptInputError(RuntimeError):
    """An input image could not be read and ``bench.on_corrupt`` is ``fail``."""


class BenchFailedError(RuntimeError):
    """Raised after all outputs are written when at least one method (or set-level metric) failed."""

    def __init__(self, run_dir: Path, failures: list[dict[str, Any]]):
        self.run_dir = Path(run_dir)
        self.failures = failures
        lines = [f"{f['method']} on {f['dataset']}: {f['error']}" for f in failures]
        super().__init__(
            f"{len(failures)} failure(s) in {run_dir} (tracebacks in {run_dir / 'errors'}):\n  " + "\n  ".join(lines)
        )


class MetricFlags(NamedTuple):
    lower_better: bool
    needs_reference: bool
    set_level: bool  # one value per image set (FID), computed from the saved folders

    @classmethod
    def of(cls, metric: Any) -> MetricFlags:
        return cls(
            bool(metric.lower_better),
            bool(getattr(metric, "needs_reference", True)),
            bool(getattr(metric, "set_level", False)),
        )


@dataclass
class Prepared:
    """Built components, keyed by their config names (config order)."""

    datasets: dict[str, Any]
    methods: dict[str, Any]
    metrics: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def flags(self) -> dict[str, MetricFlags]:
        return {name: MetricFlags.of(m) for name, m in self.metrics.items()}

    def image_metrics(self, dataset: Any) -> list[str]:
        """Per-image metrics computable on ``dataset`` (set-level ones and, without HR, FR ones excluded)."""
        return [
            k for k, f in self.flags.items() if not f.set_level and (dataset.has_reference or not f.needs_reference)
        ]


@dataclass
class BenchContext:
    """What hooks see: the config, the run dir, the device and the built components."""

    cfg: ExperimentConfig
    run_dir: Path
    device: torch.device
    prepared: Prepared


class BenchHook:
    """Extension points, e.g. an efficiency table writing ``efficiency.json`` (``results.write_efficiency``).

    Subclass and override what you need; pass instances as ``run_bench(cfg, hooks=[...])``.
    """

    def on_start(self, ctx: BenchContext) -> None: ...

    def on_method_start(self, ctx: BenchContext, method_name: str, method: Any) -> None: ...

    def on_batch(self, ctx: BenchContext, dataset: str, method: str, keys: list[str], seconds: float) -> None: ...

    def on_end(self, ctx: BenchContext, summary: pd.DataFrame) -> None: ...


# ----------------------------------------------------------------------------------------------- helpers
def resolve_device(name: str | torch.device | None) -> torch.device:
    """``auto`` (or None) -> ``cuda`` when available, else ``cpu``; anything else as given."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"bench.device: {name!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def quantize_8bit(img: torch.Tensor) -> torch.Tensor:
    """Round to the 8-bit grid exactly as ``save_image`` does, so metrics equal those of the saved PNGs."""
    return img.clamp(0.0, 1.0).mul(255.0).add(0.5).floor().div(255.0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _is_strict(method: Any) -> bool:
    """Whether missing precomputed outputs are an error (``strict``, the default) or skipped."""
    strict = getattr(method, "strict", None)
    if strict is None:
        strict = getattr(getattr(method, "config", None), "strict", True)
    return bool(strict)


def unavailable_keys(method: Any, keys: Sequence[str]) -> list[str]:
    """Keys a non-strict precomputed method has no output for (evaluated without them); [] otherwise."""
    available = getattr(method, "available", None)
    if not callable(available) or _is_strict(method):
        return []
    have = set(available(list(keys)))
    return [k for k in keys if k not in have]


def reported_latency(method: Any, key: str) -> float:
    """Per-image seconds a precomputed method reports for ``key`` (``reported_latency``), else NaN."""
    getter = getattr(method, "reported_latency", None)
    value = getter(key) if callable(getter) else None
    return float(value) if value is not None else float("nan")


def latency_source(method: Any) -> str:
    """``measured`` (timed here), ``reported`` (precomputed, with reported timings) or ``unknown``."""
    if not getattr(method, "precomputed", False):
        return "measured"
    getter = getattr(method, "reported_latencies", None)
    return "reported" if callable(getter) and getter() else "unknown"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# ----------------------------------------------------------------------------------------------- validation
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
                problems.append(f"{kind}[{i}] ({spec.name}): {_first_line(exc)}")
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
            check = getattr(method, "check", None)
            if callable(check):
                try:
                    problems.extend(f"methods ({m_name}) on {ds_name}: {p}" for p in check(keys) or [])
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"methods ({m_name}) on {ds_name}: check failed: {_first_line(exc)}")
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
                problems.append(f"metrics ({mt_name}): cannot move to {device}: {_first_line(exc)}")
    if problems:
        for method in methods.values():
            method.close()
        raise BenchValidationError(
            f"{cfg.source}: {len(problems)} problem(s), nothing was run:\n  - " + "\n  - ".join(problems)
        )
    return Prepared(datasets, methods, metrics, notes)


# ----------------------------------------------------------------------------------------------- one cell
@dataclass
class _DatasetState:
    """Per-dataset bookkeeping shared by all methods."""

    skipped: dict[str, str] = field(default_factory=dict)  # image key -> error
    method_skipped: dict[str, dict[str, str]] = field(default_factory=dict)  # method -> {key: reason}
    refs_saved: set[str] = field(default_factory=set)
    rows: list[dict[str, Any]] = field(default_factory=list)


def _run_cell(
    ctx: BenchContext,
    ds_name: str,
    ds: Any,
    m_name: str,
    method: Any,
    state: _DatasetState,
    hooks: Sequence[BenchHook],
    progress: bool,
) -> list[dict[str, Any]]:
    """Upscale one dataset with one method; return its per-image rows."""
    cfg, device, run_dir = ctx.cfg, ctx.device, ctx.run_dir
    n = len(ds) if cfg.bench.max_images is None else min(len(ds), cfg.bench.max_images)
    keys = list(ds.keys)
    flags = ctx.prepared.flags
    metrics = {k: ctx.prepared.metrics[k] for k in ctx.prepared.image_metrics(ds)}
    need_all_refs = any(f.set_level for f in flags.values())
    grid_keys = set(keys[: cfg.report.max_images_in_grid])
    scale = int(method.scale)
    timed = not getattr(method, "precomputed", False)
    warm = device.type != "cuda" or not timed  # CUDA: one untimed warm-up call (kernel selection, allocator)
    rows: list[dict[str, Any]] = []
    unavailable = set(unavailable_keys(method, keys[:n]))
    if unavailable:
        reason = "no precomputed output (strict: false)"
        state.method_skipped.setdefault(m_name, {}).update({k: reason for k in keys[:n] if k in unavailable})

    def flush(batch: list[Any]) -> None:
        nonlocal warm
        lr = torch.stack([s.lr for s in batch]).to(device)
        batch_keys = [s.key for s in batch]
        if not warm:
            method.upscale(lr, batch_keys)
            _sync(device)
            warm = True
        start = time.perf_counter()
        sr = method.upscale(lr, batch_keys)
        _sync(device)
        seconds = time.perf_counter() - start
        expected = (len(batch), 3, lr.shape[-2] * scale, lr.shape[-1] * scale)
        if tuple(sr.shape) != expected:
            raise ValueError(
                f"method {m_name!r} returned shape {tuple(sr.shape)} for LR batch "
                f"{tuple(lr.shape)} ({batch_keys[0]}...); expected {expected}"
            )
        sr = quantize_8bit(sr.float())
        hr = torch.stack([s.hr for s in batch]).to(device) if ds.has_reference else None
        if hr is not None and hr.shape != sr.shape:
            raise ValueError(
                f"dataset {ds_name!r}: HR of {batch_keys[0]} has shape {tuple(hr.shape[1:])}, "
                f"SR has {tuple(sr.shape[1:])}"
            )
        values = {}
        for mt_name, metric in metrics.items():
            out = metric(sr, hr if flags[mt_name].needs_reference else None)
            values[mt_name] = torch.as_tensor(out).reshape(-1).double().cpu().tolist()
            if len(values[mt_name]) != len(batch):
                raise ValueError(f"metric {mt_name!r} returned {len(values[mt_name])} values for {len(batch)}")
        for j, sample in enumerate(batch):
            if cfg.bench.save_images:
                save_image(sr[j].cpu(), R.sr_image_path(run_dir, ds_name, m_name, sample.key))
            row = {"dataset": ds_name, "method": m_name, R.IMAGE_COL: sample.key}
            row.update({k: v[j] for k, v in values.items()})
            row[R.LATENCY_COL] = seconds / len(batch) if timed else reported_latency(method, sample.key)
            rows.append(row)
        for hook in hooks:
            hook.on_batch(ctx, ds_name, m_name, batch_keys, seconds)

    batch: list[Any] = []
    with tqdm(total=n, desc=f"{m_name} | {ds_name}", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for i in range(n):
            key = keys[i]
            needs_ref = cfg.bench.save_images and key not in state.refs_saved and (need_all_refs or key in grid_keys)
            if key in state.skipped or (key in unavailable and not needs_ref):
                bar.update(1)
                continue
            try:
                sample = ds[i]
            except Exception as exc:  # noqa: BLE001 - a data problem, never blamed on the method
                if not isinstance(exc, ImageError):
                    raise CorruptInputError(f"loading {ds_name}/{key} failed: {_first_line(exc)}") from exc
                if cfg.bench.on_corrupt == "fail":
                    raise CorruptInputError(
                        f"{exc}\n(bench.on_corrupt is 'fail'; set bench.on_corrupt=skip to skip unreadable images)"
                    ) from None
                warnings.warn(f"skipping {ds_name}/{key}: {exc}", stacklevel=2)
                state.skipped[key] = str(exc)
                bar.update(1)
                continue
            if needs_ref:
                save_image(sample.lr, R.reference_path(run_dir, ds_name, "lr", key))
                if sample.hr is not None:
                    save_image(sample.hr, R.reference_path(run_dir, ds_name, "hr", key))
                state.refs_saved.add(key)
            if key in unavailable:  # loaded only to save its references for the other methods
                bar.update(1)
                continue
            if batch and (len(batch) >= cfg.bench.batch_size or batch[0].lr.shape != sample.lr.shape):
                flush(batch)
                bar.update(len(batch))
                batch = []
            batch.append(sample)
        if batch:
            flush(batch)
            bar.update(len(batch))
    return rows


# ----------------------------------------------------------------------------------------------- the run
def _record_failure(run_dir: Path, dataset: str, method: str, exc: BaseException) -> dict[str, Any]:
    path = R.error_path(run_dir, dataset, method)
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    write_text(path, f"dataset: {dataset}\nmethod: {method}\n\n{tb}")
    return {
        "dataset": dataset,
        "method": method,
        "error": _first_line(exc),
        "traceback": str(path.relative_to(run_dir)),
    }


def _claim_run_dir(run_dir: Path, force: bool) -> None:
    if (run_dir / "summary.json").exists() and not force:
        raise RunExistsError(
            f"{run_dir} already holds a finished run; pass --force (force=True) to overwrite "
            f"it or choose another name/output_root"
        )


def _clear_run_dir(run_dir: Path) -> None:
    for entry in R.OUTPUT_ENTRIES:
        path = run_dir / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


def run_bench(
    cfg: ExperimentConfig,
    *,
    device: str | torch.device | None = None,
    force: bool = False,
    hooks: Sequence[BenchHook] = (),
    progress: bool = True,
    notes: Sequence[str] = (),
) -> Path:
    """Run the benchmark described by ``cfg``; return the run directory (``cfg.run_dir``).

    ``notes`` are extra lines for ``summary.json`` and the report (e.g. "metric X left out: no weights").

    Raises BenchValidationError (nothing run), RunExistsError, CorruptInputError (on_corrupt=fail), or
    BenchFailedError after writing every output when some method failed.
    """
    dev = resolve_device(device if device is not None else cfg.bench.device)
    run_dir = cfg.run_dir
    _claim_run_dir(run_dir, force)
    hooks = [*hooks, *config_hooks(cfg, hooks)]
    prepared = prepare(cfg, dev)
    prepared.notes[:0] = list(notes)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    ctx = BenchContext(cfg, run_dir, dev, prepared)
    states = {name: _DatasetState() for name in prepared.datasets}
    failures: list[dict[str, Any]] = []
    closed: set[str] = set()

    def close(name: str) -> None:  # free a method's memory as soon as it is done, exactly once
        if name not in closed:
            closed.add(name)
            prepared.methods[name].close()

    try:
        _clear_run_dir(run_dir)
        R.write_config(run_dir, dump_yaml(cfg.to_dict()))
        write_json(run_dir / "env.json", collect_env(dev))
        for hook in hooks:
            hook.on_start(ctx)
        for m_name, method in prepared.methods.items():
            try:
                method.to(dev)
                for hook in hooks:
                    hook.on_method_start(ctx, m_name, method)
            except Exception as exc:  # noqa: BLE001
                failures.extend(_record_failure(run_dir, d, m_name, exc) for d in prepared.datasets)
                close(m_name)
                continue
            for ds_name, ds in prepared.datasets.items():
                seed_everything(cfg.seed)
                try:
                    with torch.inference_mode():
                        rows = _run_cell(ctx, ds_name, ds, m_name, method, states[ds_name], hooks, progress)
                except CorruptInputError:
                    raise
                except Exception as exc:  # noqa: BLE001 - one method failing must not stop the others
                    failures.append(_record_failure(run_dir, ds_name, m_name, exc))
                    continue
                states[ds_name].rows.extend(rows)
                table = R.per_image_table(states[ds_name].rows, prepared.image_metrics(ds))
                R.write_per_image(run_dir, ds_name, table, cfg.bench.results_format)
            close(m_name)
    finally:
        for m_name in prepared.methods:
            close(m_name)
    summary = _summarize(ctx, states, failures)
    for hook in hooks:
        hook.on_end(ctx, summary)
    skipped = {name: state.skipped for name, state in states.items()}
    meta = R.run_meta(cfg, dev, prepared, skipped, failures, started)
    _annotate_meta(meta, prepared, states)
    R.write_summary(run_dir, summary, meta)
    if failures:
        raise BenchFailedError(run_dir, failures)
    return run_dir


def config_hooks(cfg: ExperimentConfig, given: Sequence[BenchHook] = ()) -> list[BenchHook]:
    """Hooks the config asks for: an ``EfficiencyHook`` when ``bench.efficiency`` is set (unless given)."""
    options = getattr(cfg.bench, "efficiency", None)
    if options is None:
        return []
    from harness.bench_efficiency import EfficiencyHook

    if any(isinstance(h, EfficiencyHook) for h in given):
        return []
    return [EfficiencyHook(options)]


def _preview(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... and {len(names) - limit} more"


def _annotate_meta(meta: dict[str, Any], prepared: Prepared, states: dict[str, _DatasetState]) -> None:
    """Add what ``results.run_meta`` does not record: per-method skips and where each latency comes from."""
    notes = []
    for name, method in prepared.methods.items():
        source = latency_source(method)
        if name in meta.get("methods", {}):
            meta["methods"][name]["latency_source"] = source
        if source == "reported":
            notes.append(f"{name}: latency is the per-image time its timings file reports, not measured here")
    skipped = []
    for ds_name, state in states.items():
        for m_name, items in state.method_skipped.items():
            skipped += [{"dataset": ds_name, "method": m_name, R.IMAGE_COL: k, "error": e} for k, e in items.items()]
            notes.append(
                f"{m_name} on {ds_name}: {len(items)} image(s) without output skipped (strict: false), its "
                f"statistics cover the other images only: {_preview(list(items))}"
            )
    meta["method_skipped"] = skipped
    meta["notes"] = [*meta.get("notes", []), *notes]


def _summarize(ctx: BenchContext, states: dict[str, _DatasetState], failures: list[dict]) -> pd.DataFrame:
    """Per-image metrics + latency through the bootstrap, then set-level metrics from the saved folders."""
    cfg, run_dir, prepared = ctx.cfg, ctx.run_dir, ctx.prepared
    parts = []
    for ds_name, state in states.items():
        ds, table = prepared.datasets[ds_name], pd.DataFrame(state.rows)
        if table.empty:
            continue
        directions = {k: prepared.flags[k].lower_better for k in prepared.image_metrics(ds)}
        directions[R.LATENCY_COL] = True
        parts.append(R.summarize(table, directions, n_boot=cfg.bench.bootstrap_samples, seed=cfg.seed))
        for mt_name, flags in prepared.flags.items():
            if not flags.set_level or (flags.needs_reference and not ds.has_reference):
                continue
            for m_name in dict.fromkeys(table["method"]):
                sr_dir, hr_dir = (
                    R.sr_image_dir(run_dir, ds_name, m_name),
                    R.reference_dir(run_dir, ds_name, "hr"),
                )
                try:
                    value = float(prepared.metrics[mt_name].compute_sets(sr_dir, hr_dir))
                except Exception as exc:  # noqa: BLE001
                    failures.append(_record_failure(run_dir, ds_name, f"{m_name} ({mt_name})", exc))
                    continue
                n_images = int((table["method"] == m_name).sum())
                parts.append(R.set_level_row(ds_name, m_name, mt_name, value, n_images, flags.lower_better))
    orders = {"dataset": list(prepared.datasets), "method": list(prepared.methods),
              "metric": [*prepared.metrics, R.LATENCY_COL]}  # fmt: skip
    return R.order_summary(parts, orders)
