"""pyiqa, quiet: import it, fetch weight files the way pyiqa does, create metrics from located files only.

:func:`fetch` downloads one weight file into its library's cache with that library's own downloader (the
preflight and ``weights.resolve`` call it when online). :func:`create` builds a pyiqa metric inside
:func:`staged_weights`, a context that

1. links the already-located (or fetched) weight files into a private temporary ``hub`` tree and points pyiqa's
   cache dir and ``torch.hub`` (torchvision, CLIP) at it, so each library finds its file under the name it expects;
2. replaces the download functions of pyiqa and ``torch.hub`` with one that raises, so creation never reaches
   the network (or hangs on it) even if pyiqa asks for a file we did not foresee;
3. sets ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` so pyiqa's ``torch.load(..., weights_only=False)`` only unpickles
   tensors and plain containers, never code from a checkpoint;
4. builds MANIQA's timm ViT without pretrained weights (its checkpoint holds all of them), so no Hugging Face
   download is attempted.

Everything is restored on exit; weights are loaded during creation, so the temporary tree is not needed after.
Import-time chatter (``Loading pretrained model ...`` on stdout, the ``pyiqa`` logger) is suppressed.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import os
import pickle
import shutil
import sys
import tempfile
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from harness.core.fetch import FetchError, network_timeout, offline_mode
from harness.metrics.weights import MissingWeightsError, Resolved, WeightFile, cache_dirs


def import_pyiqa() -> types.ModuleType:
    """Import pyiqa with its logger quiet (idempotent); in offline mode Hugging Face's offline mode is set first."""
    if "pyiqa" in sys.modules:
        return sys.modules["pyiqa"]
    if offline_mode():  # read by huggingface_hub / transformers at import
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    with contextlib.redirect_stdout(io.StringIO()):
        import pyiqa
        from pyiqa.utils.logger import get_root_logger

        get_root_logger().setLevel(logging.WARNING)  # "Network [X] is created." on every create_metric
    return pyiqa


def pyiqa_version() -> str:
    return str(import_pyiqa().__version__)


def fetch(spec: WeightFile, progress: bool = True) -> Path:
    """Download ``spec`` into its standard cache folder (``weights.cache_dirs``) the way its library does.

    pyiqa's files: pyiqa's ``load_file_from_url`` from pyiqa's URL (``get_url_from_name``, which follows
    ``$HF_ENDPOINT``); torchvision backbones: ``torch.hub.download_url_to_file`` checking the hash prefix in the
    file name, as ``torch.hub.load_state_dict_from_url(check_hash=True)`` does; CLIP: the same with its full
    SHA256. Downloads are atomic (a temporary file renamed into place). Raises FetchError naming the URL.
    """
    import torch.hub as hub

    folder = cache_dirs(spec.location)[0]
    target = folder / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    url = spec.url
    try:
        with network_timeout():
            if spec.location == "pyiqa":
                import_pyiqa()
                from pyiqa.archs.arch_util import get_url_from_name
                from pyiqa.utils.download_util import load_file_from_url

                url = get_url_from_name(spec.name)
                with contextlib.redirect_stdout(io.StringIO()):  # its 'Downloading: ...' line
                    return Path(load_file_from_url(url, model_dir=str(folder), progress=progress, file_name=spec.name))
            prefix = spec.sha256
            if prefix is None and (match := hub.HASH_REGEX.search(spec.name)) is not None:
                prefix = match.group(1)
            hub.download_url_to_file(url, str(target), hash_prefix=prefix, progress=progress)
            return target
    except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, timeouts, hash mismatch: one message
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise FetchError(f"downloading {url} failed: {type(exc).__name__}: {text}") from None


def fetcher() -> Callable[[WeightFile], Path] | None:
    """:func:`fetch` when downloads are allowed (not offline), else None (for ``weights.resolve``)."""
    return None if offline_mode() else fetch


def _refuse_download(url: str, dst: str, *args: Any, **kwargs: Any) -> None:
    raise MissingWeightsError(
        f"refusing to download {url} to {dst} while creating a metric: its files are located (or fetched) "
        f"before, and this file was not expected (please report it); copy it there yourself"
    )


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(src.resolve(), dst)
    except OSError:  # no symlinks (some filesystems / Windows): hard link, else copy
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)


def _ensure_pkg_resources() -> None:
    """openai-clip does ``from pkg_resources import packaging``; setuptools >= 81 no longer ships
    pkg_resources. Provide the one attribute clip uses, only when the real module is absent."""
    if "pkg_resources" in sys.modules or importlib.util.find_spec("pkg_resources") is not None:
        return
    import packaging.version

    shim = types.ModuleType("pkg_resources")
    shim.packaging = packaging  # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = shim


class _NoPretrainedTimm:
    """Stands in for the ``timm`` module inside pyiqa's MANIQA arch: same API, ``pretrained`` forced off."""

    def __init__(self, timm_module: types.ModuleType) -> None:
        self._timm = timm_module

    def create_model(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["pretrained"] = False
        return self._timm.create_model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._timm, name)


@contextlib.contextmanager
def staged_weights(files: list[Resolved], timm_pretrained: bool = True) -> Iterator[None]:
    """See the module docstring. ``timm_pretrained=False`` applies step 4 (MANIQA).

    Not thread-safe: it swaps module attributes for the duration.
    """
    import_pyiqa()
    import torch.hub as hub
    from pyiqa.utils import download_util

    maniqa = None if timm_pretrained else importlib.import_module("pyiqa.archs.maniqa_arch")
    saved_env = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    saved = (hub._hub_dir, download_util.DEFAULT_CACHE_DIR, download_util.download_url_to_file)
    saved_hub_download = hub.download_url_to_file
    saved_timm = getattr(maniqa, "timm", None)
    with tempfile.TemporaryDirectory(prefix="alignvar-weights-") as tmp:
        root = Path(tmp) / "hub"
        for item in files:
            _link(item.path, root / item.spec.location / item.spec.name)
        (root / "pyiqa").mkdir(parents=True, exist_ok=True)
        try:
            hub.set_dir(str(root))
            download_util.DEFAULT_CACHE_DIR = str(root / "pyiqa")
            download_util.download_url_to_file = _refuse_download
            hub.download_url_to_file = _refuse_download
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
            if maniqa is not None and saved_timm is not None:
                maniqa.timm = _NoPretrainedTimm(saved_timm)
            yield
        finally:
            hub._hub_dir = saved[0]
            download_util.DEFAULT_CACHE_DIR, download_util.download_url_to_file = saved[1], saved[2]
            hub.download_url_to_file = saved_hub_download
            if saved_env is None:
                os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
            else:
                os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = saved_env
            if maniqa is not None and saved_timm is not None:
                maniqa.timm = saved_timm


def pick_device(device: str | None) -> torch.device:
    """``auto``/None -> CUDA if available, else CPU; anything else as given."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def create(metric: str, pyiqa_name: str, files: list[Resolved], device: torch.device, **kwargs: Any):
    """``pyiqa.create_metric(pyiqa_name, device=device, **kwargs)`` from the located ``files`` only."""
    pyiqa = import_pyiqa()
    if pyiqa_name.startswith("clipiqa"):
        _ensure_pkg_resources()
    timm_pretrained = not pyiqa_name.startswith("maniqa")
    with (
        staged_weights(files, timm_pretrained),
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
    ):
        # pyiqa's archs call torchvision with deprecated arguments: noise, not the user's business
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\.")
        try:
            model = pyiqa.create_metric(pyiqa_name, device=device, **kwargs)
        except MissingWeightsError:
            raise
        except pickle.UnpicklingError as exc:
            names = ", ".join(str(f.path) for f in files)
            raise RuntimeError(
                f"metric {metric!r}: refusing to load {names}: it is not a plain weights file (it pickles "
                f"Python objects, which could run code; torch.load(weights_only=True) rejected it). "
                f"Use the genuine file ({', '.join(f.spec.url for f in files)})"
            ) from exc
        except Exception as exc:
            names = ", ".join(str(f.path) for f in files) or "no weight files"
            raise RuntimeError(
                f"metric {metric!r}: pyiqa could not create {pyiqa_name!r} from {names}: {type(exc).__name__}: {exc}"
            ) from exc
    model.eval()
    return model


def quiet() -> contextlib.AbstractContextManager:
    """Swallow pyiqa's stdout prints while scoring."""
    return contextlib.redirect_stdout(io.StringIO())
