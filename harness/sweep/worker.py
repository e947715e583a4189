"""``python -m harness.sweep.worker CELL_DIR --cell-fn module:function``: run one sweep cell in this process.

Started by ``harness.sweep.scheduler`` with the cell's GPU already pinned in the environment and stdout/stderr
going to the cell's ``log.txt``. Reads the cell from ``CELL_DIR/cell.json``. Exits with a code the scheduler
reads (see ``scheduler.EXIT_*``). A watchdog ends this process if the sweep process that started it dies, so
killing the sweep stops its cells (their state stays 'running' with no lock holder, and they re-run on
restart).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _watch_parent(interval: float = 0.25) -> None:
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                log.warning("worker: the sweep process died; stopping this cell (it will re-run)")
                os._exit(137)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    from harness.sweep import scheduler as sch

    parser = argparse.ArgumentParser(prog="python -m harness.sweep.worker", description=__doc__)
    parser.add_argument("cell_dir", type=Path)
    parser.add_argument("--cell-fn", required=True, help="module:function")
    parser.add_argument("--sys-path", default="[]", help="JSON list of import paths of the sweep process")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--force-failed", action="store_true")
    parser.add_argument("--no-watchdog", action="store_true")
    args = parser.parse_args(argv)
    if not args.no_watchdog:
        _watch_parent()
    from harness.core.logconfig import VERBOSITY_ENV, set_levels, verbosity

    if VERBOSITY_ENV in os.environ:  # the sweep command's -v / -q (the cell's log.txt has its own handler)
        set_levels(verbosity())

    from harness.sweep.cache import CELL_FILE
    from harness.sweep.execute import execute_cell, extend_sys_path, resolve_cell_fn
    from harness.sweep.expand import Cell

    extend_sys_path(json.loads(args.sys_path))
    try:
        cell = Cell.from_json(json.loads((args.cell_dir / CELL_FILE).read_text(encoding="utf-8")))
        fn = resolve_cell_fn(args.cell_fn)
    except (OSError, ValueError, KeyError) as exc:
        log.error("worker: cannot start cell %s: %s", args.cell_dir, exc)
        return sch.EXIT_USAGE
    outcome = execute_cell(cell, args.cell_dir, fn, force=args.force, force_failed=args.force_failed)
    if outcome.status == "busy":
        return sch.EXIT_BUSY
    if outcome.skipped:
        return sch.EXIT_SKIPPED_DONE if outcome.status == "done" else sch.EXIT_SKIPPED_FAILED
    return sch.EXIT_DONE if outcome.status == "done" else sch.EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
