"""Scale-out backends. ``submitit``: one job per cell (a Slurm job array with ``submitit.AutoExecutor``; the
``local`` and ``debug`` clusters run the same code on this machine).

``sweep.backend_options`` pass through to ``AutoExecutor.update_parameters``. Generic names (``timeout_min``,
``mem_gb``, ``gpus_per_node``, ``cpus_per_task``, ``nodes``, ``tasks_per_node``, ``name``, ...) are used as
is; ``partition`` -> ``slurm_partition``; other names are taken as Slurm options (``array_parallelism`` or
``slurm_array_parallelism``, ``qos`` -> ``slurm_qos``, ``constraint``, ``account``,
``additional_parameters``...). Options of this backend itself: ``cluster`` (slurm | local | debug; default:
detected), ``folder`` (submitit's logs; default ``runs/<sweep>/submitit``) and ``poll_interval_s`` (default
5).

Each job runs ``harness.sweep.execute.execute_cell``, so locking, state and logs are as with the local
backend; Slurm pins the GPUs. A job lost to the scheduler (time limit, node failure) is recorded as a failed
cell.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.core.mapping import ConfigError
from harness.sweep.execute import Outcome, cell_fn_path, mark_failed_if_unfinished
from harness.sweep.scheduler import CellJob, RunOptions

_ALIASES = {"partition": "slurm_partition"}
_OWN_OPTIONS = ("cluster", "folder", "poll_interval_s")


def run_cell_job(cell_dir: str, fn_path: str, sys_path: list[str], force: bool, force_failed: bool) -> dict:
    """The function a submitit job runs (module-level, so it is pickled by reference)."""
    import json

    from harness.sweep.cache import CELL_FILE
    from harness.sweep.execute import execute_cell, extend_sys_path, resolve_cell_fn
    from harness.sweep.expand import Cell

    extend_sys_path(sys_path)
    cell = Cell.from_json(json.loads((Path(cell_dir) / CELL_FILE).read_text(encoding="utf-8")))
    outcome = execute_cell(cell, cell_dir, resolve_cell_fn(fn_path), force=force, force_failed=force_failed)
    return outcome.to_json()


def submitit_parameters(options: dict[str, Any], generic: set[str]) -> dict[str, Any]:
    """Map ``sweep.backend_options`` (minus this backend's own options) to AutoExecutor parameter names."""
    params: dict[str, Any] = {}
    for key, value in options.items():
        if key in _OWN_OPTIONS:
            continue
        if key in _ALIASES:
            key = _ALIASES[key]
        elif key not in generic and not key.startswith(("slurm_", "local_", "debug_")):
            key = f"slurm_{key}"
        params[key] = value
    return params


class SubmititBackend:
    """Submits every cell as a submitit job and yields Outcomes as jobs finish."""

    def __init__(self, options: dict[str, Any], sweep_dir: Path, sweep_name: str, source: str = "<config>"):
        import submitit

        options = dict(options)
        where = f"{source}: sweep.backend_options"
        self.cluster = options.get("cluster")
        self.folder = Path(options.get("folder") or Path(sweep_dir) / "submitit")
        try:
            self.poll_interval_s = float(options.get("poll_interval_s", 5.0))
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}.poll_interval_s: expected a number, got {options['poll_interval_s']!r}"
            ) from None
        generic = set(submitit.AutoExecutor._typed_parameters())
        params = {"name": f"sweep-{sweep_name}", **submitit_parameters(options, generic)}
        try:
            self.executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
            self.executor.update_parameters(**params)
        except (NameError, AssertionError, ValueError, RuntimeError, TypeError) as exc:
            raise ConfigError(f"{where}: {str(exc).splitlines()[0]}") from None
        self.cluster = self.executor.cluster

    def describe(self) -> str:
        return f"submitit ({self.cluster} cluster; job logs in {self.folder})"

    def run(self, jobs: list[CellJob], opts: RunOptions) -> Iterator[Outcome]:
        from submitit.helpers import as_completed

        if not jobs:
            return
        fn_path = cell_fn_path(opts.cell_fn)
        sys_path = [p for p in sys.path if p]
        with self.executor.batch():
            submitted = [
                self.executor.submit(run_cell_job, str(job.cell_dir), fn_path, sys_path, opts.force, opts.force_failed)
                for job in jobs
            ]
        by_id = {id(sub): job for sub, job in zip(submitted, jobs)}
        for sub in as_completed(submitted, poll_frequency=self.poll_interval_s):
            job = by_id[id(sub)]
            try:
                yield Outcome(**sub.result())
            except Exception as exc:  # noqa: BLE001 - the job itself was lost, not the cell's code
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                error = f"submitit job {sub.job_id} failed: {first}"
                mark_failed_if_unfinished(job.cell, job.cell_dir, error, detail=str(exc))
                yield Outcome(job.cell.dir_name, "failed", error=error)


def make_backend(
    name: str,
    *,
    options: dict[str, Any],
    sweep_dir: Path,
    sweep_name: str,
    workers: int,
    isolation: str,
    gpus: list[str] | None,
    source: str = "<config>",
):
    """The backend object for ``sweep.backend`` (local | submitit)."""
    if name == "local":
        from harness.sweep.scheduler import LocalScheduler, local_slots

        unknown = sorted(options)
        if unknown:
            raise ConfigError(
                f"{source}: sweep.backend_options.{unknown[0]}: the local backend takes no options "
                "(use sweep.workers; GPUs come from CUDA_VISIBLE_DEVICES)"
            )
        return LocalScheduler(local_slots(workers, gpus), isolation=isolation)
    if name == "submitit":
        return SubmititBackend(options, sweep_dir, sweep_name, source)
    raise ConfigError(f"{source}: sweep.backend: unknown backend {name!r}; valid choices: local, submitit")
