"""Shared fixtures. Data and fixtures from ../shared/ are read in place and skipped clearly when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Idle OpenMP threads sleep instead of spinning, so the subprocesses some tests start (DDP ranks, sweep workers)
# do not slow each other down on a 2-core machine. Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ALIGNVAR_SHARED", REPO.parent / "shared"))

torch.set_num_threads(min(2, os.cpu_count() or 1))


def _shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"{path} is absent: these tests need the project's shared folder beside the repo "
            f"(or set ALIGNVAR_SHARED=/path/to/shared)"
        )
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _shared_path()


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return _shared_path("golden", "varsr")


@pytest.fixture(scope="session")
def drealsr_dir() -> Path:
    return _shared_path("data", "drealsr")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return _shared_path("reference")


@pytest.fixture(scope="session")
def astronaut() -> torch.Tensor:
    """A real photograph (scikit-image's astronaut, 512x512), (3, H, W) float32 in [0, 1]."""
    from skimage import data

    return torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1).float().div(255.0)
