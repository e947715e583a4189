"""Reading a sweep's cells from disk: ``load_sweep_cells(sweep_dir) -> list[SweepCell]``.

The layout is the sweep engine's (``harness.sweep``); the cells are those listed in ``sweep.json`` (the current
sweep definition: folders of earlier definitions are not shown), or every folder under ``cells/`` without it::

    cells/<cell>/state.json                  {status, name, index, overrides: {key: value}, result, error}
    cells/<cell>/summary.csv                 the cell's bench run (the cell folder is its run dir; a
                                             ``result[.bench].run_dir`` in state.json, or a nested run)
    cells/<cell>/analysis/attention.csv      optional: harness.analysis.attention.ATTENTION_COLUMNS
    cells/<cell>/analysis/accumulation.csv   optional: harness.analysis.accumulation.ACCUMULATION_COLUMNS
    cells/<cell>/analysis/sca_gates.csv      optional: harness.analysis.probes.GATE_COLUMNS
    cells/<cell>/train/metrics.csv           optional: the train stage's log (HCC share, gate statistics)

Anything unreadable is noted in the cell's ``problems`` (the page lists them) instead of stopping the report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.accumulation import read_accumulation_csv
from harness.analysis.attention.tables import read_attention_csv
from harness.analysis.stage import read_sca_gates

SUMMARY_NEEDED = ("dataset", "method", "metric", "mean")
RUN_DIR_KEYS = ("run_dir", "bench_dir", "bench_run_dir")


@dataclass
class SweepCell:
    """What the report knows about one cell (anything unreadable is noted in ``problems``)."""

    dir: Path
    name: str
    index: int
    status: str
    overrides: dict[str, Any]
    error: str | None = None
    run_dir: Path | None = None
    summary: pd.DataFrame | None = None
    attention: pd.DataFrame | None = None
    accumulation: pd.DataFrame | None = None
    gates: pd.DataFrame | None = None
    training: pd.DataFrame | None = None  # train/metrics.csv
    problems: list[str] = field(default_factory=list)


def _find_run_dir(cell_dir: Path, state: dict) -> Path | None:
    result = state.get("result") if isinstance(state.get("result"), dict) else {}
    places = [result] + [v for v in result.values() if isinstance(v, dict)]  # e.g. result.bench.run_dir
    for place, key in ((p, k) for p in places for k in RUN_DIR_KEYS):
        if isinstance(place.get(key), str):
            path = Path(place[key])
            path = path if path.is_absolute() else cell_dir / path
            if (path / "summary.csv").is_file():
                return path
    if (cell_dir / "summary.csv").is_file():
        return cell_dir
    nested = sorted(p.parent for depth in ("*", "*/*") for p in cell_dir.glob(f"{depth}/summary.csv"))
    return nested[0] if nested else None


def _read_summary(path: Path, problems: list[str]) -> pd.DataFrame | None:
    try:
        df = pd.read_csv(path, dtype={"dataset": str, "method": str, "metric": str})
    except (OSError, ValueError) as exc:
        problems.append(f"{path}: unreadable ({exc})")
        return None
    missing = [c for c in SUMMARY_NEEDED if c not in df.columns]
    if missing:
        problems.append(f"{path}: missing columns {missing}")
        return None
    for col in ("ci_low", "ci_high", "n"):
        if col not in df.columns:
            df[col] = math.nan
    if "lower_better" not in df.columns:
        problems.append(f"{path}: no lower_better column; best values not marked")
        df["lower_better"] = pd.NA
    return df


def _read_metrics(path: Path) -> pd.DataFrame:
    """A train stage's ``metrics.csv``; ValueError naming the file when it has no ``step`` column."""
    df = pd.read_csv(path)
    if "step" not in df.columns:
        raise ValueError(f"{path}: not a training log (no 'step' column)")
    return df


def _listed_cells(sweep_dir: Path) -> list[dict] | None:
    """The cell rows of ``sweep.json`` (the current sweep definition), or None without a sweep.json."""
    path = sweep_dir / "sweep.json"
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text(encoding="utf-8")).get("cells")
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: unreadable ({exc}); delete it to report every folder under cells/") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("dir"), str) for r in rows):
        raise ValueError(f"{path}: 'cells' is not a list of {{dir: ...}} rows; delete it to report every folder")
    return rows


def load_sweep_cells(sweep_dir: str | Path) -> list[SweepCell]:
    """The sweep's cells, sorted by cell index, then name: those listed in ``sweep.json`` (so folders left by
    an earlier definition of the sweep, e.g. other values, are not shown), else every folder under
    ``cells/``."""
    sweep_dir = Path(sweep_dir)
    cells_dir = sweep_dir / "cells"
    if not cells_dir.is_dir():
        raise FileNotFoundError(f"{cells_dir}: not found; is {sweep_dir} a sweep directory (runs/<sweep>/)?")
    listed = _listed_cells(sweep_dir)
    if listed is None:
        folders = [(p, {}) for p in sorted(p for p in cells_dir.iterdir() if p.is_dir())]
    else:
        folders = [(sweep_dir / row["dir"], row) for row in listed]
    cells = []
    for cell_dir, row in folders:
        problems: list[str] = []
        state: dict = {}
        if row and not cell_dir.is_dir():
            problems.append(f"{cell_dir}: listed in sweep.json but missing")
        for fname in ("state.json", "cell.json"):
            path = cell_dir / fname
            if path.is_file():
                try:
                    loaded = json.loads(path.read_text(encoding="utf-8"))
                    state = {**loaded, **state} if isinstance(loaded, dict) else state
                except (OSError, ValueError) as exc:
                    problems.append(f"{path}: unreadable ({exc})")
        if not row and not state and not (cell_dir / "summary.csv").is_file():
            continue  # not a cell folder (e.g. _tokenizers/)
        state = {
            **{k: row[k] for k in ("name", "index", "overrides", "status", "error") if k in row},
            **state,
        }
        overrides = state.get("overrides") if isinstance(state.get("overrides"), dict) else {}
        cell = SweepCell(
            cell_dir,
            str(state.get("name") or cell_dir.name),
            int(state.get("index", 10**9)),
            str(state.get("status", "pending")),
            overrides,
            state.get("error"),
            problems=problems,
        )
        cell.run_dir = _find_run_dir(cell_dir, state)
        if cell.run_dir is not None:
            cell.summary = _read_summary(cell.run_dir / "summary.csv", problems)
        for attr, fname, reader in (
            ("attention", "analysis/attention.csv", read_attention_csv),
            ("accumulation", "analysis/accumulation.csv", read_accumulation_csv),
            ("gates", "analysis/sca_gates.csv", read_sca_gates),
            ("training", "train/metrics.csv", _read_metrics),
        ):
            path = cell_dir / fname
            if path.is_file():
                try:
                    setattr(cell, attr, reader(path))
                except (OSError, ValueError) as exc:
                    problems.append(str(exc))
        cells.append(cell)
    return sorted(cells, key=lambda c: (c.index, c.name))


def finished_cells(cells: list[SweepCell]) -> list[SweepCell]:
    """The cells with a non-empty summary (those that can appear in the tables)."""
    return [c for c in cells if c.summary is not None and not c.summary.empty]


def per_image_table(cell: SweepCell, dataset: str) -> pd.DataFrame | None:
    """The cell's per-image metric table of ``dataset`` (bench layout ``metrics/<dataset>.csv``), or None."""
    from harness.bench.layout import per_image_path, read_per_image

    for fmt in ("csv", "parquet"):
        path = per_image_path(cell.run_dir, dataset, fmt) if cell.run_dir is not None else None
        if path is not None and path.is_file():
            try:
                return read_per_image(path)
            except (OSError, ValueError, ImportError) as exc:
                cell.problems.append(f"{path}: unreadable ({exc})")
    return None
