"""The on-disk layout of a bench run, and functions to write and read it.

A run directory ``runs/<experiment>/`` holds::

    config.yaml                  resolved experiment config
    env.json                     versions, git commit, device, host, command line, time
    metrics/<dataset>.csv        per-image table: dataset, method, image, <metric columns...>, latency_s
    summary.json                 run metadata, per (dataset, method, metric) statistics, failures, skips
    summary.csv                  the statistics as a flat table (SUMMARY_COLUMNS)
    efficiency.json              optional, written by an efficiency hook
    ceilings.csv                 per image: tokenizer-ceiling and bicubic PSNR-Y of models (harness.bench.ceiling)
    identity.json                config hash, input data manifest (file names, sizes, sha256), code version
    images/<dataset>/<method>/<image>.png        SR outputs (bench.save_images)
    references/<dataset>/{lr,hr}/<image>.png     LR/HR references for the report grid and set-level metrics
    errors/<dataset>__<method>.txt               tracebacks of failed methods
    errors/images.csv                            images that failed: dataset, method, image, stage, error
    report.html, exports/{table,efficiency}.{tex,md}   the report and its paper tables (``run.py report``)

Report, regression checks and sweeps read a run with ``load_run(run_dir) -> RunResults``. ``summary.json`` is
written last, so its presence marks a finished run. The runner builds a run in a staging folder and moves it
into place when it has finished (``harness.core.runfolder``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from harness.core.atomic import write_json, write_text, write_with
from harness.core.stats import describe

IMAGE_COL = "image"
LATENCY_COL = "latency_s"
ID_COLUMNS = ("dataset", "method", IMAGE_COL)
SUMMARY_COLUMNS = (
    "dataset", "method", "metric", "mean", "std", "ci_low", "ci_high", "ci_method", "n", "lower_better",
)  # fmt: skip
# Everything a run writes; a new (or --force) run removes these first so a run dir reflects exactly one run.
OUTPUT_ENTRIES = (
    "config.yaml",
    "env.json",
    "metrics",
    "summary.json",
    "summary.csv",
    "efficiency.json",
    "ceilings.csv",
    "images",
    "references",
    "errors",
    "identity.json",
    "report.html",
    "exports",
)
IMAGE_FAILURE_COLUMNS = ("dataset", "method", "image", "stage", "error")

_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+=,@-]*$")


class RunNotFoundError(FileNotFoundError):
    """A run directory, or a file it must contain, is missing; the message names the path."""


def safe_name(name: str) -> str:
    """A file-system-safe, collision-free path component for a dataset/method/image name.

    Safe names are kept as they are; others get their unsafe characters replaced and a short hash appended,
    so ``a/b`` and ``a_b`` never share a folder.
    """
    if _SAFE.match(name) and name not in (".", ".."):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9._+=,@-]+", "_", name).strip("._") or "x"
    return f"{cleaned[:80]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


# ----------------------------------------------------------------------------------------------- paths
def per_image_path(run_dir: Path, dataset: str, fmt: str = "csv") -> Path:
    return Path(run_dir) / "metrics" / f"{safe_name(dataset)}.{fmt}"


def sr_image_path(run_dir: Path, dataset: str, method: str, image: str) -> Path:
    return Path(run_dir) / "images" / safe_name(dataset) / safe_name(method) / f"{safe_name(image)}.png"


def sr_image_dir(run_dir: Path, dataset: str, method: str) -> Path:
    return Path(run_dir) / "images" / safe_name(dataset) / safe_name(method)


def reference_dir(run_dir: Path, dataset: str, which: str) -> Path:
    if which not in ("lr", "hr"):
        raise ValueError(f"which must be 'lr' or 'hr', got {which!r}")
    return Path(run_dir) / "references" / safe_name(dataset) / which


def reference_path(run_dir: Path, dataset: str, which: str, image: str) -> Path:
    return reference_dir(run_dir, dataset, which) / f"{safe_name(image)}.png"


def error_path(run_dir: Path, dataset: str, method: str) -> Path:
    return Path(run_dir) / "errors" / f"{safe_name(dataset)}__{safe_name(method)}.txt"


# ----------------------------------------------------------------------------------------------- writing
def write_per_image(run_dir: Path, dataset: str, table: pd.DataFrame, fmt: str = "csv") -> Path:
    """Write one dataset's per-image table atomically (``csv`` or ``parquet``)."""
    path = per_image_path(run_dir, dataset, fmt)
    if fmt == "csv":
        write_with(path, lambda tmp: table.to_csv(tmp, index=False))
    elif fmt == "parquet":
        write_with(path, lambda tmp: table.to_parquet(tmp, index=False))
    else:
        raise ValueError(f"unknown results format {fmt!r}; valid choices: csv, parquet")
    return path


def per_image_table(rows: list[dict[str, Any]], metric_names: list[str]) -> pd.DataFrame:
    """Per-image rows -> the table of ``metrics/<dataset>.csv`` (fixed column order)."""
    return pd.DataFrame(rows, columns=[*ID_COLUMNS, *metric_names, LATENCY_COL])


def set_level_row(dataset: str, method: str, metric: str, value: float, n: int, lower_better: bool) -> pd.DataFrame:
    """A summary row for a set-level metric (FID): one value, no spread, no CI."""
    nan = float("nan")
    row = {"dataset": dataset, "method": method, "metric": metric, "mean": float(value), "std": nan,
           "ci_low": nan, "ci_high": nan, "ci_method": "none", "n": int(n),
           "lower_better": bool(lower_better)}  # fmt: skip
    return pd.DataFrame([row], columns=list(SUMMARY_COLUMNS))


def order_summary(parts: list[pd.DataFrame], orders: dict[str, list[str]]) -> pd.DataFrame:
    """Concatenate summary parts and sort them by the given (config) orders of dataset, method and metric."""
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    summary = pd.concat(parts, ignore_index=True)
    keys = pd.DataFrame({col: summary[col].map({n: i for i, n in enumerate(names)}) for col, names in orders.items()})
    return summary.loc[keys.sort_values(list(orders), kind="stable").index].reset_index(drop=True)


def summarize(
    table: pd.DataFrame,
    lower_better: dict[str, bool],
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per (dataset, method, metric) statistics of a per-image table (columns SUMMARY_COLUMNS).

    ``lower_better`` maps each metric column to summarise (in order) to its direction; columns absent from
    ``table`` or entirely NaN for a method are left out. ``n_boot=0`` switches the CIs off (NaN bounds).
    """
    rows = []
    for (dataset, method), group in table.groupby(["dataset", "method"], sort=False):
        for metric, low in lower_better.items():
            if metric not in group or group[metric].isna().all():
                continue
            values = group[metric].to_numpy(dtype=float)
            stats = describe(values, confidence=confidence, n_resamples=n_boot, seed=seed)
            rows.append({"dataset": dataset, "method": method, "metric": metric, **stats, "lower_better": bool(low)})
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None (strict JSON), numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_summary(run_dir: Path, summary: pd.DataFrame, meta: dict[str, Any]) -> None:
    """``summary.csv`` (the statistics) then ``summary.json`` (meta + the same statistics as records)."""
    run_dir = Path(run_dir)
    write_with(run_dir / "summary.csv", lambda tmp: summary.to_csv(tmp, index=False))
    records = summary.to_dict(orient="records")
    write_json(run_dir / "summary.json", _json_safe({**meta, "results": records}))


def run_meta(
    cfg: Any,
    device: Any,
    prepared: Any,
    skipped: dict[str, dict[str, str]],
    failures: list[dict[str, Any]],
    started: str,
) -> dict[str, Any]:
    """The metadata part of ``summary.json``: status, times, bootstrap settings, components, failures, skips.

    ``cfg`` is the ExperimentConfig, ``prepared`` the runner's built components (``datasets``, ``methods``,
    ``flags``, ``notes``), ``skipped`` maps dataset -> {image: error}.
    """
    specs = {s.name: s for s in [*cfg.datasets, *cfg.methods, *cfg.metrics]}

    def params(method: Any) -> dict[str, int] | None:
        try:
            return dict(method.parameter_counts())
        except Exception:  # noqa: BLE001 - informational only
            return None

    datasets = {name: {"type": specs[name].type, "scale": int(ds.scale), "n_images": len(ds),
                       "has_reference": bool(ds.has_reference), "n_skipped": len(skipped.get(name, {}))}
                for name, ds in prepared.datasets.items()}  # fmt: skip
    methods = {name: {"type": specs[name].type, "scale": int(m.scale),
                      "precomputed": bool(getattr(m, "precomputed", False)),
                      "inference_steps": getattr(m, "inference_steps", None), "parameters": params(m),
                      # the local files behind hf:// / https:// references (a Hub snapshot path names its commit)
                      "weight_files": getattr(m, "weight_files", None)}
               for name, m in prepared.methods.items()}  # fmt: skip
    metrics = {name: metric_record(flags._asdict(), specs[name].type, prepared.metrics[name])
               for name, flags in prepared.flags.items()}  # fmt: skip
    return {
        "experiment": cfg.name,
        "status": "failed" if failures else "ok",
        "started": started,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "results_format": cfg.bench.results_format,
        "bootstrap": {
            "method": "scipy.stats.bootstrap of the mean: BCa (n >= 3, values not all equal), else percentile; "
            "per row in ci_method",
            "n_boot": cfg.bench.bootstrap_samples,
            "alpha": 0.05,
            "seed": cfg.seed,
        },  # fmt: skip
        "datasets": datasets,
        "methods": methods,
        "metrics": metrics,
        "failures": failures,
        "skipped": [{"dataset": d, IMAGE_COL: k, "error": e} for d, items in skipped.items() for k, e in items.items()],
        "notes": list(prepared.notes),
    }


def metric_record(flags: dict[str, bool], type_name: str, metric: Any) -> dict[str, Any]:
    """A metric's entry in ``summary.json``: its flags and type, plus ``pyiqa`` (name, options, version, ...) for
    a metric computed by pyiqa (``PyiqaMetric.provenance``)."""
    provenance = getattr(metric, "provenance", None)
    return {**flags, "type": type_name, **({"pyiqa": provenance()} if callable(provenance) else {})}


def write_efficiency(run_dir: Path, data: dict[str, Any]) -> Path:
    """Hook for efficiency tables (params, steps, latency, memory per method): ``efficiency.json``."""
    path = Path(run_dir) / "efficiency.json"
    write_json(path, _json_safe(data))
    return path


def write_config(run_dir: Path, config_yaml: str) -> None:
    write_text(Path(run_dir) / "config.yaml", config_yaml)


def image_failures_path(run_dir: Path) -> Path:
    return Path(run_dir) / "errors" / "images.csv"


def write_image_failures(run_dir: Path, failures: list[dict[str, Any]]) -> Path | None:
    """``errors/images.csv``: one row per image that failed (IMAGE_FAILURE_COLUMNS); nothing when none did."""
    if not failures:
        return None
    table = pd.DataFrame(failures, columns=list(IMAGE_FAILURE_COLUMNS))
    path = image_failures_path(run_dir)
    write_with(path, lambda tmp: table.to_csv(tmp, index=False))
    return path


# ----------------------------------------------------------------------------------------------- reading
@dataclass
class RunResults:
    """Everything a finished bench run wrote, as tables and dicts."""

    run_dir: Path
    config: dict[str, Any]  # config.yaml
    env: dict[str, Any]  # env.json
    meta: dict[str, Any]  # summary.json without "results"
    summary: pd.DataFrame  # SUMMARY_COLUMNS
    per_image: pd.DataFrame  # all datasets: dataset, method, image, <metrics...>, latency_s
    efficiency: dict[str, Any] | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    image_failures: list[dict[str, Any]] = field(default_factory=list)  # images that failed (name, stage, why)
    identity: dict[str, Any] | None = None  # identity.json: config hash, data manifest, code version

    @property
    def name(self) -> str:
        return str(self.meta.get("experiment") or self.config.get("name") or self.run_dir.name)

    @property
    def datasets(self) -> list[str]:
        return list(self.meta.get("datasets", {})) or list(dict.fromkeys(self.summary["dataset"]))

    @property
    def methods(self) -> list[str]:
        return list(self.meta.get("methods", {})) or list(dict.fromkeys(self.summary["method"]))

    @property
    def metrics(self) -> list[str]:
        """Metric columns in config order (latency excluded)."""
        return list(self.meta.get("metrics", {}))

    def lower_better(self, metric: str) -> bool:
        if metric == LATENCY_COL:
            return True
        info = self.meta.get("metrics", {}).get(metric)
        if info is not None:
            return bool(info["lower_better"])
        rows = self.summary[self.summary["metric"] == metric]
        if rows.empty:
            raise KeyError(f"{self.run_dir}: unknown metric {metric!r}; known: {', '.join(self.metrics)}")
        return bool(rows["lower_better"].iloc[0])

    def images(self, dataset: str) -> pd.DataFrame:
        """The per-image table of one dataset (metric columns that are empty for it dropped)."""
        table = self.per_image[self.per_image["dataset"] == dataset]
        return table.dropna(axis=1, how="all").reset_index(drop=True)

    def sr_image(self, dataset: str, method: str, image: str) -> Path:
        return sr_image_path(self.run_dir, dataset, method, image)

    def reference(self, dataset: str, which: str, image: str) -> Path:
        return reference_path(self.run_dir, dataset, which, image)


def read_per_image(path: Path) -> pd.DataFrame:
    path = Path(path)
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
    else:
        table = pd.read_csv(
            path, dtype={"dataset": str, "method": str, IMAGE_COL: str}, keep_default_na=False, na_values=[""]
        )
    missing = [c for c in ID_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected {list(ID_COLUMNS)} + metric columns")
    return table


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise RunNotFoundError(f"{path}: not found (is {path.parent} a finished bench run directory?)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON: {exc}") from None


def load_run(run_dir: str | Path) -> RunResults:
    """Read a finished bench run. Raises RunNotFoundError naming the missing file."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunNotFoundError(f"{run_dir}: run directory not found")
    meta = _read_json(run_dir / "summary.json")
    records = meta.pop("results", [])
    summary = pd.DataFrame(records, columns=list(SUMMARY_COLUMNS)).astype(
        {"mean": float, "std": float, "ci_low": float, "ci_high": float}
    )
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    env_path = run_dir / "env.json"
    env = _read_json(env_path) if env_path.is_file() else {}
    tables = []
    metrics_dir = run_dir / "metrics"
    for path in sorted(metrics_dir.glob("*.csv")) + sorted(metrics_dir.glob("*.parquet")):
        tables.append(read_per_image(path))
    per_image = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=list(ID_COLUMNS))
    efficiency_path = run_dir / "efficiency.json"
    efficiency = _read_json(efficiency_path) if efficiency_path.is_file() else None
    identity_path = run_dir / "identity.json"
    identity = _read_json(identity_path) if identity_path.is_file() else None
    return RunResults(
        run_dir=run_dir,
        config=config or {},
        env=env,
        meta=meta,
        summary=summary,
        per_image=per_image,
        efficiency=efficiency,
        failures=list(meta.get("failures", [])),
        skipped=list(meta.get("skipped", [])),
        image_failures=list(meta.get("image_failures", [])),
        identity=identity,
    )


def first_line(exc: BaseException) -> str:
    """``"TypeName: first line of the message"`` (just the type name when the message is empty)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def record_failure(run_dir: Path, dataset: str, method: str, exc: BaseException) -> dict[str, Any]:
    """Write the traceback of ``exc`` to ``errors/`` of ``run_dir``; return its entry for ``summary.json``."""
    path = error_path(run_dir, dataset, method)
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    write_text(path, f"dataset: {dataset}\nmethod: {method}\n\n{tb}")
    return {
        "dataset": dataset,
        "method": method,
        "error": first_line(exc),
        "traceback": str(path.relative_to(run_dir)),
    }
