"""Every file and folder an experiment needs, checked before anything is built: one error lists all missing.

A paper-scale experiment names a dozen checkpoints, three test sets, several output folders and the weight
files of learned metrics. Building components one by one would stop at (or, for metrics, only half-name) the
first absent file; this module reads the validated config instead and lists every missing path at once::

    experiments/table1_main.yaml: 3 required path(s) not found, nothing was run:
      - datasets[0] (DIV2K-Val): dataset folder not found: datasets/DIV2K-Val
      - methods[0] (BSRGAN): checkpoint not found: checkpoints/BSRGAN.pth (download: https://...)
      - metrics[2] (lpips): weight file alexnet-owt-7be5be79.pth not found: ~/.cache/torch/hub/checkpoints/...

Which option of a component is a path is declared per registered type (``PATHS``, extensible with
``declare_paths``); unknown types contribute nothing (their own build errors still stop the run). Values
starting with ``@`` (``@trained``) are resolved by ``harness.stages`` and skipped here. Only existence is
checked: contents (architecture, hashes, sizes) are the components' own checks when they are built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.config import ComponentSpec, ExperimentConfig

Kind = Literal["file", "dir"]


@dataclass(frozen=True)
class Requirement:
    """One path a component needs: ``where`` (config location), ``what`` it is, ``kind`` file or dir."""

    where: str  # e.g. "methods[0] (BSRGAN)"
    what: str  # e.g. "checkpoint"
    path: Path
    kind: Kind
    hint: str = ""  # where to get it

    @property
    def exists(self) -> bool:
        return self.path.is_file() if self.kind == "file" else self.path.is_dir()

    def line(self) -> str:
        """``<where>: <what> not found: <path>[ (<hint>)]``, one line of the error."""
        text = f"{self.where}: {self.what} not found: {self.path}"
        return f"{text} ({self.hint})" if self.hint else text


# A collector turns a component's registered type and validated options into (what, path, kind, hint).
Collector = Callable[[str, Any], Iterator[tuple[str, str | Path | None, Kind, str]]]
PATHS: dict[tuple[str, str], Collector] = {}


def declare_paths(kind: str, *types: str) -> Callable[[Collector], Collector]:
    """Register the path collector of registry ``kind``/``types`` (decorator)."""

    def decorator(fn: Collector) -> Collector:
        for type_name in types:
            PATHS[(kind, type_name)] = fn
        return fn

    return decorator


def _set(value: str | None) -> bool:
    return bool(value) and not str(value).startswith("@")


# ----------------------------------------------------------------------------------------------- datasets
@declare_paths("datasets", "paired")
def _paired(_: str, opt: Any):
    if opt.lr_dir is None:
        yield "dataset folder", opt.root, "dir", "with test_LR/test_HR, lq/gt or LR/HR inside"
        return
    for role, sub in (("LR", opt.lr_dir), ("HR", opt.hr_dir)):
        path = Path(sub).expanduser()
        if opt.root is not None and not path.is_absolute():
            path = Path(opt.root).expanduser() / path
        yield f"{role} folder", path, "dir", ""


@declare_paths("datasets", "single")
def _single(_: str, opt: Any):
    yield "LR folder", opt.lr_dir, "dir", ""


# ----------------------------------------------------------------------------------------------- methods
@declare_paths("methods", "spandrel", "realesrgan", "bsrgan", "swinir")
def _spandrel(type_name: str, opt: Any):
    from methods.baselines.spandrel_adapter import PRESETS

    preset = PRESETS.get(type_name)
    yield "checkpoint", opt.checkpoint, "file", f"download: {preset.weights}" if preset else ""


@declare_paths("methods", "output_folder")
def _output_folder(_: str, opt: Any):
    """The folder (for a ``{dataset}`` template: the part before it; the per-dataset folders are checked
    when the method is bound to each dataset) and a fixed timings CSV."""
    if _set(opt.path):
        root = str(opt.path).split("{", 1)[0].rstrip("/\\")
        if root:
            yield "output folder", root, "dir", "the method's SR images, made with its own code"
    if _set(opt.timings_csv) and "{" not in str(opt.timings_csv):
        yield "timings CSV", opt.timings_csv, "file", "columns image,seconds"


@declare_paths("methods", "varsr", "alignvar")
def _alignvar(type_name: str, opt: Any):
    release = "VARSR release: https://github.com/qyp2000/VARSR"
    if _set(opt.checkpoint):
        ours = "ours from run.py train, or a VARSR release checkpoint: https://github.com/qyp2000/VARSR"
        yield "checkpoint", opt.checkpoint, "file", release if type_name == "varsr" else ours
    if _set(opt.vqvae):
        yield "vqvae", opt.vqvae, "file", release


@declare_paths("methods", "command")
def _command(_: str, opt: Any):
    if _set(opt.cwd):
        yield "working directory (cwd)", opt.cwd, "dir", ""


# ----------------------------------------------------------------------------------------------- metrics
def pyiqa_name(metric_type: str, opt: Any) -> str | None:
    """The pyiqa model a learned metric creates (its weight files are ``weights.REQUIREMENTS[name]``)."""
    variant = getattr(opt, "variant", None)
    if metric_type == "lpips":
        return "lpips" if opt.net == "alex" else "lpips-vgg"
    if metric_type in ("musiq", "maniqa"):
        return metric_type if variant == "koniq" else f"{metric_type}-{variant}"
    if metric_type == "clipiqa":
        return variant
    if metric_type in ("dists", "niqe", "fid"):
        return metric_type
    return None


@declare_paths("metrics", "lpips", "dists", "musiq", "maniqa", "clipiqa", "niqe", "fid")
def _metric_weights(metric_type: str, opt: Any):
    """Weight files not found in the user folder or the cache (what ``weights.resolve`` would raise on)."""
    from harness.metrics import weights

    name = pyiqa_name(metric_type, opt)
    if name is None:
        return
    weights_dir = weights.user_weights_dir(getattr(opt, "weights_dir", None))
    if metric_type == "niqe":
        if getattr(opt, "niqe_params", None):
            yield "niqe_params", Path(opt.niqe_params), "file", "BasicSR niqe_pris_params.npz or pyiqa .mat"
            return
        if weights.find_niqe_npz(weights_dir) is not None:
            return
    for spec in weights.REQUIREMENTS.get(name, ()):
        dirs = weights.search_dirs(spec.location, weights_dir)
        if any((d / spec.name).is_file() for d in dirs):
            continue  # found: its hash (CLIP) is checked when the metric is built
        also = f"; also searched {', '.join(map(str, dirs[1:]))}" if len(dirs) > 1 else ""
        yield f"weight file {spec.name}", dirs[0] / spec.name, "file", f"{spec.what}: {spec.url}{also}"


# ----------------------------------------------------------------------------------------------- checking
def component_requirements(spec: ComponentSpec, index: int, section: str) -> list[Requirement]:
    """The paths one component of ``section`` (datasets/methods/metrics) needs."""
    collector = PATHS.get((spec.kind, spec.type))
    if collector is None or spec.options is None:
        return []
    where = f"{section}[{index}] ({spec.name})"
    return [
        Requirement(where, what, Path(str(path)).expanduser(), kind, hint)
        for what, path, kind, hint in collector(spec.type, spec.options)
        if path is not None and _set(str(path))
    ]


def experiment_requirements(cfg: ExperimentConfig) -> list[Requirement]:
    """Every path the datasets, methods and metrics of ``cfg`` name, in config order."""
    out: list[Requirement] = []
    for section in ("datasets", "methods", "metrics"):
        for i, spec in enumerate(getattr(cfg, section)):
            out.extend(component_requirements(spec, i, section))
    return out


def missing_requirements(cfg: ExperimentConfig) -> list[Requirement]:
    """The requirements of ``cfg`` that do not exist; one entry per path (a shared file is listed once)."""
    missing: dict[Path, Requirement] = {}
    for req in experiment_requirements(cfg):
        if req.exists:
            continue
        if req.path in missing:  # e.g. VGG16 weights needed by lpips-vgg and dists
            first = missing[req.path]
            missing[req.path] = Requirement(f"{first.where}, {req.where}", first.what, req.path, req.kind, first.hint)
        else:
            missing[req.path] = req
    return list(missing.values())


def missing_paths_message(cfg: ExperimentConfig) -> str | None:
    """The error text listing every missing path of ``cfg``, or None when all exist."""
    missing = missing_requirements(cfg)
    if not missing:
        return None
    lines = [f"{cfg.source}: {len(missing)} required path(s) not found, nothing was run:"]
    lines += [f"  - {req.line()}" for req in missing]
    lines.append(
        f"relative paths are resolved from the working directory ({Path.cwd()}); put the files there or "
        f"point the config at them (e.g. methods.<name>.checkpoint=/path/to/file); metric weights may also "
        f"go in one folder given by --weights-dir"
    )
    return "\n".join(lines)
