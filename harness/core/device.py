"""The device a run uses: ``auto`` resolution with checks that the device exists, and sync for timing."""

from __future__ import annotations

import torch

from harness.core.mapping import ConfigError


def resolve_device(
    name: str | torch.device | None, *, key: str = "bench.device", local_rank: int | None = None
) -> torch.device:
    """``auto`` (or None) -> ``cuda`` when available, else ``cpu``; anything else as given, checked.

    A device that does not exist here (CUDA without a GPU, ``cuda:3`` on a machine with one GPU, a typo) raises
    ``ConfigError`` naming ``key`` and the value, before anything is loaded. Under DDP (``local_rank``), a
    plain ``cuda`` means this process's GPU, ``cuda:<local_rank>``.
    """
    if name is None or str(name) == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"{key}: {name!r} is not a device ({exc}); use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}: {str(name)!r} requested but CUDA is not available; use 'cpu' or 'auto'")
        if device.index is None and local_rank is not None:
            device = torch.device("cuda", local_rank)
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{key}: {str(device)!r} does not exist; this machine has {count} CUDA device(s)")
    elif device.type not in ("cpu", "mps"):
        raise ConfigError(f"{key}: {str(name)!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def sync_device(device: torch.device) -> None:
    """Wait for queued CUDA work on ``device`` (so a timer measures it); a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
