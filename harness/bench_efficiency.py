"""The efficiency table of a bench run (the paper's Table 2), measured by a ``BenchHook``: ``efficiency.json``.

``run.py bench EXP.yaml --efficiency`` (or ``bench.efficiency: {lr_size: 128}`` in the experiment) adds
:class:`EfficiencyHook`. When each method has been moved to the bench device, before it runs on any dataset,
the hook measures, with the conventions of :mod:`harness.efficiency`:

- parameters: total (each tensor once) and per component (``method.parameter_counts()``); ``None`` (unknown,
  never 0) for precomputed or external methods;
- ``inference_steps`` as the method declares it;
- latency of one ``upscale`` call at batch 1 on a seeded random ``lr_size`` x ``lr_size`` input: median and
  IQR over ``repeats`` timed calls after ``warmup`` untimed ones;
- peak memory of one more call (CUDA: torch's peak allocation; CPU: peak RSS increase);
- optionally images/s for ``batch_sizes``.

Precomputed methods (output folders) cannot be timed here; their entry carries the median and IQR of the
per-image seconds their timings file reports, with ``time_source: "reported"``. A measurement that fails
(e.g. CUDA out of memory at that size) is recorded as the entry's ``error`` and never fails the bench.

``efficiency.json``::

    {"version": 1, "lr_size": [128, 128], "output_size": [512, 512], "batch_size": 1, "repeats": 5,
     "warmup": 2, "device": "cuda", "device_name": "NVIDIA H100 ...", "memory_basis": "...",
     "methods": {"<name>": {"type", "precomputed", "params": {"total", "components"}, "inference_steps",
                            "time_source", "latency": {"median", "iqr", "mean", "n", "all"},
                            "peak_memory_bytes", "device", "throughput", "error"}}}
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import torch

from harness import efficiency as E
from harness.config import EfficiencyConfig
from harness.results import write_efficiency
from harness.runner import BenchContext, BenchHook

FORMAT_VERSION = 1


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine() or "cpu"


def reported_stats(method: Any) -> dict[str, Any] | None:
    """Median/IQR of the per-image seconds a precomputed method reports (``reported_latencies()``)."""
    getter = getattr(method, "reported_latencies", None)
    values = list(getter().values()) if callable(getter) else []
    if not values:
        return None
    q25, q75 = np.percentile(np.asarray(values, dtype=np.float64), [25, 75])
    return {
        "median": float(statistics.median(values)),
        "iqr": float(q75 - q25),
        "mean": float(statistics.fmean(values)),
        "n": len(values),
    }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def measure_method(method: Any, opts: EfficiencyConfig) -> dict[str, Any]:
    """One ``efficiency.json`` entry for ``method`` (on its current device); errors go into ``error``."""
    precomputed = bool(getattr(method, "precomputed", False))
    entry: dict[str, Any] = {
        "precomputed": precomputed,
        "params": {"total": None, "components": None},
        "inference_steps": getattr(method, "inference_steps", None),
        "time_source": "unknown",
        "latency": None,
        "peak_memory_bytes": None,
        "device": "reported" if precomputed else str(method.device),
        "throughput": [],
        "error": None,
    }
    if E.params_known(method):
        entry["params"] = {
            "total": E.count_parameters(method)["total"],
            "components": method.parameter_counts(),
        }
    if precomputed:
        stats = reported_stats(method)
        if stats is not None:
            entry["time_source"], entry["latency"] = "reported", stats
        return entry
    lr = E.random_lr(1, opts.lr_size, method.device)
    try:
        stats = E.measure_latency(method, lr, repeats=opts.repeats, warmup=opts.warmup)
        entry["time_source"] = "measured"
        entry["latency"] = {"median": stats.median, "iqr": stats.iqr, "mean": stats.mean,
                            "n": len(stats.all), "all": list(stats.all)}  # fmt: skip
        if opts.memory:
            entry["peak_memory_bytes"] = E.peak_memory(method, lr, warmup=0)
        if opts.batch_sizes:
            entry["throughput"] = E.throughput_vs_batch(
                method, opts.lr_size, opts.batch_sizes, repeats=opts.repeats, warmup=1
            )
    except Exception as exc:  # noqa: BLE001 - an efficiency problem must not fail the quality bench
        entry["error"] = _first_line(exc)
        if method.device.type == "cuda":
            torch.cuda.empty_cache()
    del lr
    return entry


class EfficiencyHook(BenchHook):
    """Measures every method once (``on_method_start``) and writes ``efficiency.json`` (``on_end``)."""

    def __init__(self, options: EfficiencyConfig | None = None) -> None:
        self.options = options if options is not None else EfficiencyConfig()
        self.entries: dict[str, dict[str, Any]] = {}

    def on_start(self, ctx: BenchContext) -> None:
        self.entries = {}

    def on_method_start(self, ctx: BenchContext, method_name: str, method: Any) -> None:
        spec_types = {s.name: s.type for s in ctx.cfg.methods}
        try:
            entry = measure_method(method, self.options)
        except Exception as exc:  # noqa: BLE001 - never fail the quality bench (the runner would)
            entry = {"error": _first_line(exc)}
        self.entries[method_name] = {"type": spec_types.get(method_name), **entry}

    def on_end(self, ctx: BenchContext, summary: Any) -> None:
        write_efficiency(ctx.run_dir, self.document(ctx))

    def document(self, ctx: BenchContext) -> dict[str, Any]:
        """The ``efficiency.json`` content (methods in config order, also those that failed to start)."""
        opts, device = self.options, ctx.device
        scales = {int(m.scale) for m in ctx.prepared.methods.values()}
        scale = scales.pop() if len(scales) == 1 else None
        methods = {name: self.entries[name] for name in ctx.prepared.methods if name in self.entries}
        for name in ctx.prepared.methods:
            if name not in methods:
                methods[name] = {"error": "not measured: the method could not be moved to the device"}
        return {
            "version": FORMAT_VERSION,
            "lr_size": [opts.lr_size, opts.lr_size],
            "output_size": [opts.lr_size * scale] * 2 if scale else None,
            "batch_size": 1,
            "repeats": opts.repeats,
            "warmup": opts.warmup,
            "device": str(device),
            "device_name": _device_name(device),
            "memory_basis": E.memory_basis(device) if opts.memory else None,
            "methods": methods,
        }
