"""The device a bench (or an analysis) runs on: ``auto`` resolution, and synchronisation for timing."""

from __future__ import annotations

import torch

from harness.core.mapping import ConfigError


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``auto`` (or None) -> ``cuda`` when available, else ``cpu``; anything else as given."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"bench.device: {name!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return device


def sync_device(device: torch.device) -> None:
    """Wait for queued CUDA work on ``device`` (so a timer measures it); a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
