"""Where the scalars of a training run go: ``metrics.csv`` (always), TensorBoard and Weights & Biases.

``metrics.csv`` gets one whole line per logged step, appended, flushed and fsynced: its cost does not grow
with the run, and a crash leaves at most a partial last line. On resume the rows after the resumed step (and a
partial last line) are cut off, so the curve continues without duplicate steps. A row with a column the file
has not seen yet rewrites it once, atomically, with the wider header (a column appearing mid-run is rare).

TensorBoard (``tensorboard/``, when the package is installed) drops the events after the resumed step
(``purge_step``). Weights & Biases (``logger: wandb``, the optional extra ``alignvar-bench[wandb]``) logs the
same rows, with the experiment config and the git commit as the run's config; its files go to ``wandb/`` in
the train folder (unless ``WANDB_DIR`` is set), and a resumed run continues the W&B run whose id
``wandb.json`` holds. ``WANDB_MODE=offline`` (or ``wandb.mode: offline``) logs without a network.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from harness.core.atomic import atomic_open, write_json

WANDB_RUN_FILE = "wandb.json"  # {"id", "project", "entity"} of the train folder's W&B run


@dataclass
class WandbConfig:
    """The W&B run of a training run (``train.loop.wandb``; used with ``train.loop.logger: wandb``)."""

    project: str = "alignvar-bench"
    entity: str | None = None  # team or user (default: wandb's)
    group: str | None = None  # e.g. the sweep's name, to see its cells together
    tags: list[str] = field(default_factory=list)
    mode: Literal["online", "offline", "disabled"] | None = None  # None: WANDB_MODE, else online


class Tracker(Protocol):
    def log(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _csv_line(values: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


class MetricsCSV:
    """``metrics.csv``: appended a whole line per logged step (see the module docstring)."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = Path(path)
        self.columns: list[str] = []
        self._fh: io.TextIOWrapper | None = None
        self._cut(resume_step)

    def _cut(self, resume_step: int) -> None:
        """Keep the header and the complete rows up to ``resume_step`` (a fresh run keeps nothing)."""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        lines = data.splitlines(keepends=True)
        header = next(csv.reader([lines[0].decode("utf-8")]), []) if lines and lines[0].endswith(b"\n") else []
        if resume_step <= 0 or not header or header[0] != "step":
            self.path.unlink()
            return
        keep = len(lines[0])
        for line in lines[1:]:
            first = line.split(b",", 1)[0]
            if not line.endswith(b"\n") or not first.isdigit() or int(first) > resume_step:
                break
            keep += len(line)
        if keep < len(data):
            os.truncate(self.path, keep)
        self.columns = header

    def _rewrite(self, columns: list[str]) -> None:
        """The file with header ``columns`` and every row so far (atomically): when a new column appears."""
        rows = []
        if self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        with atomic_open(self.path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        self.columns = columns

    def log(self, row: dict[str, Any]) -> None:
        new = [k for k in row if k not in self.columns]
        if new or not self.path.is_file():
            self.close()
            self._rewrite([*self.columns, *new])
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - kept open for the run
        self._fh.write(_csv_line([row.get(k, "") for k in self.columns]))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class TensorBoardTracker:
    """Scalars to ``<train_dir>/tensorboard`` (events after ``resume_step`` purged on resume)."""

    def __init__(self, train_dir: Path, resume_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        purge = resume_step + 1 if resume_step > 0 else None
        self.writer = SummaryWriter(str(Path(train_dir) / "tensorboard"), purge_step=purge)

    def log(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, row["step"])

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """The same rows to a Weights & Biases run (see the module docstring)."""

    def __init__(self, train_dir: Path, cfg: WandbConfig, config: dict[str, Any], resume_step: int) -> None:
        try:
            import wandb
        except ImportError:
            raise RuntimeError(
                "train.loop.logger: wandb needs the wandb package: pip install 'alignvar-bench[wandb]' (or wandb)"
            ) from None
        train_dir = Path(train_dir)
        id_file = train_dir / WANDB_RUN_FILE
        run_id = None
        if resume_step > 0 and id_file.is_file():
            with contextlib.suppress(OSError, ValueError, AttributeError):
                run_id = json.loads(id_file.read_text(encoding="utf-8")).get("id")
        kwargs: dict[str, Any] = {
            "project": cfg.project,
            "entity": cfg.entity,
            "group": cfg.group,
            "tags": list(cfg.tags) or None,
            "name": config.get("experiment", {}).get("name"),
            "job_type": "train",
            "config": config,
            "id": run_id or secrets.token_hex(6),  # W&B run ids: letters and digits
            "resume": "allow",
        }
        if cfg.mode is not None:
            kwargs["mode"] = cfg.mode
        if not os.environ.get("WANDB_DIR"):
            kwargs["dir"] = str(train_dir)  # its files stay in the run folder (train/wandb/)
        try:
            self.run = wandb.init(**kwargs)
        except Exception as exc:  # noqa: BLE001 - no login, no network, a bad entity: say how to go on
            from harness.core.mapping import ConfigError

            raise ConfigError(
                f"train.loop.logger: wandb: cannot start a W&B run ({type(exc).__name__}: {exc}); run `wandb "
                f"login` or set WANDB_API_KEY, or log without a network (WANDB_MODE=offline, train.loop.wandb.mode="
                f"offline; `wandb sync` uploads later), or set train.loop.logger=none"
            ) from None
        write_json(id_file, {"id": kwargs["id"], "project": cfg.project, "entity": cfg.entity})

    def log(self, row: dict[str, Any]) -> None:
        scalars = {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))}
        self.run.log(scalars, step=int(row["step"]))

    def close(self) -> None:
        self.run.finish()


class MetricsLog:
    """Every logged row to ``metrics.csv`` and the trackers the loop config asks for."""

    def __init__(self, train_dir: Path, resume_step: int, trackers: list[Tracker]) -> None:
        self.csv = MetricsCSV(Path(train_dir) / "metrics.csv", resume_step)
        self.trackers = trackers

    @classmethod
    def open(
        cls,
        train_dir: Path,
        resume_step: int,
        *,
        tensorboard: bool,
        logger: str,
        wandb: WandbConfig | None = None,
        config: dict[str, Any] | None = None,
    ) -> MetricsLog:
        """The log of a run: TensorBoard when asked for and installed; W&B with ``logger == "wandb"``."""
        trackers: list[Tracker] = []
        if tensorboard:
            with contextlib.suppress(ImportError):
                trackers.append(TensorBoardTracker(train_dir, resume_step))
        if logger == "wandb":
            try:
                trackers.append(WandbTracker(train_dir, wandb or WandbConfig(), config or {}, resume_step))
            except BaseException:
                for tracker in trackers:
                    tracker.close()
                raise
        return cls(train_dir, resume_step, trackers)

    def log(self, row: dict[str, Any]) -> None:
        self.csv.log(row)
        for tracker in self.trackers:
            tracker.log(row)

    def close(self) -> None:
        self.csv.close()
        for tracker in self.trackers:
            tracker.close()
