"""Training logs and gradient accumulation: metrics.csv appended (not rewritten) and cut back on resume,
Weights & Biases (a fake module for what is logged, the real one offline), and ``grad_accum`` giving the same
gradients as one larger batch (the generic loop, the AlignVAR task, and across DDP ranks)."""

from __future__ import annotations

import csv
import importlib.machinery
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from harness.training import metrics_log
from harness.training.loop import LoopConfig, train_loop
from harness.training.metrics_log import MetricsCSV, WandbConfig
from harness.training.optim import OptimConfig

LOOP = dict(progress=False, tensorboard=False, device="cpu")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------------------------ metrics.csv
def test_metrics_csv_is_appended_line_by_line_and_widened_once(tmp_path, monkeypatch):
    rewrites = []
    real = metrics_log.atomic_open
    monkeypatch.setattr(metrics_log, "atomic_open", lambda *a, **k: rewrites.append(a[0]) or real(*a, **k))
    log = MetricsCSV(tmp_path / "metrics.csv", resume_step=0)
    log.log({"step": 1, "loss": 0.5})
    inode = (tmp_path / "metrics.csv").stat().st_ino
    for step in range(2, 101):
        log.log({"step": step, "loss": 1 / step})
    assert (tmp_path / "metrics.csv").stat().st_ino == inode  # the same file, appended to: never replaced
    assert len(rewrites) == 1  # the header, once
    log.log({"step": 101, "loss": 0.25, "hcc_share": 0.75})  # a new column: the file is rewritten once, wider
    log.log({"step": 102, "loss": 0.125})
    log.close()
    assert len(rewrites) == 2
    text = (tmp_path / "metrics.csv").read_text()
    lines = text.splitlines()
    assert lines[0] == "step,loss,hcc_share" and text.endswith("\n")
    assert lines[1] == "1,0.5," and lines[100] == "100,0.01," and lines[101:] == ["101,0.25,0.75", "102,0.125,"]


def test_metrics_csv_resume_cuts_rows_after_the_step_and_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,loss\n5,0.5\n10,0.4\n15,0.3\n20,0.2\n2")  # killed while writing the row of step 25
    log = MetricsCSV(path, resume_step=10)
    assert path.read_text() == "step,loss\n5,0.5\n10,0.4\n"  # the rows after the checkpoint's step are cut
    log.log({"step": 15, "loss": 0.29})
    log.close()
    assert path.read_text() == "step,loss\n5,0.5\n10,0.4\n15,0.29\n"
    path.write_text("step,loss\n5,0.5\n10,0.4")  # torn row of the very step resumed from
    MetricsCSV(path, resume_step=10).close()
    assert path.read_text() == "step,loss\n5,0.5\n"
    MetricsCSV(path, resume_step=0).close()  # a run trained afresh starts a new file
    assert not path.exists()


class SplitTask:
    """Fit y = x @ w with a 2-layer MLP (no dropout). A step's global batch is ``rows`` fixed rows, split evenly
    over the (rank, world_size) the loop asks for, so every split of a step covers the same samples."""

    def __init__(self, rows: int = 8) -> None:
        torch.manual_seed(0)
        self.module = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 1))
        self.rows = rows
        self.calls: list[tuple[int, int, int]] = []

    def setup(self, device):
        self.device = device

    def make_batch(self, step, rank, world_size, device):
        self.calls.append((step, rank, world_size))
        g = torch.Generator().manual_seed(step)
        x = torch.randn(self.rows, 8, generator=g)
        y = x @ torch.linspace(-1, 1, 8)[:, None] + 0.3 * torch.randn(self.rows, 1, generator=g)
        n = self.rows // world_size
        return x[rank * n : (rank + 1) * n].to(device), y[rank * n : (rank + 1) * n].to(device)

    def compute_loss(self, module, batch):
        x, y = batch
        loss = torch.nn.functional.mse_loss(module(x), y)
        return loss, {"mse": loss.detach()}

    def images_in(self, batch):
        return batch[0].shape[0]


def test_resumed_run_continues_the_same_curve_in_metrics_csv(tmp_path):
    optim = OptimConfig(lr=3e-2, warmup_steps=2)
    loop = dict(steps=30, log_every=5, checkpoint_every=10, **LOOP)
    train_loop(SplitTask(), LoopConfig(**loop), optim, tmp_path / "full", seed=1)
    train_loop(SplitTask(), LoopConfig(**loop), optim, tmp_path / "cut", seed=1, stop_after=20)
    with open(tmp_path / "cut" / "metrics.csv", "a") as fh:  # a crash after the step-20 checkpoint: rows of
        fh.write("25,0.001,9.9,1.0,1.0,9.9\n3")  # steps it will train again, and a torn last line
    train_loop(SplitTask(), LoopConfig(**loop), optim, tmp_path / "cut", seed=1)
    full, cut = _rows(tmp_path / "full" / "metrics.csv"), _rows(tmp_path / "cut" / "metrics.csv")
    assert [r["step"] for r in cut] == ["5", "10", "15", "20", "25", "30"]  # continuous, no duplicate step
    for a, b in zip(full, cut):
        assert (a["step"], a["lr"], a["loss"], a["grad_norm"], a["mse"]) == (
            b["step"], b["lr"], b["loss"], b["grad_norm"], b["mse"]
        )  # fmt: skip


def test_tensorboard_drops_the_events_after_the_resumed_step(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    optim = OptimConfig(lr=1e-2)
    loop = dict(steps=12, log_every=2, checkpoint_every=4, progress=False, device="cpu", tensorboard=True)
    train_loop(SplitTask(), LoopConfig(**loop), optim, tmp_path, seed=0, stop_after=10)
    (tmp_path / "checkpoints" / "latest").write_text("step_00000008\n")  # a crash after the step-8 checkpoint
    import shutil

    shutil.rmtree(tmp_path / "checkpoints" / "step_00000010")
    train_loop(SplitTask(), LoopConfig(**loop), optim, tmp_path, seed=0)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    steps = [e.step for e in events.Scalars("loss")]
    assert steps == [2, 4, 6, 8, 10, 12]  # steps 10 of the first invocation purged, not duplicated
    csv_loss = {int(r["step"]): float(r["loss"]) for r in _rows(tmp_path / "metrics.csv")}
    assert [e.value for e in events.Scalars("loss")] == pytest.approx([csv_loss[s] for s in steps], rel=1e-6)


# ----------------------------------------------------------------------------------------------------- W&B
class FakeWandb(types.ModuleType):
    """The part of the wandb API the tracker uses, recording every call."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.__spec__ = importlib.machinery.ModuleSpec("wandb", None)  # "installed" for importlib.util.find_spec
        self.inits: list[dict] = []
        self.logged: list[tuple[dict, int]] = []
        self.finished = 0

    def init(self, **kwargs):
        self.inits.append(kwargs)
        fake = self

        class Run:
            def log(self, data, step):
                fake.logged.append((dict(data), step))

            def finish(self):
                fake.finished += 1

        return Run()


def test_wandb_logs_the_csv_rows_the_config_and_the_commit_and_resumes_its_run(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setattr("harness.training.loop._git", lambda: {"commit": "0123abcd", "dirty": False})
    wandb_cfg = WandbConfig(project="alignvar-tests", group="g", tags=["t1"], mode="offline")
    loop = dict(steps=6, log_every=2, checkpoint_every=4, logger="wandb", wandb=wandb_cfg, **LOOP)
    experiment = {"name": "exp1", "seed": 0, "train": {"type": "toy"}}
    train_loop(SplitTask(), LoopConfig(**loop), OptimConfig(lr=1e-2), tmp_path, stop_after=4, run_config=experiment)
    train_loop(SplitTask(), LoopConfig(**loop), OptimConfig(lr=1e-2), tmp_path, run_config=experiment)

    first, second = fake.inits  # the resumed invocation continues the W&B run of the first
    assert first["id"] == second["id"] and first["resume"] == second["resume"] == "allow"
    assert json.loads((tmp_path / "wandb.json").read_text()) == {"id": first["id"], "project": "alignvar-tests",
                                                                 "entity": None}  # fmt: skip
    assert (first["project"], first["group"], first["tags"], first["mode"], first["name"]) == (
        "alignvar-tests", "g", ["t1"], "offline", "exp1"
    )  # fmt: skip
    assert first["dir"] == str(tmp_path)  # its files stay in the train folder
    assert first["config"]["experiment"] == experiment and first["config"]["git"]["commit"] == "0123abcd"
    assert first["config"]["loop"]["steps"] == 6 and first["config"]["optim"]["lr"] == 1e-2
    rows = _rows(tmp_path / "metrics.csv")
    assert [step for _, step in fake.logged] == [2, 4, 6]
    for (data, _), row in zip(fake.logged, rows):
        assert {k: f"{v}" for k, v in data.items()} == {k: v for k, v in row.items() if k != "step"}
    assert fake.finished == 2


def test_wandb_offline_run_is_written_with_config_commit_and_scalars(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb", reason="the optional extra alignvar-bench[wandb] is not installed")
    for key, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb_dir"), "WANDB_SILENT": "true",
                       "WANDB_CONFIG_DIR": str(tmp_path / "wandb_config"), "WANDB_CACHE_DIR": str(tmp_path / "wc"),
                       "WANDB_DATA_DIR": str(tmp_path / "wd")}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    (tmp_path / "wandb_dir").mkdir()
    monkeypatch.setattr("harness.training.loop._git", lambda: {"commit": "feedc0ffee42", "dirty": True})
    loop = LoopConfig(steps=4, log_every=2, checkpoint_every=4, logger="wandb", **LOOP)
    train_loop(SplitTask(), loop, OptimConfig(lr=1e-2), tmp_path / "train", run_config={"name": "wandb_probe"})
    wandb.teardown()  # the wandb service writes the offline run asynchronously: wait for it
    run_id = json.loads((tmp_path / "train" / "wandb.json").read_text())["id"]
    (record,) = (tmp_path / "wandb_dir" / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    data = record.read_bytes()  # the offline run's records: protobuf, strings as they are
    last = _rows(tmp_path / "train" / "metrics.csv")[-1]
    for needle in ("feedc0ffee42", "wandb_probe", "grad_norm", last["loss"]):
        assert needle.encode() in data, needle


def test_wandb_that_cannot_start_is_a_config_error_saying_how_to_go_on(tmp_path, monkeypatch):
    from harness.core.mapping import ConfigError

    fake = FakeWandb()

    def refuse(**kwargs):
        raise RuntimeError("api_key not configured (no-tty)")

    fake.init = refuse
    monkeypatch.setitem(sys.modules, "wandb", fake)
    loop = LoopConfig(steps=2, logger="wandb", **LOOP)
    with pytest.raises(
        ConfigError, match=r"cannot start a W&B run \(RuntimeError: api_key not configured \(no-tty\)\); run"
    ):
        train_loop(SplitTask(), loop, OptimConfig(lr=1e-2), tmp_path)
    assert not (tmp_path / "checkpoints").exists()  # nothing trained


def test_wandb_missing_is_a_config_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # what importlib.util.find_spec reports as not installed
    with pytest.raises(ValueError, match=r"logger: wandb needs the wandb package, which is not installed: pip inst"):
        LoopConfig(logger="wandb")


# ------------------------------------------------------------------------------------------- gradient accumulation
def _grads(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in module.parameters()]


@pytest.mark.parametrize("accum", [2, 4])
def test_grad_accum_equals_one_larger_batch(tmp_path, accum):
    """The gradients of a step (left in .grad, unclipped: grad_clip above the norm) and the parameters after it
    equal those of the whole batch in one micro-batch, up to float rounding; the logged loss is the batch mean."""
    optim = OptimConfig(lr=1e-2, grad_clip=1e6)  # grad_norm logged, nothing clipped
    runs = {}
    for a in (1, accum):
        task = SplitTask(rows=8)
        train_loop(task, LoopConfig(steps=1, grad_accum=a, log_every=1, **LOOP), optim, tmp_path / f"a{a}")
        runs[a] = task
    assert runs[accum].calls == [(0, m, accum) for m in range(accum)]  # virtual ranks of a world of `accum`
    for g1, ga in zip(_grads(runs[1].module), _grads(runs[accum].module)):
        torch.testing.assert_close(ga, g1, rtol=1e-5, atol=1e-7)  # summed, not accum x the mean
    for p1, pa in zip(runs[1].module.parameters(), runs[accum].module.parameters()):
        torch.testing.assert_close(pa, p1, rtol=1e-5, atol=1e-7)
    one, many = _rows(tmp_path / "a1" / "metrics.csv")[0], _rows(tmp_path / f"a{accum}" / "metrics.csv")[0]
    for key in ("loss", "mse", "grad_norm"):
        assert float(many[key]) == pytest.approx(float(one[key]), rel=1e-5), key


def test_grad_accum_config_and_identity(tmp_path):
    from harness.training.stage import _without

    with pytest.raises(ValueError, match=r"grad_accum must be >= 1 \(micro-batches per optimiser step\), got 0"):
        LoopConfig(grad_accum=0)
    # 1 (no accumulation) is left out of a train run's identity, so runs made before the key existed resume
    assert _without({"loop": {"steps": 5, "grad_accum": 1}}, ()) == {"loop": {"steps": 5}}
    assert _without({"loop": {"steps": 5, "grad_accum": 2}}, ()) == {"loop": {"steps": 5, "grad_accum": 2}}


def test_alignvar_task_grad_accum_equals_the_larger_batch(tmp_path):
    """The real task (tiny model, bundled crops, CE + HCC with per-scale means, SCA): 2 micro-batches of 2 give
    the gradients of one batch of 4 (the same images: the virtual ranks' shards interleave the epoch order)."""
    from harness.data.training.config import DegradationSpec, SourceConfig, TrainDataConfig
    from harness.training.alignvar import AlignVARTask, AlignVARTrainConfig
    from tests.tiny_models import make_tiny

    grads = {}
    for batch_size, accum in ((4, 1), (2, 2)):
        data = TrainDataConfig(sources=[SourceConfig(bundled=True)], crop_size=32, batch_size=batch_size,
                               degradation=DegradationSpec(name="bicubic"))  # fmt: skip
        loop = LoopConfig(steps=1, grad_accum=accum, log_every=1, **LOOP)
        cfg = AlignVARTrainConfig(data=data, loop=loop, negative_fraction=0.0)
        model = make_tiny("laplacian", refiner_weight=0.0).train()
        task = AlignVARTask(model, cfg, seed=0)
        train_loop(task, loop, OptimConfig(lr=1e-3, grad_clip=1e6), tmp_path / f"b{batch_size}", seed=0)
        grads[accum] = {n: p.grad.clone() for n, p in task.module.named_parameters() if p.grad is not None}
        rows = _rows(tmp_path / f"b{batch_size}" / "metrics.csv")
        grads[accum]["loss"] = torch.tensor(float(rows[0]["loss"]))
    assert grads[1].keys() == grads[2].keys() and len(grads[1]) > 10
    for name, g in grads[1].items():
        torch.testing.assert_close(grads[2][name], g, rtol=1e-4, atol=1e-6, msg=name)


DDP_ACCUM = r"""
import os, sys, torch
sys.path.insert(0, sys.argv[2])
from test_training_logs import SplitTask, LOOP
from harness.training.loop import LoopConfig, train_loop
from harness.training.optim import OptimConfig
task = SplitTask(rows=8)
accum = int(sys.argv[3])
train_loop(task, LoopConfig(steps=2, grad_accum=accum, log_every=1, **LOOP), OptimConfig(lr=1e-2, grad_clip=1e6),
           sys.argv[1], seed=0)
if os.environ.get("RANK", "0") == "0":
    torch.save({"grads": [p.grad for p in task.module.parameters()], "params": list(task.module.parameters()),
                "calls": task.calls}, os.path.join(sys.argv[1], "out.pt"))
"""


def test_grad_accum_under_torchrun_equals_one_process(tmp_path):
    """2 DDP ranks x 2 micro-batches (no_sync on the first) = 1 process x 4 micro-batches: the same batches
    (virtual ranks) and gradients."""
    script = tmp_path / "accum.py"
    script.write_text(DDP_ACCUM)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    here = str(Path(__file__).parent)
    subprocess.run([sys.executable, str(script), str(tmp_path / "one"), here, "4"], check=True, env=env, timeout=120)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script),
         str(tmp_path / "ddp"), here, "2"],
        env=env, timeout=240, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = torch.load(tmp_path / "one" / "out.pt", weights_only=True)
    ddp = torch.load(tmp_path / "ddp" / "out.pt", weights_only=True)
    assert one["calls"] == [(s, m, 4) for s in range(2) for m in range(4)]
    assert ddp["calls"] == [(s, m, 4) for s in range(2) for m in range(2)]  # rank 0: virtual ranks 0 and 1
    for a, b in zip(one["grads"], ddp["grads"]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
    for a, b in zip(one["params"], ddp["params"]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
