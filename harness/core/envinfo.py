"""What a result was produced with: package versions, git commit, device, host, command line, time.

Versions are read from package metadata (``importlib.metadata``), so collecting them never imports heavy
packages such as pyiqa. Git is only queried read-only (``rev-parse``, ``status --porcelain``).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "torchvision", "pyiqa", "numpy", "pillow", "spandrel", "alignvar-bench")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding harness/: a checkout or site-packages


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git(repo: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def source_checkout(root: Path = PACKAGE_ROOT) -> Path | None:
    """``root`` if it is the top of a git work tree (the code runs from a checkout), else None.

    An installed copy has no commit of its own, even when its site-packages lies inside some repository
    (a ``.venv`` in a clone): reporting that repository's commit would be wrong.
    """
    top = _git(root, "rev-parse", "--show-toplevel")
    return root if top is not None and Path(top).resolve() == Path(root).resolve() else None


def git_info(repo: Path | None = None) -> dict[str, Any]:
    """``{commit, dirty}`` of the checkout the code runs from (``source_checkout``); ``None`` values for an
    installed copy or outside a git checkout."""
    repo = repo if repo is not None else source_checkout()
    commit = None if repo is None else _git(repo, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _git(repo, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: Any) -> str:
    """A human-readable name for a torch device (GPU model for CUDA, CPU model otherwise)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return cpu_name()


def collect_env(device: Any = "cpu", argv: list[str] | None = None) -> dict[str, Any]:
    """Everything ``env.json`` records."""
    import torch

    return {
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": list(sys.argv if argv is None else argv),
        "cwd": os.getcwd(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "packages": package_versions(),
        "git": git_info(),
        "device": str(device),
        "device_name": device_name(device),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
