"""The evaluation of one method on one dataset, batch by batch, into per-image metric rows.

``evaluate`` upscales in batches of same-size images, times every batch, quantises the output to 8 bit (so
the metrics equal what the saved PNGs give), computes per-image metrics and saves the SR PNGs (and, once per
dataset, the LR/HR references). Corrupt input images stop the run (``CorruptInputError``) or are skipped
(``bench.on_corrupt``). A non-strict precomputed method is evaluated on the images it has
(``unavailable_keys``); precomputed methods get the per-image latency they report (``reported_latency``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from harness.bench import layout as R
from harness.bench.layout import first_line
from harness.bench.prepare import BenchContext, BenchHook
from harness.core.device import sync_device
from harness.core.imageio import ImageError, quantize_8bit, save_image


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

    skipped: dict[str, str] = field(default_factory=dict)  # image key -> error
    method_skipped: dict[str, dict[str, str]] = field(default_factory=dict)  # method -> {key: reason}
    refs_saved: set[str] = field(default_factory=set)
    rows: list[dict[str, Any]] = field(default_factory=list)


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
            sync_device(device)
            warm = True
        start = time.perf_counter()
        sr = method.upscale(lr, batch_keys)
        sync_device(device)
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
                    raise CorruptInputError(f"loading {ds_name}/{key} failed: {first_line(exc)}") from exc
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


class CorruptInputError(RuntimeError):
    """An input image could not be read and ``bench.on_corrupt`` is ``fail``."""
