"""Shared helpers of the benchmark scripts: model building (random weights, for timing only), memory readings,
fresh-subprocess workers, median/IQR summaries and plain-text tables.

Random weights are fine for *timing* (the work per token does not depend on the values); no number these
scripts print is a quality metric.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULT_TAG = "BENCH_RESULT "  # a worker prints one line "BENCH_RESULT {json}" as its last word
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
GIB = 2**30


# ----------------------------------------------------------------------------------------------- memory
def status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``), None where unavailable (not Linux)."""
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def rss_bytes() -> int | None:
    kib = status_kib("VmRSS")
    return None if kib is None else kib * 1024


class PeakRSS:
    """Process peak resident set size per phase: ``mark()`` returns the peak (bytes) since the previous mark
    and resets the kernel's high-water mark (Linux ``/proc/self/clear_refs``); ``overall`` is the maximum of
    every reading, i.e. the process's true peak (``ru_maxrss`` itself is reset by ``clear_refs``)."""

    def __init__(self) -> None:
        self.overall = 0
        self.can_reset = self._reset()

    @staticmethod
    def _reset() -> bool:
        try:
            _CLEAR_REFS.write_text("5")
            return True
        except OSError:
            return False

    def mark(self) -> int | None:
        kib = status_kib("VmHWM")
        if kib is None:
            return None
        peak = kib * 1024
        self.overall = max(self.overall, peak)
        if not self._reset():
            self.can_reset = False
        return peak


# ----------------------------------------------------------------------------------------------- model
def build_model(arch: str, sca: str = "laplacian", device: str = "cpu", inference_only: bool = True, **config):
    """An ``AlignVAR`` of a named arch with constructor (random) weights, eval mode, on ``device``.

    The SCA gate gets a non-trivial init (bias 0, weights N(0, 0.5)) so that it does real work. With
    ``inference_only`` the weights inference never reads are released (``AlignVAR.release_training_weights``:
    the VQ-VAE encoder and the AdaLN projections; the bench methods do the same), as a user's run would.
    """
    import torch

    from methods.alignvar.configs import ARCHS, AlignVARConfig, SCAConfig
    from methods.alignvar.model import AlignVAR

    torch.manual_seed(0)
    a = ARCHS[arch]
    model = AlignVAR(a.transformer, a.vqvae, AlignVARConfig(arch=arch, sca=SCAConfig(sca), **config))
    if model.sca is not None:
        with torch.no_grad():
            model.sca.mlp[2].bias.zero_()
            model.sca.mlp[2].weight.normal_(0, 0.5)
    if inference_only:
        model.release_training_weights()
    return model.to(device).eval()


def random_checkpoint(arch: str, sca: str, folder: Path) -> Path:
    """``folder/<arch>-<sca>-random.safetensors``: a ``build_model`` (full) saved as our checkpoint, written once
    by a fresh interpreter (so the caller's memory is untouched) and reused afterwards."""
    path = Path(folder) / f"{arch}-{sca}-random.safetensors"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, __file__, "save-random", arch, sca, str(path)], check=True)
    return path


def load_model(path: Path, device: str = "cpu", **config):
    """What ``run.py infer`` / the bench methods do: ``AlignVAR.from_pretrained`` (weights assigned from the file,
    not copied) and ``release_training_weights``; ``config`` overrides the stored ``AlignVARConfig`` fields."""
    import dataclasses

    from methods.alignvar.model import AlignVAR

    model = AlignVAR.from_pretrained(path)
    model.config = dataclasses.replace(model.config, **config)
    model.release_training_weights()
    return model.to(device).eval()


def random_lr(batch: int, side: int, device: str = "cpu", seed: int = 0):
    """Seeded random LR images (B, 3, side, side) in [0, 1] (timing only)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, side, side, generator=gen).to(device)


def sync(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str = "cpu") -> tuple[float, Any]:
    """(seconds, result) of ``fn()``; the device is synchronised before and after."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


# ----------------------------------------------------------------------------------------------- workers
def run_worker(script: Path, spec: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Run ``script --worker JSON`` in a fresh interpreter (clean peak memory) and return its result dict."""
    cmd = [sys.executable, str(script), "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    raise RuntimeError(
        f"benchmark worker {spec} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    )


def emit(result: dict[str, Any]) -> None:
    """Worker side of ``run_worker``."""
    print(RESULT_TAG + json.dumps(result), flush=True)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


# ----------------------------------------------------------------------------------------------- summaries
def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def iqr(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return 0.0
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return float(q[2] - q[0])


def table(rows: list[dict[str, Any]], columns: Sequence[str], floatfmt: str = "{:.3g}") -> str:
    """A plain-text table (no pandas needed): one row per dict, missing cells blank."""

    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return floatfmt.format(v)
        return str(v)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    line = "  ".join(c.rjust(w) for c, w in zip(columns, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.rjust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(out)


def environment() -> dict[str, Any]:
    import platform

    import torch

    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_average": load_average(),
    }


if __name__ == "__main__" and sys.argv[1:2] == ["save-random"]:  # random_checkpoint's fresh interpreter
    build_model(sys.argv[2], sys.argv[3], inference_only=False).save(sys.argv[4])
