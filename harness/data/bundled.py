"""The bundled dataset: real photographs that ship inside installed packages, degraded once and cached.

Sources (no download ever; the files are part of the installed wheels):

- scikit-image's sample photographs (``skimage/data/*.png|jpg``): astronaut, coffee, chelsea, rocket and
  motorcycle (the left view of ``stereo_motorcycle``);
- pyiqa's calibration reference images (TID2013 references I03, I04, I06, I08, I19, 512x384), installed as the
  top-level ``site-packages/ResultsCalibra/ref_dir``.

Each photograph is resized so its short side is ``hr_size`` (only ever down: never invented detail), centre-
cropped to an ``hr_size`` square HR tile (optionally cut into ``tile`` x ``tile`` tiles), quantised to 8 bits,
and degraded by a registered degradation into
the LR image. HR and LR PNGs are cached under ``<cache root>/bundled/<hash of the settings>/`` (cache root:
``$ALIGNVAR_CACHE`` or ``~/.cache/alignvar-bench``), written atomically under a file lock, with a manifest
written last that holds the sha256 of every PNG. A later build with the same settings reads the cache and
generates nothing, after checking every file against its digest: an entry with a missing or edited file is
rebuilt (with a warning), never trusted.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from filelock import FileLock

from harness.core.atomic import write_json
from harness.core.identity import file_sha256
from harness.core.imageio import load_image, quantize_8bit, save_image
from harness.data.degradations.base import make_generator

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the generation recipe changes, so stale caches are not reused

SKIMAGE_FILES = {
    "astronaut": "astronaut.png",
    "coffee": "coffee.png",
    "chelsea": "chelsea.png",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",
}
PYIQA_REFS = ("I03", "I04", "I06", "I08", "I19")
DEFAULT_IMAGES = (*SKIMAGE_FILES, *(f"tid2013_{r}" for r in PYIQA_REFS))
# A fixed, disjoint train/eval split of the ten photographs (``split: train | eval``; ``all``: every one). Each
# half mixes scikit-image and TID2013 photographs, portraits/objects and textured scenes, so a model trained on
# ``train`` is measured on photographs it never saw.
SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("astronaut", "coffee", "rocket", "tid2013_I03", "tid2013_I06", "tid2013_I08"),
    "eval": ("chelsea", "motorcycle", "tid2013_I04", "tid2013_I19"),
}
SPLIT_CHOICES = ("all", *SPLITS)


class BundledError(ValueError):
    """A bundled image that is unknown or not installed; the message lists what is available."""


def default_cache_root() -> Path:
    """``$ALIGNVAR_CACHE`` if set, else ``~/.cache/alignvar-bench`` (bundled data, NIQE params)."""
    env = os.environ.get("ALIGNVAR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "alignvar-bench"


def skimage_data_dir() -> Path | None:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def pyiqa_calibration_dir() -> Path | None:
    """``site-packages/ResultsCalibra`` installed by the pyiqa wheel (found without importing pyiqa)."""
    candidates: list[Path] = []
    try:
        dist = importlib.metadata.distribution("pyiqa")
        candidates.append(Path(dist.locate_file("ResultsCalibra")))
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("pyiqa")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).resolve().parent.parent / "ResultsCalibra")
    for cand in candidates:
        if (cand / "ref_dir").is_dir():
            return cand
    return None


def available_images() -> dict[str, Path]:
    """Every bundled image name that is installed here -> its source file."""
    out: dict[str, Path] = {}
    sk = skimage_data_dir()
    if sk is not None:
        for name, fname in SKIMAGE_FILES.items():
            if (sk / fname).is_file():
                out[name] = sk / fname
    calib = pyiqa_calibration_dir()
    if calib is not None:
        for ref in PYIQA_REFS:
            path = calib / "ref_dir" / f"{ref}.bmp"
            if path.is_file():
                out[f"tid2013_{ref}"] = path
    return out


def resolve_images(images: list[str] | None, count: int | None, split: str = "all") -> dict[str, Path]:
    """The selected images (default: the installed images of ``split``, DEFAULT_IMAGES for ``all``), first
    ``count`` of them. ``images`` and a split other than ``all`` exclude each other."""
    if split not in SPLIT_CHOICES:
        raise BundledError(f"unknown bundled split {split!r}; valid choices: {', '.join(SPLIT_CHOICES)}")
    avail = available_images()
    if images is not None and split != "all":
        raise BundledError(f"give either images or split={split!r}, not both")
    if images is None:
        names = DEFAULT_IMAGES if split == "all" else SPLITS[split]
        chosen = {n: avail[n] for n in names if n in avail}
    else:
        unknown = [n for n in images if n not in avail]
        if unknown:
            known = ", ".join(DEFAULT_IMAGES)
            raise BundledError(
                f"bundled images not available: {', '.join(unknown)}; valid choices (if installed): {known}; "
                f"installed here: {', '.join(avail) or 'none'}"
            )
        chosen = {n: avail[n] for n in dict.fromkeys(images)}
    if count is not None:
        chosen = dict(list(chosen.items())[:count])
    if not chosen:
        raise BundledError("no bundled images selected (are scikit-image and pyiqa installed?)")
    return chosen


def hr_tile(img: torch.Tensor, size: int, source: str = "<image>") -> torch.Tensor:
    """(3, H, W) -> (3, size, size): short side resized down to ``size`` (antialiased), centre crop."""
    h, w = img.shape[-2:]
    short = min(h, w)
    if short < size:
        raise BundledError(f"{source}: {w}x{h} is smaller than hr_size={size}; choose a smaller hr_size")
    if short > size:
        nh, nw = round(h * size / short), round(w * size / short)
        nh, nw = max(nh, size), max(nw, size)
        img = F.interpolate(img[None], size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)[0]
        h, w = nh, nw
    top, left = (h - size) // 2, (w - size) // 2
    return quantize_8bit(img[:, top : top + size, left : left + size])


def cut_tiles(hr: torch.Tensor, tile: int, key: str) -> dict[str, torch.Tensor]:
    """(3, S, S) -> ``{key_rIcJ: (3, tile, tile)}``: the non-overlapping tiles, row-major (S % tile == 0)."""
    side = hr.shape[-1]
    n = side // tile
    return {
        f"{key}_r{i}c{j}": hr[:, i * tile : (i + 1) * tile, j * tile : (j + 1) * tile].contiguous()
        for i in range(n)
        for j in range(n)
    }


def image_seed(seed: int, key: str) -> int:
    """Per-image seed: an image's LR depends on (seed, its name) only, not on the other images chosen."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little") & (2**63 - 1)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class BundledFiles:
    """A complete cache entry: HR/LR folders holding ``<key>.png`` for every key."""

    root: Path
    keys: list[str]
    generated: bool  # False when it was read from an existing cache
    digests: dict[str, str] = field(default_factory=dict)  # file path -> sha256 (checked)

    @property
    def hr_dir(self) -> Path:
        return self.root / "hr"

    @property
    def lr_dir(self) -> Path:
        return self.root / "lr"


def ensure_bundled(
    images: dict[str, Path],
    hr_size: int,
    scale: int,
    degradation_name: str,
    degradation_options: dict,
    seed: int,
    cache_root: Path,
    tile: int | None = None,
) -> BundledFiles:
    """Generate (or reuse) the cached HR/LR PNGs for these settings. Safe against concurrent builders.

    ``tile``: every ``hr_size`` HR square is cut into (hr_size / tile)^2 tiles, each degraded on its own and
    stored as ``<image>_r<row>c<col>``."""
    import dataclasses

    from harness.core import registry  # imports plugins lazily; keep this module import-light

    if hr_size % scale:
        raise BundledError(f"hr_size={hr_size} must be divisible by scale={scale}")
    if tile is not None and (tile < scale or tile % scale or hr_size % tile):
        raise BundledError(f"tile={tile} must divide hr_size={hr_size} and be a multiple of scale={scale}")
    options = dict(degradation_options)
    config = registry.get("degradations", degradation_name).config
    if config is not None and "scale" in {f.name for f in dataclasses.fields(config)}:
        if options.setdefault("scale", scale) != scale:
            raise BundledError(
                f"degradation_options.scale={options['scale']} disagrees with scale={scale}; set only scale"
            )
    settings = {
        "version": CACHE_VERSION,
        "images": {name: [path.name, _file_digest(path)] for name, path in images.items()},
        "hr_size": hr_size,
        "scale": scale,
        "degradation": degradation_name,
        "degradation_options": options,
        "seed": seed,
    }
    if tile is not None:
        settings["tile"] = tile  # only when set: untiled entries keep their cache address
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
    root = cache_root / digest
    manifest = root / "manifest.json"
    keys = list(images) if tile is None else [f"{k}_r{i}c{j}" for k in images for i, j in _tile_grid(hr_size, tile)]
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        checked = _verified(manifest, keys)
        if checked is not None:
            return BundledFiles(root, keys, generated=False, digests=checked)
        degradation = registry.create("degradations", degradation_name, options)
        side = hr_size if tile is None else tile
        want = (3, side // scale, side // scale)
        for name, src in images.items():
            square = hr_tile(load_image(src), hr_size, str(src))
            for key, hr in ({name: square} if tile is None else cut_tiles(square, tile, name)).items():
                lr = degradation(hr[None], make_generator(image_seed(seed, key)))[0]
                if tuple(lr.shape) != want:
                    raise BundledError(
                        f"degradation {degradation_name!r} returned LR {tuple(lr.shape)} for HR "
                        f"{tuple(hr.shape)}; a dataset needs LR = HR / {scale} = {want} (options: {options})"
                    )
                save_image(hr, root / "hr" / f"{key}.png")
                save_image(lr, root / "lr" / f"{key}.png")
        files = {f"{role}/{k}.png": file_sha256(root / role / f"{k}.png") for k in keys for role in ("hr", "lr")}
        write_json(manifest, {"settings": settings, "keys": keys, "sha256": files})
    return BundledFiles(root, keys, generated=True, digests={str(root / rel): d for rel, d in files.items()})


def _tile_grid(hr_size: int, tile: int) -> list[tuple[int, int]]:
    n = hr_size // tile
    return [(i, j) for i in range(n) for j in range(n)]


def _verified(manifest: Path, keys: list[str]) -> dict[str, str] | None:
    """{file: sha256} of a complete cache entry whose every file matches its recorded digest; None otherwise
    (absent, incomplete, or a file edited or damaged since: the entry is then rebuilt)."""
    if not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text())
        listed, recorded = data["keys"], data["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if listed != keys or not isinstance(recorded, dict):
        return None
    root, checked, bad = manifest.parent, {}, []
    for key in keys:
        for role in ("hr", "lr"):
            rel, path = f"{role}/{key}.png", manifest.parent / role / f"{key}.png"
            digest = file_sha256(path) if path.is_file() else None
            if digest is None or digest != recorded.get(rel):
                bad.append(rel)
            checked[str(path)] = digest
    if bad:
        log.warning(
            f"bundled data cache {root}: {len(bad)} file(s) missing or changed since they were generated "
            f"({', '.join(bad[:5])}); regenerating them"
        )
        return None
    return checked
