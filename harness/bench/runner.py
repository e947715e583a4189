"""``run_bench(cfg)``: every method on every dataset, per-image metrics, saved outputs, summary statistics.

1. ``prepare``: check every path the experiment names, build every dataset, method and metric and check they
   fit together; all problems are reported in one ``BenchValidationError`` before any work starts.
2. For each method (built once, moved to the device once) and each dataset, ``evaluate`` it; a method that
   raises is recorded (traceback in ``errors/``) and the others carry on; an image that fails is recorded
   (``errors/images.csv``) and the other images are evaluated.
3. Summary statistics with bootstrap CIs and set-level metrics (FID) from the saved folders; ``summary.json``
   is written last. ``BenchFailedError`` is raised at the very end if any method failed, or images failed and
   the run is strict (the CLI exits 1).

The run folder is locked (one writer), its identity recorded (``identity.json``: config, data manifest, code),
and the run built in a staging folder that replaces the previous run only once it has finished.

Hooks (``BenchHook``) see the run as it goes: the ceiling hook always (``harness.bench.ceiling``: tokenizer
ceiling and bicubic PSNR-Y of models), the efficiency hook when ``bench.efficiency`` is set (Table 2).
"""

from __future__ import annotations

import datetime as _dt
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from harness.bench import layout
from harness.bench.ceiling import CeilingHook
from harness.bench.efficiency import EfficiencyHook
from harness.bench.evaluate import DatasetState, evaluate, latency_record, latency_source
from harness.bench.layout import record_failure
from harness.bench.prepare import (
    BenchContext,
    BenchHook,
    BenchValidationError,
    Prepared,
    bench_config,
    bench_identity,
    missing_requirements,
    preflight_message,
    prepare,
)
from harness.config.experiment import ExperimentConfig
from harness.config.files import dump_yaml
from harness.core import runfolder
from harness.core.atomic import write_json
from harness.core.device import resolve_device
from harness.core.envinfo import collect_env
from harness.core.identity import RunIdentity, format_differences, read_identity, write_identity
from harness.core.runlock import RunLock, is_locked


class RunExistsError(FileExistsError):
    """The run directory already holds a finished run and ``force`` was not given."""


class BenchFailedError(RuntimeError):
    """Raised after all outputs are written when a method (or set-level metric) failed, or images failed and the
    run is strict (``bench.strict``, or unreadable inputs with ``bench.on_corrupt: fail``)."""

    def __init__(self, run_dir: Path, failures: list[dict[str, Any]], image_failures: Sequence[dict] = ()):
        self.run_dir = Path(run_dir)
        self.failures = failures
        self.image_failures = list(image_failures)
        lines = [f"{f['method']} on {f['dataset']}: {f['error']}" for f in failures]
        lines += [
            f"{f['dataset']}/{f['image']} ({f.get('method') or 'input'}, {f['stage']}): {f['error']}"
            for f in self.image_failures[:MAX_LISTED]
        ]
        if len(self.image_failures) > MAX_LISTED:
            lines.append(f"... and {len(self.image_failures) - MAX_LISTED} more image failures")
        n = len(failures) + len(self.image_failures)
        where = f"tracebacks in {run_dir / 'errors'}" if failures else f"see {layout.image_failures_path(run_dir)}"
        super().__init__(f"{n} failure(s) in {run_dir} ({where}):\n  " + "\n  ".join(lines))


MAX_LISTED = 10


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (each method x dataset starts from one state)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def bench_owned(run_dir: Path) -> dict[str, str]:
    """The harness's files in ``run_dir`` (its file manifest); a finished run of an earlier version without a
    manifest is recognised by its ``summary.json`` and its output entries adopted."""
    owned = runfolder.read_manifest(run_dir)
    if "bench" in owned.values() or not (run_dir / "summary.json").is_file():
        return owned
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return owned
    if not (isinstance(summary, dict) and "results" in summary and "experiment" in summary):
        return owned
    legacy = {rel: "bench" for entry in layout.OUTPUT_ENTRIES for rel in runfolder.files_under(run_dir, entry)}
    return {**legacy, **owned}


def _claim_run_dir(cfg: ExperimentConfig, run_dir: Path, force: bool, owned: dict[str, str]) -> None:
    """Refuse a run folder holding files the harness did not write, or a finished run without ``force``."""
    found = runfolder.conflicts(run_dir, layout.OUTPUT_ENTRIES, owned)
    if found:
        raise runfolder.conflict_error(run_dir, found, "a bench run")
    if (run_dir / "summary.json").exists() and not force:
        recorded = read_identity(run_dir)
        if recorded is None:
            how = "(made by an earlier version: its identity was not recorded)"
        else:
            diff = recorded.differences(RunIdentity("bench", bench_config(cfg), recorded.data))
            how = (
                "from the same config and code"
                if not diff
                else "from a different config or code:\n" + format_differences(diff) + "\n"
            )
        raise RunExistsError(
            f"{run_dir} already holds a finished run {how}; pass --force (force=True) to replace it (the new run "
            f"is built beside it and replaces it only once it has finished) or choose another name/output_root"
        )


def run_bench(
    cfg: ExperimentConfig,
    *,
    device: str | torch.device | None = None,
    force: bool = False,
    hooks: Sequence[BenchHook] = (),
    progress: bool = True,
    notes: Sequence[str] = (),
) -> Path:
    """Run the benchmark described by ``cfg``; return the run directory (``cfg.run_dir``).

    ``notes`` are extra lines for ``summary.json`` and the report (e.g. "metric X left out: no weights").

    The run folder is locked for the whole run (``RunLockedError`` names the holder), the run is written to a
    staging folder inside it and moved into place when it has finished, so a failing run (or ``force`` over a
    finished one) leaves the previous run as it was. Raises ConfigError / BenchValidationError (nothing run),
    RunExistsError, RunFolderError (files the harness did not write in the way), or BenchFailedError after
    writing every output when some method failed (or, when strict, some image).
    """
    dev = resolve_device(device if device is not None else cfg.bench.device)
    run_dir = cfg.run_dir
    lock = RunLock(run_dir, "bench run folder")
    if any(req.fetch is None for req in missing_requirements(cfg)):  # the cheap checks first: a local path
        raise BenchValidationError(preflight_message(cfg, progress=False))  # missing (nothing fetched, built, made)
    if run_dir.is_dir():
        if is_locked(run_dir):
            lock.acquire()  # raises RunLockedError naming the holder
        _claim_run_dir(cfg, run_dir, force, bench_owned(run_dir))
    hooks = [*hooks, *config_hooks(cfg, hooks)]
    prepared = prepare(cfg, dev, progress=progress)
    prepared.notes[:0] = list(notes)
    with lock:
        runfolder.clean_leftovers(run_dir)
        owned = bench_owned(run_dir)
        _claim_run_dir(cfg, run_dir, force, owned)  # again, now that the folder is ours
        identity = bench_identity(cfg, prepared)
        with runfolder.Staging(run_dir, "bench", replaces=("bench", "report"), last=("summary.json",)) as staging:
            failures, image_failures = _run(cfg, staging.path, dev, prepared, hooks, identity, progress)
            staging.commit(extra_owned=owned)
    if failures or image_failures:
        raise BenchFailedError(run_dir, failures, image_failures)
    return run_dir


def _run(cfg, out_dir: Path, dev, prepared: Prepared, hooks, identity: RunIdentity, progress: bool):
    """Every method on every dataset into ``out_dir``; returns (method failures, image failures that fail it)."""
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    ctx = BenchContext(cfg, out_dir, dev, prepared)
    states = {name: DatasetState() for name in prepared.datasets}
    failures: list[dict[str, Any]] = []
    closed: set[str] = set()

    def close(name: str) -> None:  # free a method's memory as soon as it is done, exactly once
        if name not in closed:
            closed.add(name)
            prepared.methods[name].close()

    try:
        layout.write_config(out_dir, dump_yaml(cfg.to_dict()))
        write_json(out_dir / "env.json", collect_env(dev))
        write_identity(out_dir, identity)
        for hook in hooks:
            hook.on_start(ctx)
        for m_name, method in prepared.methods.items():
            try:
                method.to(dev)
                for hook in hooks:
                    hook.on_method_start(ctx, m_name, method)
            except Exception as exc:  # noqa: BLE001
                failures.extend(record_failure(out_dir, d, m_name, exc) for d in prepared.datasets)
                close(m_name)
                continue
            for ds_name, ds in prepared.datasets.items():
                seed_everything(cfg.seed)
                try:
                    with torch.inference_mode():
                        rows = evaluate(
                            ctx, ds_name, ds, m_name, method.for_dataset(ds_name), states[ds_name], hooks, progress
                        )
                except OSError:
                    raise  # writing the run failed (disk full, permissions): the whole run stops
                except Exception as exc:  # noqa: BLE001 - one method failing must not stop the others
                    failures.append(record_failure(out_dir, ds_name, m_name, exc))
                    continue
                states[ds_name].rows.extend(rows)
                table = layout.per_image_table(states[ds_name].rows, prepared.image_metrics(ds))
                layout.write_per_image(out_dir, ds_name, table, cfg.bench.results_format)
            close(m_name)
    finally:
        for m_name in prepared.methods:
            close(m_name)
    summary = summary_table(ctx, states, failures)
    for hook in hooks:
        hook.on_end(ctx, summary)
    skipped = {name: state.skipped for name, state in states.items()}
    loads = [
        {"dataset": d, "method": "", layout.IMAGE_COL: k, "stage": "load", "error": e}
        for d, state in states.items()
        for k, e in state.skipped.items()
    ]
    others = [f for state in states.values() for f in state.image_failures]
    # the image failures that fail the run: every one when strict, unreadable inputs with on_corrupt 'fail'
    failing = loads + others if cfg.bench.strict else loads if cfg.bench.on_corrupt == "fail" else []
    meta = layout.run_meta(cfg, dev, prepared, skipped, failures, started)
    meta["latency"] = latency_record(cfg.bench.batch_size)  # how latency_s was measured
    annotate_meta(meta, prepared, states)
    meta["identity"] = {"config_sha256": identity.config_sha256, "data_sha256": identity.data_sha256,
                        "code": identity.code}  # fmt: skip
    if failing:
        meta["status"] = "failed"
    layout.write_image_failures(out_dir, loads + others)
    layout.write_summary(out_dir, summary, meta)
    return failures, failing


def config_hooks(cfg: ExperimentConfig, given: Sequence[BenchHook] = ()) -> list[BenchHook]:
    """Hooks of every run and those the config asks for: the ``CeilingHook`` (tokenizer ceiling and bicubic of
    every method with a tokenizer; it does nothing for the others), an ``EfficiencyHook`` when
    ``bench.efficiency`` is set (unless given)."""
    hooks: list[BenchHook] = [] if any(isinstance(h, CeilingHook) for h in given) else [CeilingHook()]
    options = getattr(cfg.bench, "efficiency", None)
    if options is None or any(isinstance(h, EfficiencyHook) for h in given):
        return hooks
    return [*hooks, EfficiencyHook(options)]


# ----------------------------------------------------------------------------------------------- summary
def _preview(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... and {len(names) - limit} more"


def annotate_meta(meta: dict[str, Any], prepared: Prepared, states: dict[str, DatasetState]) -> None:
    """Add what ``layout.run_meta`` does not record: per-method skips and where each latency comes from."""
    notes = []
    for name, method in prepared.methods.items():
        source = latency_source(method)
        if name in meta.get("methods", {}):
            meta["methods"][name]["latency_source"] = source
        if source == "reported":
            notes.append(f"{name}: latency is the per-image time its timings file reports, not measured here")
    skipped = []
    for ds_name, state in states.items():
        for m_name, items in state.method_skipped.items():
            skipped += [
                {"dataset": ds_name, "method": m_name, layout.IMAGE_COL: k, "error": e} for k, e in items.items()
            ]
            notes.append(
                f"{m_name} on {ds_name}: {len(items)} image(s) without output skipped (strict: false), its "
                f"statistics cover the other images only: {_preview(list(items))}"
            )
    meta["method_skipped"] = skipped
    evaluation, failed = [], []
    for ds_name, state in states.items():
        for m_name, counts in state.counts.items():
            evaluation.append({"dataset": ds_name, "method": m_name, **counts})
            if counts["n_failed"]:
                notes.append(
                    f"{m_name} on {ds_name}: {counts['n_evaluated']} of {counts['n_images']} image(s) evaluated, "
                    f"{counts['n_failed']} failed (errors/images.csv); its statistics cover the evaluated ones"
                )
        failed += state.image_failures
    meta["evaluation"] = evaluation
    meta["image_failures"] = failed
    meta["notes"] = [*meta.get("notes", []), *notes]


def summary_table(ctx: BenchContext, states: dict[str, DatasetState], failures: list[dict]) -> pd.DataFrame:
    """Per-image metrics + latency through the bootstrap, then set-level metrics from the saved folders."""
    cfg, run_dir, prepared = ctx.cfg, ctx.run_dir, ctx.prepared
    parts = []
    for ds_name, state in states.items():
        ds, table = prepared.datasets[ds_name], pd.DataFrame(state.rows)
        if table.empty:
            continue
        directions = {k: prepared.flags[k].lower_better for k in prepared.image_metrics(ds)}
        directions[layout.LATENCY_COL] = True
        parts.append(layout.summarize(table, directions, n_boot=cfg.bench.bootstrap_samples, seed=cfg.seed))
        for mt_name, flags in prepared.flags.items():
            if not flags.set_level or (flags.needs_reference and not ds.has_reference):
                continue
            for m_name in dict.fromkeys(table["method"]):
                sr_dir, hr_dir = (
                    layout.sr_image_dir(run_dir, ds_name, m_name),
                    layout.reference_dir(run_dir, ds_name, "hr"),
                )
                try:
                    value = float(prepared.metrics[mt_name].compute_sets(sr_dir, hr_dir))
                except Exception as exc:  # noqa: BLE001
                    failures.append(record_failure(run_dir, ds_name, f"{m_name} ({mt_name})", exc))
                    continue
                n_images = int((table["method"] == m_name).sum())
                parts.append(layout.set_level_row(ds_name, m_name, mt_name, value, n_images, flags.lower_better))
    orders = {"dataset": list(prepared.datasets), "method": list(prepared.methods),
              "metric": [*prepared.metrics, layout.LATENCY_COL]}  # fmt: skip
    return layout.order_summary(parts, orders)
