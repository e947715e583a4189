"""Efficiency measurement: parameters, latency, peak memory, throughput, and a Table-2-style summary.

Conventions (what the numbers mean, so tables compare like with like):
- **Parameters** count each tensor once (shared modules are not double-counted in the total), per component
  from ``method.modules()``. Methods whose weights are not in this process (``precomputed`` output folders,
  ``external`` commands) report ``None``: unknown, never 0.
- **Latency** is wall time of ``method.upscale`` on one batch, under ``torch.inference_mode``, after
  ``warmup`` untimed calls; median and IQR over ``repeats`` timed calls. On CUDA the call is bracketed by CUDA
  events after a device synchronize (GPU work is asynchronous; host timers alone would under-measure); on CPU
  ``time.perf_counter``. Input pixels are seeded random values: timing does not depend on content for
  feed-forward nets, and no quality metric is ever computed from these calls.
- **Peak memory**, CUDA: ``torch.cuda.max_memory_allocated`` during one call after resetting the peak, i.e.
  everything torch holds at the peak, weights included (the figure papers report). CPU: the increase of the
  process's peak resident set size over its resident size before the call. tracemalloc cannot see torch's C++
  allocations, so the kernel's high-water mark is used: on Linux it is reset by writing ``5`` to
  ``/proc/self/clear_refs`` and read back as ``VmHWM``; free heap is first returned to the OS
  (``malloc_trim``) so reused allocator memory is not hidden. Elsewhere a psutil sampling thread (1 ms) is the
  fallback, which can miss short spikes. The CPU figure excludes resident weights and counts the whole process
  (other threads included), so keep other work off the process while measuring.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import re
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from harness.bench.layout import first_line, write_efficiency
from harness.bench.prepare import BenchContext, BenchHook
from harness.config.experiment import EfficiencyConfig
from harness.core.envinfo import device_name
from harness.core.progress import progress as progress_bar

if TYPE_CHECKING:
    from methods.base import SRMethod

TABLE_COLUMNS = (
    "Method",
    "Params (M)",
    "Inference steps",
    "Inference time (s)",
    "Time IQR (s)",
    "Time source",
    "Peak memory (MiB)",
    "Memory basis",
    "Device",
    "LR size",
)


@dataclass(frozen=True)
class LatencyStats:
    """Seconds per ``upscale`` call (one batch of ``batch_size`` images)."""

    median: float
    iqr: float  # 75th - 25th percentile (linear interpolation)
    mean: float
    all: tuple[float, ...]  # every timed repeat, in order
    batch_size: int = 1
    device: str = "cpu"

    @property
    def min(self) -> float:
        return min(self.all)

    @property
    def max(self) -> float:
        return max(self.all)

    @property
    def per_image(self) -> float:
        """Median seconds per image."""
        return self.median / self.batch_size

    @classmethod
    def from_samples(cls, samples: Sequence[float], batch_size: int = 1, device: str = "cpu") -> LatencyStats:
        if not samples:
            raise ValueError("no timing samples")
        q25, q75 = np.percentile(np.asarray(samples, dtype=np.float64), [25, 75])
        return cls(
            median=float(statistics.median(samples)),
            iqr=float(q75 - q25),
            mean=float(statistics.fmean(samples)),
            all=tuple(float(s) for s in samples),
            batch_size=batch_size,
            device=device,
        )


def params_known(method: SRMethod) -> bool:
    """False for methods whose weights live elsewhere (precomputed outputs, external commands)."""
    return not (method.precomputed or getattr(method, "external", False))


def count_parameters(method: SRMethod) -> dict[str, int | None]:
    """``{"total": n, <component>: n, ...}`` from ``method.modules()``; ``{"total": None}`` when unknown."""
    if not params_known(method):
        return {"total": None}
    modules = method.modules()
    if "total" in modules:
        raise ValueError("a method component may not be called 'total'")
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in modules.items()}
    return {"total": method.parameter_total(), **counts}


def _keys(lr: torch.Tensor, keys: Sequence[str] | None) -> list[str]:
    return list(keys) if keys is not None else [f"efficiency_{i:03d}" for i in range(lr.shape[0])]


def _check_runnable(method: SRMethod, what: str) -> None:
    if method.precomputed:
        raise ValueError(
            f"cannot measure {what} of a precomputed method ({type(method).__name__}): its outputs were made "
            "elsewhere; use its reported_latency() instead"
        )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    method: SRMethod,
    lr: torch.Tensor,
    repeats: int = 5,
    warmup: int = 2,
    *,
    keys: Sequence[str] | None = None,
    progress: bool = False,
) -> LatencyStats:
    """Time ``method.upscale(lr)`` ``repeats`` times after ``warmup`` untimed calls (see module docstring)."""
    _check_runnable(method, "latency")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    device = method.device
    lr = lr.to(device)
    keys = _keys(lr, keys)
    samples: list[float] = []
    bar = progress_bar(total=warmup + repeats, desc=f"latency {type(method).__name__}", enabled=progress, leave=False)
    with torch.inference_mode():
        for _ in range(warmup):
            method.upscale(lr, keys)
            bar.update(1)
        for _ in range(repeats):
            if device.type == "cuda":
                _sync(device)
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                method.upscale(lr, keys)
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end) / 1000.0)
            else:
                t0 = time.perf_counter()
                method.upscale(lr, keys)
                samples.append(time.perf_counter() - t0)
            bar.update(1)
    bar.close()
    return LatencyStats.from_samples(samples, batch_size=int(lr.shape[0]), device=str(device))


# ----------------------------------------------------------------------------------------------- memory
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{_STATUS} has no {field} line")
    return int(match.group(1))


def _malloc_trim() -> None:
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    try:
        ctypes.CDLL(libc_name).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _can_reset_hwm() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        _status_kib("VmHWM")
        return True
    except OSError:
        return False
    except RuntimeError:
        return False


def cpu_peak_rss_increase(fn: Callable[[], Any]) -> int:
    """Bytes by which the process's peak RSS during ``fn()`` exceeds its RSS just before (see module doc)."""
    gc.collect()
    _malloc_trim()
    if _can_reset_hwm():
        before = _status_kib("VmRSS")
        _CLEAR_REFS.write_text("5")  # VmHWM := current RSS
        fn()
        return max(0, _status_kib("VmHWM") - before) * 1024
    try:
        import psutil
    except ImportError:
        raise RuntimeError(
            "cannot measure CPU peak memory: /proc/self/clear_refs is unavailable and psutil is not installed"
        ) from None
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    return max(0, peak[0] - before)


def memory_basis(device: torch.device | str) -> str:
    """What ``peak_memory`` measures on ``device`` (a table column)."""
    return "cuda max_memory_allocated" if torch.device(device).type == "cuda" else "cpu peak RSS increase"


def peak_memory(method: SRMethod, lr: torch.Tensor, *, keys: Sequence[str] | None = None, warmup: int = 1) -> int:
    """Peak memory (bytes) of one ``method.upscale(lr)`` call: CUDA torch peak, or CPU peak RSS increase."""
    _check_runnable(method, "peak memory")
    device = method.device
    lr = lr.to(device)
    keys = _keys(lr, keys)
    with torch.inference_mode():
        for _ in range(warmup):  # first-call caches (cuDNN/oneDNN plans, lazy buffers) are not the method's peak
            method.upscale(lr, keys)
        if device.type == "cuda":
            _sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            method.upscale(lr, keys)
            _sync(device)
            return int(torch.cuda.max_memory_allocated(device))
        return cpu_peak_rss_increase(lambda: method.upscale(lr, keys))


# ----------------------------------------------------------------------------------------------- throughput
def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def random_lr(batch: int, size: int | Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """Seeded random LR input for timing only (never for metrics)."""
    h, w = _size_hw(size)
    gen = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, h, w, generator=gen).to(device)


def throughput_vs_batch(
    method: SRMethod,
    size: int | Sequence[int],
    batch_sizes: Sequence[int],
    *,
    repeats: int = 3,
    warmup: int = 1,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Median batch latency and images/s for each batch size; stops at the first CUDA out-of-memory.

    Rows: ``{"batch_size", "seconds_per_batch", "seconds_per_image", "images_per_second", "error"}``; an OOM
    row has ``error="out of memory"`` and NaN timings, and larger batch sizes are not tried.
    """
    rows: list[dict[str, Any]] = []
    for batch in progress_bar(batch_sizes, desc="batch sizes", enabled=progress, leave=False):
        if batch < 1:
            raise ValueError(f"batch sizes must be >= 1, got {batch}")
        lr = random_lr(batch, size, method.device)
        try:
            stats = measure_latency(method, lr, repeats=repeats, warmup=warmup)
        except torch.cuda.OutOfMemoryError:
            rows.append(
                {
                    "batch_size": batch,
                    "seconds_per_batch": float("nan"),
                    "seconds_per_image": float("nan"),
                    "images_per_second": float("nan"),
                    "error": "out of memory",
                }
            )
            torch.cuda.empty_cache()
            break
        rows.append(
            {
                "batch_size": batch,
                "seconds_per_batch": stats.median,
                "seconds_per_image": stats.median / batch,
                "images_per_second": batch / stats.median if stats.median > 0 else float("inf"),
                "error": None,
            }
        )
    return rows


# ----------------------------------------------------------------------------------------------- table
def _reported_seconds(method: SRMethod) -> tuple[float | None, int]:
    """Median of a method's reported per-image seconds (``reported_latencies()``), and how many there were."""
    getter = getattr(method, "reported_latencies", None)
    values = list(getter().values()) if callable(getter) else []
    return (float(statistics.median(values)), len(values)) if values else (None, 0)


def efficiency_table(
    methods: Mapping[str, SRMethod] | Sequence[tuple[str, SRMethod]],
    lr_size: int | Sequence[int],
    *,
    repeats: int = 5,
    warmup: int = 2,
    memory: bool = True,
    progress: bool = False,
):
    """One row per method, columns ``TABLE_COLUMNS`` (the paper's Table 2 plus spread, memory and device).

    Runnable methods are timed at batch 1 on a random ``lr_size`` input on their current device. Precomputed
    methods use the median of their reported per-image timings (``Time source`` says "reported"), with
    unknown parameters and memory (NaN).
    """
    import pandas as pd

    items = list(methods.items()) if isinstance(methods, Mapping) else list(methods)
    h, w = _size_hw(lr_size)
    rows = []
    for name, method in progress_bar(items, desc="efficiency", enabled=progress, leave=False):
        params = count_parameters(method)["total"]
        row: dict[str, Any] = {
            "Method": name,
            "Params (M)": params / 1e6 if params is not None else float("nan"),
            "Inference steps": method.inference_steps,
            "Inference time (s)": float("nan"),
            "Time IQR (s)": float("nan"),
            "Time source": "unknown",
            "Peak memory (MiB)": float("nan"),
            "Memory basis": None,
            "Device": str(method.device),
            "LR size": f"{w}x{h}",
        }
        if method.precomputed:
            seconds, count = _reported_seconds(method)
            row["Device"] = "reported"
            if seconds is not None:
                row["Inference time (s)"] = seconds
                row["Time source"] = f"reported (median of {count} images)"
        else:
            lr = random_lr(1, (h, w), method.device)
            stats = measure_latency(method, lr, repeats=repeats, warmup=warmup)
            row["Inference time (s)"] = stats.median
            row["Time IQR (s)"] = stats.iqr
            row["Time source"] = f"measured (median of {repeats})"
            if memory:
                row["Peak memory (MiB)"] = peak_memory(method, lr, warmup=0) / 2**20
                row["Memory basis"] = memory_basis(method.device)
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table["Inference steps"] = table["Inference steps"].astype("Int64")
    return table


# ----------------------------------------------------------------------------------------------- bench hook
FORMAT_VERSION = 1


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
    if params_known(method):
        entry["params"] = {
            "total": count_parameters(method)["total"],
            "components": method.parameter_counts(),
        }
    if precomputed:
        stats = reported_stats(method)
        if stats is not None:
            entry["time_source"], entry["latency"] = "reported", stats
        return entry
    lr = random_lr(1, opts.lr_size, method.device)
    try:
        stats = measure_latency(method, lr, repeats=opts.repeats, warmup=opts.warmup)
        entry["time_source"] = "measured"
        entry["latency"] = {"median": stats.median, "iqr": stats.iqr, "mean": stats.mean,
                            "n": len(stats.all), "all": list(stats.all)}  # fmt: skip
        if opts.memory:
            entry["peak_memory_bytes"] = peak_memory(method, lr, warmup=0)
        if opts.batch_sizes:
            entry["throughput"] = throughput_vs_batch(
                method, opts.lr_size, opts.batch_sizes, repeats=opts.repeats, warmup=1
            )
    except Exception as exc:  # noqa: BLE001 - an efficiency problem must not fail the quality bench
        entry["error"] = first_line(exc)
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
            entry = {"error": first_line(exc)}
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
            "device_name": device_name(device),
            "memory_basis": memory_basis(device) if opts.memory else None,
            "methods": methods,
        }
