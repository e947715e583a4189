"""Which weight files each learned metric needs, where they are looked for, fetching them, and a clear error.

Before a metric is created every file it needs is located here. Online (the default) a missing file is fetched
the way its library does it, into that library's own cache: pyiqa's files with pyiqa's ``load_file_from_url``
from pyiqa's URL (``get_url_from_name``: its Hugging Face repo, so ``$HF_ENDPOINT`` mirrors apply), torchvision
backbones and CLIP with ``torch.hub.download_url_to_file`` (hash checked: torchvision's name prefix, CLIP's
SHA256). Offline (``--offline``, ``$ALIGNVAR_OFFLINE=1`` or ``$HF_HUB_OFFLINE=1``) nothing is fetched and a missing
file raises :class:`MissingWeightsError` naming the file, the folders searched and how to fix it. File names
and locations are pyiqa 0.1.16's (see ``shared/reference/pyiqa-offline.md`` section 1):

- ``pyiqa``: pyiqa's own files, cache ``$TORCH_HOME/hub/pyiqa`` (default ``~/.cache/torch/hub/pyiqa``);
- ``checkpoints``: torchvision ImageNet backbones, ``$TORCH_HOME/hub/checkpoints``;
- ``clip``: OpenAI CLIP TorchScript archives, ``$TORCH_HOME/hub/clip`` (SHA256 checked).

A user folder (``weights_dir`` option, else ``$ALIGNVAR_WEIGHTS_DIR``) holding the files *flat*, by their
exact names, is searched first (files are never downloaded into it). MANIQA's timm ViT backbone (Hugging Face
cache) is not needed: its checkpoint holds every backbone tensor, so the backbone is built without pretrained
weights (see ``backend``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from harness.core.atomic import atomic_path
from harness.core.fetch import OFFLINE_HOW, sha256_of

Location = Literal["pyiqa", "checkpoints", "clip"]
WEIGHTS_ENV = "ALIGNVAR_WEIGHTS_DIR"

_HF = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/"
_TV = "https://download.pytorch.org/models/"
_RN50_SHA = "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"


class MissingWeightsError(FileNotFoundError):
    """A metric's weight files are not available locally; the message says which, where we looked, and how
    to provide them. Never retried as a download."""

    def __str__(self) -> str:  # FileNotFoundError would prefix an errno
        return str(self.args[0])


@dataclass(frozen=True)
class WeightFile:
    name: str  # exact file name pyiqa / torchvision / CLIP looks up
    location: Location
    what: str  # human description
    url: str  # where it can be fetched on a machine with network access
    sha256: str | None = None  # checked when set (CLIP)
    hint: str = ""  # an extra way to provide it


def _pyiqa(name: str, what: str) -> WeightFile:
    return WeightFile(name, "pyiqa", what, _HF + name)


def _tv(name: str, what: str) -> WeightFile:
    return WeightFile(name, "checkpoints", what, _TV + name)


NIQE_PARAMS = WeightFile(
    "niqe_modelparameters.mat",
    "pyiqa",
    "NIQE pristine-image model",
    _HF + "niqe_modelparameters.mat",
    hint="or set the metric option niqe_params to BasicSR's niqe_pris_params.npz (converted automatically)",
)
_ALEX = _tv("alexnet-owt-7be5be79.pth", "torchvision AlexNet, ImageNet")
_VGG16 = _tv("vgg16-397923af.pth", "torchvision VGG16, ImageNet")
_RN50 = WeightFile(
    "RN50.pt",
    "clip",
    "OpenAI CLIP RN50",
    f"https://openaipublic.azureedge.net/clip/models/{_RN50_SHA}/RN50.pt",
    sha256=_RN50_SHA,
)

# pyiqa metric name -> files create_metric() would download
REQUIREMENTS: dict[str, tuple[WeightFile, ...]] = {
    "lpips": (_ALEX, _pyiqa("LPIPS_v0.1_alex-df73285e.pth", "LPIPS v0.1 linear layers (alex)")),
    "lpips-vgg": (_VGG16, _pyiqa("LPIPS_v0.1_vgg-a78928a0.pth", "LPIPS v0.1 linear layers (vgg)")),
    "dists": (_VGG16, _pyiqa("DISTS_weights-f5e65c96.pth", "DISTS alpha/beta weights")),
    "niqe": (NIQE_PARAMS,),
    "musiq": (_pyiqa("musiq_koniq_ckpt-e95806b9.pth", "MUSIQ trained on KonIQ-10k"),),
    "musiq-ava": (_pyiqa("musiq_ava_ckpt-e8d3f067.pth", "MUSIQ trained on AVA"),),
    "musiq-spaq": (_pyiqa("musiq_spaq_ckpt-358bb6af.pth", "MUSIQ trained on SPAQ"),),
    "musiq-paq2piq": (_pyiqa("musiq_paq2piq_ckpt-364c0c84.pth", "MUSIQ trained on PaQ-2-PiQ"),),
    "maniqa": (_pyiqa("ckpt_koniq10k.pt", "MANIQA trained on KonIQ-10k"),),
    "maniqa-pipal": (_pyiqa("MANIQA_PIPAL-ae6d356b.pth", "MANIQA trained on PIPAL"),),
    "maniqa-kadid": (_pyiqa("ckpt_kadid10k.pt", "MANIQA trained on KADID-10k"),),
    "clipiqa": (_RN50,),
    "clipiqa+": (_RN50, _pyiqa("CLIP-IQA+_learned_prompts-603f3273.pth", "CLIP-IQA+ learned prompts")),
    "fid": (_pyiqa("pt_inception-2015-12-05-6726825d.pth", "pytorch-fid Inception-v3"),),
}


def user_weights_dir(option: str | None = None) -> Path | None:
    """The user's flat weights folder: the metric option, else ``$ALIGNVAR_WEIGHTS_DIR``, else None."""
    value = option or os.environ.get(WEIGHTS_ENV)
    return Path(value).expanduser() if value else None


def cache_dirs(location: Location) -> list[Path]:
    """The standard cache folder of one location: ``torch.hub.get_dir()/<location>`` (follows ``$TORCH_HOME``,
    read now: pyiqa's own frozen-at-import cache dir is bypassed, see ``backend.staged_weights``)."""
    return [Path(torch.hub.get_dir()) / location]


def search_dirs(location: Location, weights_dir: Path | None) -> list[Path]:
    return ([weights_dir] if weights_dir is not None else []) + cache_dirs(location)


@dataclass(frozen=True)
class Resolved:
    spec: WeightFile
    path: Path


def resolve(
    metric: str,
    pyiqa_name: str,
    weights_dir: Path | None,
    given: dict[str, Path] | None = None,
    fetch: Callable[[WeightFile], Path] | None = None,
):
    """Locate every file ``pyiqa_name`` needs. Returns a list of :class:`Resolved`.

    ``given`` maps a file name to a path the user supplied directly (e.g. the converted NIQE params); it takes
    precedence over the search. ``fetch`` (online: ``backend.fetch``) downloads a file that is not found into
    its cache. Raises MissingWeightsError listing all missing (or failed) files at once.
    """
    given = given or {}
    found: list[Resolved] = []
    missing: list[tuple[WeightFile, list[Path], list[str]]] = []
    for spec in REQUIREMENTS.get(pyiqa_name, ()):
        if spec.name in given:
            found.append(Resolved(spec, given[spec.name]))
            continue
        dirs = search_dirs(spec.location, weights_dir)
        notes: list[str] = []
        hit = None
        for folder in dirs:
            cand = folder / spec.name
            if not cand.is_file():
                continue
            if spec.sha256 is not None and sha256_of(cand) != spec.sha256:
                notes.append(f"{cand} exists but its SHA256 is not {spec.sha256} (a different or corrupt file)")
                continue
            hit = cand
            break
        if hit is None:
            missing.append((spec, dirs, notes))
        else:
            found.append(Resolved(spec, hit))
    if missing and fetch is not None:
        failed: list[tuple[WeightFile, Path, BaseException]] = []
        for spec, _, _ in missing:
            try:
                found.append(Resolved(spec, fetch(spec)))
            except Exception as exc:  # noqa: BLE001 - every failure is listed, with its cause
                failed.append((spec, cache_dirs(spec.location)[0], exc))
        if failed:
            raise MissingWeightsError(fetch_failed_message(metric, failed))
        missing = []
    if missing:
        raise MissingWeightsError(missing_message(metric, missing))
    return found


def missing_message(metric: str, missing: list[tuple[WeightFile, list[Path], list[str]]]) -> str:
    lines = [
        f"metric {metric!r} needs {len(missing)} weight file(s) that are not available locally "
        f"(downloads are disabled):"
    ]
    for spec, dirs, notes in missing:
        lines.append(f"  {spec.name}  ({spec.what}; {spec.url})")
        lines.append(f"    searched: {', '.join(str(d) for d in dirs)}")
        lines.extend(f"    note: {n}" for n in notes)
        lines.append(f"    fix: copy {spec.name} into {dirs[0]}")
        if spec.hint:
            lines.append(f"    {spec.hint}")
    lines.append(
        f"or put all files in one folder and set {WEIGHTS_ENV}=/that/folder "
        f"(or pass --weights-dir, or the metric option weights_dir)"
    )
    lines.append(f"or leave offline mode ({OFFLINE_HOW}): pyiqa then downloads them into these caches")
    return "\n".join(lines)


def fetch_failed_message(metric: str, failed: list[tuple[WeightFile, Path, BaseException]]) -> str:
    """The error when downloading weight files failed (online): each file, its URL, the cause and the fix."""
    lines = [f"metric {metric!r}: {len(failed)} weight file(s) could not be downloaded:"]
    for spec, folder, exc in failed:
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        lines.append(f"  {spec.name}  ({spec.what})")
        lines.append(f"    error: {cause}")
        lines.append(f"    fix: check the network (and $HF_ENDPOINT), or copy {spec.name} into {folder}")
    lines.append(f"or put all files in one folder and set {WEIGHTS_ENV}=/that/folder (or pass --weights-dir)")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- NIQE params
NIQE_NPZ_NAME = "niqe_pris_params.npz"  # BasicSR's file (basicsr/metrics/niqe_pris_params.npz, Apache-2.0)


def niqe_params_mat(path: Path, cache_root: Path) -> Path:
    """A pyiqa-readable NIQE ``.mat`` from a ``.mat`` or BasicSR ``.npz`` file (converted once, cached).

    The ``.npz`` keys ``mu_pris_param`` (1x36) and ``cov_pris_param`` (36x36) become the ``.mat`` keys
    ``mu_prisparam`` and ``cov_prisparam`` pyiqa reads; loaded with ``allow_pickle=False``.
    """
    import scipy.io

    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"niqe_params: {path}: file not found (expected a .npz or .mat NIQE model)")
    if path.suffix.lower() == ".mat":
        try:
            params = scipy.io.loadmat(str(path))
        except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
            raise ValueError(f"niqe_params: {path}: not a readable .mat file ({exc})") from None
        _check_niqe(path, params.get("mu_prisparam"), params.get("cov_prisparam"), "mu_prisparam/cov_prisparam")
        return path
    if path.suffix.lower() != ".npz":
        raise ValueError(f"niqe_params: {path}: expected a .npz (BasicSR) or .mat (pyiqa) file")
    data = path.read_bytes()
    target = cache_root / "niqe" / f"niqe_{hashlib.sha256(data).hexdigest()[:16]}.mat"
    if target.is_file():
        return target
    try:
        with np.load(path, allow_pickle=False) as npz:
            mu, cov = npz.get("mu_pris_param"), npz.get("cov_pris_param")
            keys = sorted(npz.files)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"niqe_params: {path}: not a readable .npz file ({exc})") from None
    _check_niqe(path, mu, cov, f"mu_pris_param/cov_pris_param (found: {', '.join(keys)})")
    with atomic_path(target) as tmp:
        scipy.io.savemat(str(tmp), {"mu_prisparam": mu, "cov_prisparam": cov})
    return target


def _check_niqe(path: Path, mu, cov, keys: str) -> None:
    if mu is None or cov is None or np.size(mu) != 36 or np.shape(cov) != (36, 36):
        raise ValueError(f"niqe_params: {path}: expected NIQE parameters {keys} of sizes 1x36 and 36x36")


def find_niqe_npz(weights_dir: Path | None) -> Path | None:
    """BasicSR's ``niqe_pris_params.npz`` in the user's weights folder, if present."""
    if weights_dir is not None and (weights_dir / NIQE_NPZ_NAME).is_file():
        return weights_dir / NIQE_NPZ_NAME
    return None
