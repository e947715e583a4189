"""The evaluation of one method on one dataset, batch by batch, into per-image metric rows.

``evaluate`` upscales in batches of same-size images, times every batch (after an untimed warm-up call on the
first, on every device: ``LATENCY``), quantises the output to 8 bit (so the metrics equal what the saved PNGs
give), computes per-image metrics and saves the SR PNGs (and, once per dataset, the LR/HR references). An
image that fails at any stage is recorded (``DatasetState``) and the others are evaluated (``evaluate``). A
non-strict precomputed method is evaluated on the images it has (``unavailable_keys``); precomputed methods get
the per-image latency they report (``reported_latency``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.bench import layout as R
from harness.bench.layout import first_line
from harness.bench.prepare import BenchContext, BenchHook
from harness.core.device import sync_device
from harness.core.imageio import ImageError, quantize_8bit, save_image
from harness.core.progress import progress as progress_bar

log = logging.getLogger(__name__)


# How the latency column is measured (``summary.json`` "latency", the report): one record for every run.
WARMUP_CALLS = 1  # untimed upscale calls on the first batch of each method x dataset, before any timing
LATENCY = {
    "unit": "seconds per image",
    "measured": "wall time of each batch's upscale call, the device synchronised before the clock stops, divided "
    "by the images in the batch",
    "warmup": "untimed upscale calls on the first batch of every method on every dataset (all devices), so "
    "one-off start-up costs (lazy initialisation, kernel selection, allocator growth) stay out of the column",
}


def latency_record(batch_size: int) -> dict[str, Any]:
    """``summary.json``'s "latency": how ``latency_s`` was measured (``LATENCY``) at this batch size."""
    return {**LATENCY, "warmup_calls": WARMUP_CALLS, "batch_size": int(batch_size)}


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


@dataclass
class DatasetState:
    """Per-dataset bookkeeping shared by all methods."""

    skipped: dict[str, str] = field(default_factory=dict)  # image key -> why it could not be loaded
    method_skipped: dict[str, dict[str, str]] = field(default_factory=dict)  # method -> {key: reason}
    image_failures: list[dict[str, str]] = field(default_factory=list)  # {dataset, method, image, stage, error}
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # method -> {n_images, n_evaluated, n_failed}
    refs_saved: set[str] = field(default_factory=set)
    rows: list[dict[str, Any]] = field(default_factory=list)


class ImageFailure(Exception):
    """One image (or batch) failed at ``stage`` (upscale, output, reference, metric, memory); says why."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


# Images failing in a row, from the first one, after which the method counts as broken (its error becomes one
# failure of the whole method x dataset, with its traceback) instead of being retried on every image; the same
# when no image at all worked.
BROKEN_AFTER = 3


def _out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "out of memory" in str(exc).lower()


def _reason(exc: BaseException) -> str:
    if _out_of_memory(exc):
        return f"out of memory ({first_line(exc)})"
    return first_line(exc) if not isinstance(exc, ImageFailure) else str(exc)


def _failure(stage: str, exc: BaseException) -> ImageFailure:
    """``exc`` at ``stage`` as an ImageFailure (stage ``memory`` whatever the stage, when it is out of memory)."""
    failure = ImageFailure("memory" if _out_of_memory(exc) else stage, _reason(exc))
    failure.__cause__ = exc
    return failure


def score_batch(
    metrics: dict[str, Any], flags: dict[str, Any], sr: torch.Tensor, hr: torch.Tensor | None
) -> dict[str, list[float]]:
    """The metric stage of one batch: every per-image metric on the 8-bit SR (and HR) -> one float per image.

    A metric that raises or returns a non-finite value is an ``ImageFailure`` of stage ``metric`` naming it;
    one returning the wrong number of values is a bug (ValueError). ``benchmarks/metric_overhead.py`` times
    this against plain pyiqa calls.
    """
    values: dict[str, list[float]] = {}
    n = int(sr.shape[0])
    for mt_name, metric in metrics.items():
        try:
            out = metric(sr, hr if flags[mt_name].needs_reference else None)
            values[mt_name] = torch.as_tensor(out).reshape(-1).double().cpu().tolist()
        except Exception as exc:  # noqa: BLE001
            failure = _failure("metric", exc)
            raise ImageFailure(failure.stage, f"{mt_name}: {failure}") from exc
        if len(values[mt_name]) != n:
            raise ValueError(f"metric {mt_name!r} returned {len(values[mt_name])} values for {n}")
        bad = [v for v in values[mt_name] if not math.isfinite(v)]
        if bad:
            raise ImageFailure("metric", f"{mt_name} returned {bad[0]} (not a finite number)")
    return values


def evaluate(
    ctx: BenchContext,
    ds_name: str,
    ds: Any,
    m_name: str,
    method: Any,
    state: DatasetState,
    hooks: Sequence[BenchHook],
    progress: bool,
) -> list[dict[str, Any]]:
    """Upscale one dataset with one method; return its per-image rows.

    An image that fails (its file cannot be read, the method fails on it or returns the wrong size, a metric
    cannot be computed on it or returns a non-finite value, or it does not fit in memory) is recorded in
    ``state`` with its stage and reason, and the other images are evaluated: a failing batch is retried image by
    image. A method failing on its first ``BROKEN_AFTER`` images, or on every image, is broken: its error is
    raised (the runner records it as the method's failure on this dataset).
    """
    cfg, device, run_dir = ctx.cfg, ctx.device, ctx.run_dir
    n = len(ds) if cfg.bench.max_images is None else min(len(ds), cfg.bench.max_images)
    keys = list(ds.keys)
    flags = ctx.prepared.flags
    metrics = {k: ctx.prepared.metrics[k] for k in ctx.prepared.image_metrics(ds)}
    need_all_refs = any(f.set_level for f in flags.values())
    grid_keys = set(keys[: cfg.report.max_images_in_grid])
    scale = int(method.scale)
    timed = not getattr(method, "precomputed", False)
    warmups = WARMUP_CALLS if timed else 0  # the first call of a method can be ~100x slower than the next ones
    rows: list[dict[str, Any]] = []
    unavailable = set(unavailable_keys(method, keys[:n]))
    if unavailable:
        reason = "no precomputed output (strict: false)"
        state.method_skipped.setdefault(m_name, {}).update({k: reason for k in keys[:n] if k in unavailable})
    counts = state.counts.setdefault(m_name, {"n_images": 0, "n_evaluated": 0, "n_failed": 0})
    streak: dict[str, Any] = {"failed": 0, "succeeded": 0, "last": None}

    def compute(batch: list[Any]) -> list[dict[str, Any]]:
        nonlocal warmups
        lr = torch.stack([s.lr for s in batch]).to(device)
        batch_keys = [s.key for s in batch]
        try:
            while warmups:
                method.upscale(lr, batch_keys)
                sync_device(device)
                warmups -= 1
            start = time.perf_counter()
            sr = method.upscale(lr, batch_keys)
            sync_device(device)
            seconds = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - attributed to this batch, retried per image
            raise _failure("upscale", exc) from exc
        expected = (len(batch), 3, lr.shape[-2] * scale, lr.shape[-1] * scale)
        if tuple(sr.shape) != expected:
            raise ImageFailure(
                "output",
                f"method {m_name!r} returned shape {tuple(sr.shape)} for LR batch "
                f"{tuple(lr.shape)} ({batch_keys[0]}...); expected {expected}",
            )
        sr = quantize_8bit(sr.float())
        hr = torch.stack([s.hr for s in batch]).to(device) if ds.has_reference else None
        if hr is not None and hr.shape != sr.shape:
            raise ImageFailure(
                "reference",
                f"dataset {ds_name!r}: HR of {batch_keys[0]} has shape {tuple(hr.shape[1:])}, "
                f"SR has {tuple(sr.shape[1:])}",
            )
        values = score_batch(metrics, flags, sr, hr)
        out_rows = []
        for j, sample in enumerate(batch):
            if cfg.bench.save_images:
                save_image(sr[j].cpu(), R.sr_image_path(run_dir, ds_name, m_name, sample.key))
            row = {"dataset": ds_name, "method": m_name, R.IMAGE_COL: sample.key}
            row.update({k: v[j] for k, v in values.items()})
            row[R.LATENCY_COL] = seconds / len(batch) if timed else reported_latency(method, sample.key)
            out_rows.append(row)
        for hook in hooks:
            hook.on_batch(ctx, ds_name, m_name, batch_keys, seconds)
        return out_rows

    mine: list[dict[str, str]] = []  # this method's image failures

    def broken(exc: ImageFailure) -> BaseException:
        """The method failed on every image so far: the original error stands for them all."""
        for item in mine:
            state.image_failures.remove(item)
        counts["n_failed"] -= len(mine)
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        if isinstance(cause, OSError):  # the method's, not a failure to write the run (which stops it)
            wrapped = RuntimeError(f"{m_name} failed on every image it was given: {first_line(cause)}")
            wrapped.__cause__ = cause
            return wrapped
        return cause

    def record(sample: Any, exc: ImageFailure) -> None:
        streak["failed"] += 1
        counts["n_failed"] += 1
        item = {"dataset": ds_name, "method": m_name, R.IMAGE_COL: sample.key, "stage": exc.stage, "error": str(exc)}
        state.image_failures.append(item)
        mine.append(item)
        streak["last"] = exc
        if streak["succeeded"] == 0 and streak["failed"] >= BROKEN_AFTER:
            raise broken(exc)

    def attempt(batch: list[Any]) -> list[dict[str, Any]]:
        try:
            return compute(batch)
        except (MemoryError, torch.OutOfMemoryError) as exc:  # e.g. an 8000x8000 input: that image only
            raise _failure("memory", exc) from exc

    def flush(batch: list[Any]) -> None:
        try:
            done = attempt(batch)
        except ImageFailure as exc:
            if len(batch) == 1:
                record(batch[0], exc)
                return
            done = []
            for sample in batch:  # isolate the failing image(s)
                try:
                    done += attempt([sample])
                except ImageFailure as single:
                    record(sample, single)
        streak["succeeded"] += len(done)
        counts["n_evaluated"] += len(done)
        rows.extend(done)
        if device.type == "cuda" and len(done) < len(batch):
            torch.cuda.empty_cache()  # after an out-of-memory image

    batch: list[Any] = []
    with progress_bar(total=n, desc=f"{m_name} | {ds_name}", unit="img", enabled=progress) as bar:
        for i in range(n):
            key = keys[i]
            needs_ref = cfg.bench.save_images and key not in state.refs_saved and (need_all_refs or key in grid_keys)
            if key not in unavailable:
                counts["n_images"] += 1
            if key in state.skipped:
                counts["n_failed"] += key not in unavailable
                bar.update(1)
                continue
            if key in unavailable and not needs_ref:
                bar.update(1)
                continue
            try:
                sample = ds[i]
            except Exception as exc:  # noqa: BLE001 - a data problem, never blamed on the method
                reason = (
                    str(exc) if isinstance(exc, ImageError) else f"loading {ds_name}/{key} failed: {first_line(exc)}"
                )
                action = "skipping" if cfg.bench.on_corrupt == "skip" else "cannot evaluate"
                log.warning(f"{action} {ds_name}/{key}: {reason}")
                state.skipped[key] = reason
                counts["n_failed"] += key not in unavailable
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
    if mine and not rows:  # not one image worked: the method failed on this dataset
        raise broken(streak["last"])
    return rows
