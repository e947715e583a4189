"""Sweep orchestration: expand -> validate every cell -> skip finished cells -> run the rest -> summarise.

    from harness.sweep import run_sweep
    result = run_sweep(cfg, cell_fn="mypkg.cells:toy")   # or a callable with isolation="inline"
    result.ok, result.counts, result.summary_path

Outputs under ``runs/<sweep>/``: ``cells/<name>-<hash8>/`` (see ``harness.sweep.cache``), ``sweep.json``
(every cell's status, overrides, result and error; counts) and ``cells.csv`` (one row per cell: overrides,
status, duration, flattened result). Both are rewritten atomically at the end of every run; a dry run writes
nothing.

Re-running is always safe: done cells are skipped (``force`` re-runs everything, ``force_failed`` the failed
ones), cells another live runner holds are left to it and waited for, and interrupted cells are re-run.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config.experiment import ExperimentConfig
from harness.core import runfolder
from harness.core.atomic import write_json, write_text
from harness.core.identity import IdentityMismatchError, code_version
from harness.core.mapping import to_dict
from harness.core.runlock import RunLock
from harness.sweep.cache import (
    CELL_FILE,
    CONFIG_FILE,
    LOG_FILE,
    STATE_FILE,
    cell_status,
    changed_inputs,
    now,
    read_state,
    write_state,
)
from harness.sweep.execute import CellFn, Outcome, base_state, cell_fn_path, resolve_cell_fn
from harness.sweep.expand import SEED_KEY, Cell, SweepSpec, expand
from harness.sweep.scheduler import CellJob, RunOptions

log = logging.getLogger(__name__)

SUMMARY_FILE = "sweep.json"
TABLE_FILE = "cells.csv"
MAX_WAIT_ROUNDS = 1000


@dataclass
class SweepResult:
    sweep_dir: Path
    cells: list[Cell]
    rows: list[dict]  # one per cell, as in sweep.json
    dry_run: bool = False
    summary_path: Path | None = None
    outcomes: list[Outcome] = field(default_factory=list)  # what this run executed or skipped

    @property
    def counts(self) -> dict[str, int]:
        counts = {s: 0 for s in ("done", "failed", "running", "pending")}
        for row in self.rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        return counts

    @property
    def ok(self) -> bool:
        """Every cell done (a dry run is never 'ok' unless the sweep is already complete)."""
        return all(row["status"] == "done" for row in self.rows)

    @property
    def failed(self) -> list[dict]:
        return [row for row in self.rows if row["status"] == "failed"]


def plan(cfg: ExperimentConfig | SweepSpec, *, strict_code_version: bool = False) -> tuple[SweepSpec, list[Cell]]:
    """Expand and validate every cell (no files written)."""
    spec = cfg if isinstance(cfg, SweepSpec) else SweepSpec.from_config(cfg)
    return spec, expand(spec, code_version=code_version(), strict_code_version=strict_code_version)


def cell_dir(sweep_dir: Path, cell: Cell) -> Path:
    return Path(sweep_dir) / "cells" / cell.dir_name


def run_sweep(
    cfg: ExperimentConfig | SweepSpec,
    *,
    cell_fn: str | CellFn | None = None,
    force: bool = False,
    force_failed: bool = False,
    dry_run: bool = False,
    workers: int | None = None,
    backend: str | None = None,
    isolation: str = "process",
    gpus: list[str] | None = None,
    strict_code_version: bool = False,
    wait: bool = True,
    wait_timeout_s: float | None = None,
    progress: bool = True,
) -> SweepResult:
    """Run (or, with ``dry_run``, list) every cell of ``cfg.sweep``. See the module docstring."""
    spec, cells = plan(cfg, strict_code_version=strict_code_version)
    sweep_dir = spec.sweep_dir.absolute()  # workers and jobs may run elsewhere
    if dry_run:
        rows = collect_rows(sweep_dir, cells)
        print(format_table(spec, rows, force=force, force_failed=force_failed))
        return SweepResult(sweep_dir, cells, rows, dry_run=True)

    from harness.sweep.backends import make_backend

    backend_name = backend or spec.sweep.backend
    runner = make_backend(
        backend_name,
        options=spec.sweep.backend_options,
        sweep_dir=sweep_dir,
        sweep_name=spec.name,
        workers=workers if workers is not None else spec.sweep.workers,
        isolation=isolation,
        gpus=gpus,
        source=spec.source,
    )
    # Fail now, not once per cell, if the cell function cannot be found (or imported by workers).
    if backend_name == "local" and isolation == "inline":
        resolve_cell_fn(cell_fn)
    else:
        cell_fn_path(cell_fn)
    opts = RunOptions(cell_fn=cell_fn, force=force, force_failed=force_failed)
    prepare_cells(sweep_dir, cells)

    if not force:
        _refuse_stale_cells(sweep_dir, cells)
    todo, busy, outcomes = [], [], []
    for cell in cells:
        status, _ = cell_status(cell_dir(sweep_dir, cell))
        if status == "done" and not force or status == "failed" and not (force or force_failed):
            outcomes.append(Outcome(cell.dir_name, status, skipped=True))
        elif status == "running":
            busy.append(cell)
        else:
            todo.append(cell)
    skipped = len(outcomes)
    log.info(
        "sweep %s: %d cells, %d to run, %d finished earlier%s | %s | %s",
        spec.name, len(cells), len(todo), skipped, f", {len(busy)} held by another runner" if busy else "",
        runner.describe(), sweep_dir,
    )  # fmt: skip
    gave_up = False
    for _ in range(MAX_WAIT_ROUNDS):
        new = _run_cells(runner, spec, sweep_dir, todo, opts, progress)
        outcomes += [o for o in new if o.status != "busy"]
        by_name = {c.dir_name: c for c in todo}
        busy += [by_name[o.cell] for o in new if o.status == "busy"]
        if not busy or not wait or gave_up:
            break
        todo, gave_up = _wait_for_others(sweep_dir, busy, wait_timeout_s)
        held = {c.dir_name: c for c in busy if cell_status(cell_dir(sweep_dir, c))[0] == "running"}
        busy = list(held.values())
        if not todo and not busy:
            break
    rows = collect_rows(sweep_dir, cells)
    summary_path = write_summary(spec, sweep_dir, rows, backend_name)
    result = SweepResult(sweep_dir, cells, rows, summary_path=summary_path, outcomes=outcomes)
    print(format_summary(spec, result))
    return result


def _refuse_stale_cells(sweep_dir: Path, cells: list[Cell]) -> None:
    """Refuse to count a done cell as done when the input files it recorded have changed since."""
    seen: dict = {}
    stale = []
    for cell in cells:
        folder = cell_dir(sweep_dir, cell)
        if cell_status(folder)[0] == "done":
            lines = changed_inputs(folder, seen)
            if lines:
                stale.append(f"{cell.dir_name}:\n" + "\n".join(f"    {line}" for line in lines[:5]))
    if stale:
        raise IdentityMismatchError(
            f"{sweep_dir}: {len(stale)} finished cell(s) were computed from input files that have changed since; "
            "their results would no longer match their inputs:\n  " + "\n  ".join(stale[:10]) + "\n"
            "re-run the sweep with --force to recompute every cell, or restore the files"
        )


def _run_cells(runner, spec, sweep_dir, cells, opts, progress) -> list[Outcome]:
    if not cells:
        return []
    from harness.core.progress import progress as progress_bar

    jobs = [CellJob(c, cell_dir(sweep_dir, c)) for c in cells]
    outcomes: list[Outcome] = []
    counts = {"done": 0, "failed": 0}
    with progress_bar(total=len(jobs), desc=f"sweep {spec.name}", unit="cell", enabled=progress) as bar:
        for outcome in runner.run(jobs, opts):
            outcomes.append(outcome)
            where = sweep_dir / "cells" / outcome.cell
            if outcome.status == "busy":
                log.info("  busy    %s: held by another runner; will wait for it", outcome.cell)
            elif outcome.status == "done":
                took = f" ({outcome.duration_s:.1f} s)" if outcome.duration_s is not None else ""
                log.info("  done    %s%s", outcome.cell, " (done earlier)" if outcome.skipped else took)
            else:
                log.error("  FAILED  %s: %s (log: %s)", outcome.cell, outcome.error, where / LOG_FILE)
            if outcome.status in counts:
                counts[outcome.status] += 1
            bar.set_postfix(counts, refresh=False)
            bar.update(1)
    return outcomes


def _wait_for_others(sweep_dir: Path, busy: list[Cell], timeout: float | None) -> tuple[list[Cell], bool]:
    """Wait until other runners release the busy cells. Returns the cells that still need running (their
    runner died) and whether a wait timed out. A cell the other runner finished (done or failed) is not run
    again."""
    log.info("waiting for %d cell(s) being run by another runner ...", len(busy))
    todo, timed_out = [], False
    for cell in busy:
        lock = RunLock(cell_dir(sweep_dir, cell))
        if not lock.wait(timeout):
            timed_out = True
            continue
        try:
            state = read_state(cell_dir(sweep_dir, cell)) or {}
        finally:
            lock.release()
        if state.get("status") not in ("done", "failed"):
            todo.append(cell)
    return todo, timed_out


# ---------------------------------------------------------------------------------------------- cell folders
def prepare_cells(sweep_dir: Path, cells: list[Cell]) -> None:
    """Create cell folders with ``cell.json``, ``config.yaml`` and a pending ``state.json`` (under each cell's
    lock, so a live runner's state is never overwritten)."""
    import json

    from harness.config.files import dump_yaml

    for cell in cells:
        path = cell_dir(sweep_dir, cell)
        path.mkdir(parents=True, exist_ok=True)
        lock = RunLock(path)
        if not lock.try_acquire():
            continue  # another runner is on it and has written these already
        try:
            owned = runfolder.read_manifest(path)
            written = []
            for name, text in (
                (CELL_FILE, json.dumps(cell.to_json(), indent=2, default=str) + "\n"),
                (CONFIG_FILE, dump_yaml(cell.raw)),
            ):
                target = path / name
                ours = owned.get(name, "sweep") == "sweep"  # not a file a stage has replaced since (config.yaml)
                if not target.exists() or ours and target.read_text(encoding="utf-8") != text:
                    write_text(target, text)
                written.append(name)
            if read_state(path) is None:
                write_state(path, {**base_state(cell), "created_at": now()})
            written += [n for n in (STATE_FILE, LOG_FILE) if n not in owned]
            new = [n for n in written if n not in owned]
            if new:
                runfolder.register(path, new, "sweep")
        finally:
            lock.release()


# --------------------------------------------------------------------------------------------------- summary
def collect_rows(sweep_dir: Path, cells: list[Cell]) -> list[dict]:
    """One row per cell from its state.json (the only source of truth for 'done')."""
    rows = []
    for cell in cells:
        path = cell_dir(sweep_dir, cell)
        state = read_state(path) or {}
        status, note = cell_status(path)
        rows.append(
            {
                "index": cell.index,
                "name": cell.name,
                "dir": f"cells/{cell.dir_name}",
                "id": cell.id,
                "overrides": cell.overrides,
                "status": status,
                "attempts": state.get("attempts", 0),
                "duration_s": state.get("duration_s"),
                "started_at": state.get("started_at"),
                "finished_at": state.get("finished_at"),
                "host": state.get("host"),
                "result": state.get("result") if status == "done" else None,
                "error": state.get("error") if status == "failed" else None,
                "note": note if status != "failed" else state.get("note", ""),
            }
        )
    return rows


def write_summary(spec: SweepSpec, sweep_dir: Path, rows: list[dict], backend: str) -> Path:
    """Write ``sweep.json`` and ``cells.csv`` atomically; returns the sweep.json path."""
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "failed", "running", "pending")}
    summary = {
        "sweep": spec.name,
        "source": spec.source,
        "sweep_dir": str(sweep_dir),
        "updated_at": now(),
        "code_version": code_version(),
        "stages": list(spec.sweep.stages),
        "backend": backend,
        "keys": list(spec.sweep.grid) + list(spec.sweep.zip) + ([SEED_KEY] if spec.sweep.seeds is not None else []),
        "seeds": spec.sweep.seeds,
        "statistics": to_dict(spec.sweep.statistics),  # the report's paired comparisons (reports.sweep)
        "counts": counts,
        "complete": counts["done"] == len(rows),
        "cells": rows,
        # cell folders of earlier definitions of this sweep (other values, other stages): kept, not counted
        "other_dirs": sorted(
            f"cells/{p.name}"
            for p in (Path(sweep_dir) / "cells").glob("*")
            if p.is_dir() and not p.name.startswith(".") and f"cells/{p.name}" not in {r["dir"] for r in rows}
        ),
        "failed": [
            {"name": r["name"], "dir": r["dir"], "error": r["error"], "log": f"{r['dir']}/{LOG_FILE}"}
            for r in rows
            if r["status"] == "failed"
        ],
    }
    path = Path(sweep_dir) / SUMMARY_FILE
    write_json(path, summary)
    write_text(Path(sweep_dir) / TABLE_FILE, cells_csv(summary["keys"], rows))
    return path


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = ";".join(map(str, value))
    else:
        out[prefix] = value


def cells_csv(keys: list[str], rows: list[dict]) -> str:
    """One row per cell: index, cell, dir, status, one column per swept key, attempts, duration, result.*"""
    flat_rows, result_cols = [], []
    for row in rows:
        flat: dict[str, Any] = {}
        _flatten("result", row.get("result") or {}, flat)
        flat.pop("result", None)
        result_cols += [c for c in flat if c not in result_cols]
        flat_rows.append(flat)
    header = ["index", "cell", "dir", "status", *keys, "attempts", "duration_s", *result_cols, "error"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for row, flat in zip(rows, flat_rows):
        values = {
            "index": row["index"],
            "cell": row["name"],
            "dir": row["dir"],
            "status": row["status"],
            "attempts": row["attempts"],
            "duration_s": row["duration_s"],
            "error": row["error"] or "",
            **{k: _csv_value(row["overrides"].get(k)) for k in keys},
            **flat,
        }
        writer.writerow(values)
    return buf.getvalue()


def _csv_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, sort_keys=True)
    return value


def _action(status: str, force: bool, force_failed: bool) -> str:
    if status == "running":
        return "busy"
    if status == "done":
        return "re-run" if force else "skip"
    if status == "failed":
        return "re-run" if force or force_failed else "skip"
    return "run"


def format_table(spec: SweepSpec, rows: list[dict], *, force: bool = False, force_failed: bool = False) -> str:
    """The dry-run listing: one line per cell with its state and what a run would do."""
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "failed", "running", "pending")}
    width = max([len(r["dir"]) - len("cells/") for r in rows] + [4])
    lines = [
        f"sweep {spec.name}: {len(rows)} cells ({', '.join(f'{n} {s}' for s, n in counts.items())})"
        f" in {spec.sweep_dir} | stages: {', '.join(spec.sweep.stages)}",
        f"{'#':>3}  {'status':<8} {'action':<7} {'cell':<{width}}  note",
    ]
    for r in rows:
        action = _action(r["status"], force, force_failed)
        note = r["error"] if r["status"] == "failed" else r["note"]
        lines.append(f"{r['index']:>3}  {r['status']:<8} {action:<7} {r['dir'][6:]:<{width}}  {note or ''}".rstrip())
    return "\n".join(lines)


def format_summary(spec: SweepSpec, result: SweepResult) -> str:
    c = result.counts
    ran = sum(not o.skipped for o in result.outcomes)
    lines = [
        f"sweep {spec.name}: {len(result.rows)} cells: {c['done']} done, {c['failed']} failed"
        + (f", {c['running']} running elsewhere" if c["running"] else "")
        + (f", {c['pending']} pending" if c["pending"] else "")
        + f" ({ran} run now) -> {result.summary_path}"
    ]
    for row in result.failed:
        lines.append(f"  FAILED {row['dir']}: {row['error']}  (log: {result.sweep_dir / row['dir'] / LOG_FILE})")
    skipped_failed = [o for o in result.outcomes if o.skipped and o.status == "failed"]
    if skipped_failed:
        lines.append(f"  {len(skipped_failed)} cell(s) failed in an earlier run; re-run them with --force-failed")
    return "\n".join(lines)
