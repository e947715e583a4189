"""Shared fixtures. Data and fixtures from ../shared/ are read in place and skipped clearly when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Idle OpenMP threads sleep instead of spinning, so the subprocesses some tests start (DDP ranks, sweep workers)
# do not slow each other down on a 2-core machine. Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Under mutmut (which sets MUTANT_UNDER_TEST in its own process and in the workers it forks from it) torch runs
# on one thread: a child forked after libgomp started its thread pool hangs at its first parallel region, so
# every mutant would otherwise end as a timeout (docs/TESTING.md, "Mutation testing").
MUTMUT = "MUTANT_UNDER_TEST" in os.environ
if MUTMUT:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"
# Tests never use the network: offline mode for alignvar-bench and huggingface_hub (read at its import), also in
# the subprocesses tests start. The online paths are tested against tests/loopback.py (the `online` fixture).
os.environ["ALIGNVAR_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# (mutmut runs the tests from the copy in <checkout>/mutants/: the shared folder is still beside the checkout)
SHARED = Path(os.environ.get("ALIGNVAR_SHARED", (REPO.parent if MUTMUT else REPO).parent / "shared"))

torch.set_num_threads(1 if MUTMUT else min(2, os.cpu_count() or 1))


def _shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"{path} is absent: these tests need the project's shared folder beside the repo "
            f"(or set ALIGNVAR_SHARED=/path/to/shared)"
        )
    return path


@pytest.fixture(autouse=True)
def _logging_as_a_library():
    """Each test starts with logging as a library user has it: no command's handler, levels or verbosity (a test
    that runs ``main()`` configures them, harness.core.logconfig)."""
    yield
    import logging

    from harness.core import logconfig

    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logconfig.StderrHandler)]:
        root.removeHandler(handler)
    for package in logconfig.PACKAGES:
        logging.getLogger(package).setLevel(logging.NOTSET)
    os.environ.pop(logconfig.VERBOSITY_ENV, None)


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


@pytest.fixture
def online(tmp_path, monkeypatch):
    """Online mode against a loopback server (tests.loopback.Loopback): offline off, pyiqa/torch/HF/our caches
    in ``tmp_path``, the Hub endpoint (``HF_ENDPOINT``, also for subprocesses) on the server, and every
    connection that is not to 127.0.0.1 refused."""
    import huggingface_hub.constants as hf_constants

    from tests.loopback import Loopback, only_loopback

    with Loopback().running() as server, only_loopback():
        for name in ("ALIGNVAR_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "ALIGNVAR_WEIGHTS_DIR"):
            monkeypatch.delenv(name, raising=False)
        env = {"HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_CACHE": str(tmp_path / "hf"),
               "HF_HUB_DISABLE_XET": "1", "TORCH_HOME": str(tmp_path / "torch"),
               "ALIGNVAR_CACHE": str(tmp_path / "cache")}  # fmt: skip
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        # what huggingface_hub read from the environment at its import
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hf_constants, "ENDPOINT", server.url)
        monkeypatch.setattr(
            hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
        monkeypatch.setattr(
            hf_constants, "AGENT_HARNESSES_PATH", str(tmp_path / "hf_home" / "agents.json"), raising=False
        )
        monkeypatch.setattr(torch.hub, "_hub_dir", None)
        yield server


@pytest.fixture(scope="session")
def astronaut() -> torch.Tensor:
    """A real photograph (scikit-image's astronaut, 512x512), (3, H, W) float32 in [0, 1]."""
    from skimage import data

    return torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1).float().div(255.0)
