"""Everything a bench run checks and builds before any work starts, and what it then hands around.

``prepare(cfg, device)`` first runs the preflight (``preflight_message``): every file and folder the experiment
names (``Requirement``: datasets, checkpoints, output folders, metric weights) is checked; once the local ones
exist, online, what can be downloaded and is missing (metric weights into pyiqa's caches, ``hf://`` / ``https://``
checkpoints) is fetched, with a progress bar; whatever is still missing or failed is listed in one error. Then it
builds every dataset, method and metric and cross-checks them (scales, method checks, set-level metrics need
saved images). All problems are reported in one ``BenchValidationError``. The result, ``Prepared``, is what the
runner and its hooks (``BenchHook``, seeing a ``BenchContext``) work with.

``bench_identity`` is what the built run reads: its config and the data manifest of its inputs, one group per
dataset (``datasets/<name>``: ``lr/<key>`` and ``hr/<key>`` of every image evaluated, with file name, size and
sha256) and per method that reads files (``methods/<name>``: checkpoints, output folders, timings files). Files
are hashed once per run, streamed; a dataset that knows its digests (the bundled cache checks them) is not hashed
again. ``regress`` compares the ``datasets/`` groups of two runs: a change there is the data's, not the method's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import pandas as pd
import torch

from harness.bench.layout import first_line
from harness.config.components import ComponentSpec
from harness.config.experiment import ExperimentConfig
from harness.core import fetch
from harness.core.identity import RunIdentity, file_entry
from harness.core.mapping import ConfigError


def prepare(cfg: ExperimentConfig, device: torch.device, *, progress: bool = True) -> Prepared:
    """Build and cross-check every component; raise one BenchValidationError listing all problems.

    Missing files and folders are checked (and, online, fetched) first, without building anything (loading
    checkpoints or metric networks is slow): if any is missing, the error lists every one of them and nothing else.
    """
    missing = preflight_message(cfg, progress=progress)
    if missing is not None:
        raise BenchValidationError(missing)
    problems: list[str] = []
    notes: list[str] = []

    def build_all(kind: str, specs: list) -> dict[str, Any]:
        built = {}
        if kind != "metrics" and not specs:
            problems.append(f"{kind}: empty; list at least one {kind[:-1]}")
        for i, spec in enumerate(specs):
            try:
                built[spec.name] = spec.create()
            except Exception as exc:  # noqa: BLE001 - collected and reported together
                problems.append(f"{kind}[{i}] ({spec.name}): {first_line(exc)}")
        return built

    datasets = build_all("datasets", cfg.datasets)
    methods = build_all("methods", cfg.methods)
    metrics = build_all("metrics", cfg.metrics)
    limit = cfg.bench.max_images
    for ds_name, ds in datasets.items():
        if len(ds) == 0:
            problems.append(f"datasets ({ds_name}): no images found")
        keys = list(ds.keys)[:limit]
        for m_name, method in methods.items():
            if int(method.scale) != int(ds.scale):
                problems.append(
                    f"methods ({m_name}): scale x{method.scale} does not match dataset {ds_name!r} (x{ds.scale})"
                )
            try:
                bound = method.for_dataset(ds_name)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"methods ({m_name}) on {ds_name}: {first_line(exc)}")
                continue
            check = getattr(bound, "check", None)
            if callable(check):
                try:
                    problems.extend(f"methods ({m_name}) on {ds_name}: {p}" for p in check(keys) or [])
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"methods ({m_name}) on {ds_name}: check failed: {first_line(exc)}")
        for mt_name, metric in metrics.items():
            if MetricFlags.of(metric).needs_reference and not ds.has_reference:
                notes.append(f"{mt_name} needs HR references; not computed on {ds_name} (no HR images)")
    for mt_name, metric in metrics.items():
        if MetricFlags.of(metric).set_level and not cfg.bench.save_images:
            problems.append(
                f"metrics ({mt_name}): a set-level metric is computed from the saved images; "
                f"set bench.save_images: true"
            )
        if hasattr(metric, "to"):
            try:
                metric.to(device)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"metrics ({mt_name}): cannot move to {device}: {first_line(exc)}")
    if problems:
        for method in methods.values():
            method.close()
        raise BenchValidationError(
            f"{cfg.source}: {len(problems)} problem(s), nothing was run:\n  - " + "\n  - ".join(problems)
        )
    return Prepared(datasets, methods, metrics, notes)


# ----------------------------------------------------------------------------------------------- context
class MetricFlags(NamedTuple):
    lower_better: bool
    needs_reference: bool
    set_level: bool  # one value per image set (FID), computed from the saved folders

    @classmethod
    def of(cls, metric: Any) -> MetricFlags:
        return cls(
            bool(metric.lower_better),
            bool(getattr(metric, "needs_reference", True)),
            bool(getattr(metric, "set_level", False)),
        )


@dataclass
class Prepared:
    """Built components, keyed by their config names (config order)."""

    datasets: dict[str, Any]
    methods: dict[str, Any]
    metrics: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def flags(self) -> dict[str, MetricFlags]:
        return {name: MetricFlags.of(m) for name, m in self.metrics.items()}

    def image_metrics(self, dataset: Any) -> list[str]:
        """Per-image metrics computable on ``dataset`` (set-level ones and, without HR, FR ones excluded)."""
        return [
            k for k, f in self.flags.items() if not f.set_level and (dataset.has_reference or not f.needs_reference)
        ]


@dataclass
class BenchContext:
    """What hooks see: the config, the run dir, the device and the built components."""

    cfg: ExperimentConfig
    run_dir: Path
    device: torch.device
    prepared: Prepared


class BenchHook:
    """Extension points, e.g. an efficiency table writing ``efficiency.json`` (``results.write_efficiency``).

    Subclass and override what you need; pass instances as ``run_bench(cfg, hooks=[...])``.
    """

    def on_start(self, ctx: BenchContext) -> None: ...

    def on_method_start(self, ctx: BenchContext, method_name: str, method: Any) -> None: ...

    def on_batch(self, ctx: BenchContext, dataset: str, method: str, keys: list[str], seconds: float) -> None: ...

    def on_end(self, ctx: BenchContext, summary: pd.DataFrame) -> None: ...


# ----------------------------------------------------------------------------------------------- paths
Kind = Literal["file", "dir"]


Fetcher = Callable[[bool], object]  # downloads what a requirement names (argument: show progress)


@dataclass(frozen=True)
class Requirement:
    """One file or folder a component needs: ``where`` (config location), ``what`` it is, ``kind`` file or dir.

    A remote checkpoint (``ref``: ``hf://`` / ``https://``) exists when it is in its cache; ``fetch`` (online)
    downloads a missing one (remote checkpoints, metric weights into their library's cache).
    """

    where: str  # e.g. "methods[0] (BSRGAN)"
    what: str  # e.g. "checkpoint"
    path: Path  # a local path; for a ``ref``, its cache
    kind: Kind
    hint: str = ""  # where to get it
    ref: str | None = None
    fetch: Fetcher | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> str:
        """What identifies the file (a shared file, e.g. VGG16 for lpips-vgg and dists, is one requirement)."""
        return self.ref if self.ref is not None else str(self.path)

    @property
    def exists(self) -> bool:
        if self.ref is not None:
            return fetch.cached_checkpoint(self.ref) is not None
        return self.path.is_file() if self.kind == "file" else self.path.is_dir()

    def line(self) -> str:
        """``<where>: <what> not found: <path>[ (<hint>)]``, one line of the error."""
        if self.ref is not None:
            return (
                f"{self.where}: {self.what} {self.ref} is not cached ({fetch.cache_location(self.ref)}) and "
                f"downloads are off ({fetch.OFFLINE_HOW})"
            )
        text = f"{self.where}: {self.what} not found: {self.path}"
        return f"{text} ({self.hint})" if self.hint else text


# A collector turns a component's registered type and validated options into (what, path, kind, hint[, fetch]);
# a path that is an hf:// or https:// reference becomes a remote requirement.
Collector = Callable[[str, Any], Iterator[tuple]]
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
    from methods.adapters.spandrel import PRESETS

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

        def download(progress: bool, spec: Any = spec) -> object:
            from harness.metrics import backend

            return backend.fetch(spec, progress)

        yield f"weight file {spec.name}", dirs[0] / spec.name, "file", f"{spec.what}: {spec.url}{also}", download


# ----------------------------------------------------------------------------------------------- checking
def component_requirements(spec: ComponentSpec, index: int, section: str) -> list[Requirement]:
    """The paths one component of ``section`` (datasets/methods/metrics) needs."""
    collector = PATHS.get((spec.kind, spec.type))
    if collector is None or spec.options is None:
        return []
    where = f"{section}[{index}] ({spec.name})"
    out = []
    for what, path, kind, hint, *download in collector(spec.type, spec.options):
        if path is None or not _set(str(path)):
            continue
        if str(path).startswith(fetch.PKG_SCHEME):  # a file shipped in an installed package: local, never fetched
            try:
                local = fetch.package_file(str(path))
            except (ValueError, fetch.FetchError) as exc:
                raise ConfigError(f"{where}: {what}: {exc}") from None
            out.append(Requirement(where, what, local, kind, hint, None))
        elif fetch.is_remote(path):
            ref = str(path)
            try:
                fetch.check_ref(ref)
            except ValueError as exc:
                raise ConfigError(f"{where}: {what}: {exc}") from None

            def resolve(progress: bool, ref: str = ref) -> object:
                return fetch.resolve_checkpoint(ref, offline=False, progress=progress)

            out.append(Requirement(where, what, fetch.cache_path(ref), kind, hint, ref, resolve))
        else:
            out.append(Requirement(where, what, Path(str(path)).expanduser(), kind, hint, None, *download))
    return out


def experiment_requirements(cfg: ExperimentConfig) -> list[Requirement]:
    """Every path the datasets, methods and metrics of ``cfg`` name, in config order."""
    out: list[Requirement] = []
    for section in ("datasets", "methods", "metrics"):
        for i, spec in enumerate(getattr(cfg, section)):
            out.extend(component_requirements(spec, i, section))
    return out


def _merge(reqs: list[Requirement]) -> list[Requirement]:
    """One entry per file: the config locations of a shared file joined (e.g. VGG16 for lpips-vgg and dists)."""
    merged: dict[str, Requirement] = {}
    for req in reqs:
        first = merged.get(req.key)
        merged[req.key] = req if first is None else dataclasses.replace(first, where=f"{first.where}, {req.where}")
    return list(merged.values())


def missing_requirements(cfg: ExperimentConfig) -> list[Requirement]:
    """The requirements of ``cfg`` that do not exist; one entry per path (a shared file is listed once)."""
    return _merge([req for req in experiment_requirements(cfg) if not req.exists])


def fetch_missing(missing: list[Requirement], *, progress: bool = True) -> dict[str, str]:
    """Download every missing requirement that can be fetched (one progress bar over the files, plus each
    file's own); returns the failed ones (``Requirement.key`` -> error), all of them: nothing stops early."""
    from harness.core.progress import bars_shown
    from harness.core.progress import progress as progress_bar

    todo = [req for req in missing if req.fetch is not None]
    failed: dict[str, str] = {}
    bar = progress_bar(todo, desc="preflight: fetching weights", unit="file", enabled=progress and bool(todo))
    for req in bar:
        try:
            req.fetch(bars_shown(progress))  # each file's own bar (the downloaders'): on a terminal only
        except fetch.FetchError as exc:  # its message names the file, the cause and the fix
            failed[req.key] = str(exc).strip().splitlines()[0]
        except Exception as exc:  # noqa: BLE001 - collected: every failure is listed at once
            failed[req.key] = first_line(exc)
    return failed


def preflight_message(cfg: ExperimentConfig, *, offline: bool | None = None, progress: bool = True) -> str | None:
    """The preflight of a bench run; the error text listing everything missing or failed (None: all there).

    Online (unless ``offline``, default ``fetch.offline_mode()``) what is missing and downloadable is fetched,
    once every local path exists: a missing dataset or local checkpoint is reported at once, before gigabytes of
    weights are downloaded, with the downloads still to come named.
    """
    offline = fetch.offline_mode() if offline is None else offline
    missing = missing_requirements(cfg)
    local = [req for req in missing if req.fetch is None]
    failed: dict[str, str] = {}
    if missing and not offline and not local:
        failed = fetch_missing(missing, progress=progress)
        missing = [req for req in missing if req.key in failed]
    if not missing:
        return None
    pending = [] if offline or not local else [req for req in missing if req.fetch is not None]
    shown = [req for req in missing if req not in pending]
    lines = [f"{cfg.source}: {len(shown)} required path(s) not found, nothing was run:"]
    for req in shown:
        error = failed.get(req.key)
        lines.append(f"  - {req.where}: {req.what}: download failed: {error}" if error else f"  - {req.line()}")
    if local or (offline and any(req.ref is None for req in shown)):  # local paths, or weights to copy
        lines.append(
            f"relative paths are resolved from the working directory ({Path.cwd()}); put the files there or "
            f"point the config at them (e.g. methods.<name>.checkpoint=/path/to/file); metric weights may also "
            f"go in one folder given by --weights-dir"
        )
    if pending:
        names = ", ".join(req.ref or req.path.name for req in pending)
        lines.append(f"then {len(pending)} file(s) will be downloaded before the run starts: {names}")
    if offline and any(req.fetch is not None for req in missing):
        lines.append(f"without offline mode ({fetch.OFFLINE_HOW}) these are downloaded automatically")
    if failed:
        lines.append("downloads need network access ($HF_ENDPOINT for a Hugging Face mirror); --offline never tries")
    return "\n".join(lines)


def missing_paths_message(cfg: ExperimentConfig) -> str | None:
    """The error text listing every missing path of ``cfg`` without fetching anything, or None when all exist."""
    return preflight_message(cfg, offline=True, progress=False)


class BenchValidationError(ConfigError):
    """Problems found before any work started; the message lists every one of them."""


# ----------------------------------------------------------------------------------------------- identity
# Config keys that do not change what a bench computes (names, paths, the report's look, other stages)
BENCH_IDENTITY_EXCLUDED = ("name", "description", "output_root", "sweep", "report", "model", "train", "analysis")
METHOD_FILES = ("checkpoint", "vqvae", "output folder", "timings CSV")  # Requirement.what of a method's inputs
DATASET_GROUP = "datasets/"


def bench_config(cfg: ExperimentConfig) -> dict:
    """The part of the resolved config a bench run's identity covers."""
    return {k: v for k, v in cfg.to_dict().items() if k not in BENCH_IDENTITY_EXCLUDED}


def dataset_manifest(ds: Any, n: int | None) -> dict[str, Any]:
    """``{lr/<key>: {name, size, sha256}, hr/<key>: ...}`` of the first ``n`` images of ``ds``.

    Datasets that are not files (test stand-ins) are recorded by their keys only.
    """
    keys = list(ds.keys)[:n]
    path_of = getattr(ds, "path_of", None)
    known = getattr(ds, "digests", None) or {}
    out: dict[str, Any] = {}
    for key in keys:
        paths = path_of(key) if callable(path_of) else (None, None)
        for role, path in zip(("lr", "hr"), paths):
            if path is None:
                if role == "lr":
                    out[f"lr/{key}"] = "not a file"
                continue
            path = Path(path)
            out[f"{role}/{key}"] = file_entry(path, known.get(str(path)))
    return out


def method_manifest(spec: Any, index: int) -> dict[str, Any]:
    """``{<what>: {name, size, sha256}}`` of the files a method reads (every file of a folder)."""
    out: dict[str, Any] = {}
    for req in component_requirements(spec, index, "methods"):
        if req.what not in METHOD_FILES:
            continue
        if req.kind == "file" and req.path.is_file():
            out[req.what] = file_entry(req.path)
        elif req.kind == "dir" and req.path.is_dir():
            for path in sorted(p for p in req.path.rglob("*") if p.is_file()):
                out[f"{req.what}/{path.relative_to(req.path).as_posix()}"] = file_entry(path)
    return out


def bench_identity(cfg: ExperimentConfig, prepared: Any) -> RunIdentity:
    """The identity of the bench run ``cfg`` once its components are built (``prepared``)."""
    data: dict[str, Any] = {}
    for name, ds in prepared.datasets.items():
        data[f"{DATASET_GROUP}{name}"] = dataset_manifest(ds, cfg.bench.max_images)
    for i, spec in enumerate(cfg.methods):
        files = method_manifest(spec, i)
        if files:
            data[f"methods/{spec.name}"] = files
    return RunIdentity("bench", bench_config(cfg), data)


def dataset_groups(data: dict[str, Any]) -> dict[str, Any]:
    """The dataset part of a data manifest (what ``regress`` compares)."""
    return {k: v for k, v in data.items() if k.startswith(DATASET_GROUP)}
