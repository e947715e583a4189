"""The generic training loop: loss decreases, exact resume, non-finite stop, schedule, DDP gradient equivalence."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.training.checkpointing import latest_checkpoint
from harness.training.loop import LoopConfig, TrainingDiverged, train_loop
from harness.training.optim import OptimConfig, lr_at, no_weight_decay


class RegressionTask:
    """Fit y = x @ w_true + noise with a 2-layer MLP; batches are a pure function of the step."""

    def __init__(self, poison_step: int | None = None) -> None:
        torch.manual_seed(0)
        self.module = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Dropout(0.1), torch.nn.Linear(16, 1)
        )
        self.w_true = torch.linspace(-1, 1, 8)[:, None]
        self.poison_step = poison_step

    def setup(self, device):
        self.device = device

    def make_batch(self, step, rank, world_size, device):
        g = torch.Generator().manual_seed(1000 * step + rank)
        x = torch.randn(16, 8, generator=g)
        return x.to(device), (x @ self.w_true).to(device), step

    def compute_loss(self, module, batch):
        x, y, step = batch
        loss = torch.nn.functional.mse_loss(module(x), y)
        if step == self.poison_step:
            loss = loss * float("nan")
        return loss, {"mse": loss.detach()}

    def images_in(self, batch):
        return batch[0].shape[0]


LOOP = dict(log_every=5, progress=False, tensorboard=False, device="cpu")


def test_loss_decreases_and_resume_is_exact(tmp_path):
    optim = OptimConfig(lr=3e-2, warmup_steps=3, weight_decay=0.01)
    full = train_loop(
        RegressionTask(), LoopConfig(steps=40, checkpoint_every=100, **LOOP), optim, tmp_path / "full", seed=3
    )
    losses = [full.losses[s] for s in range(40)]
    assert sum(losses[-5:]) / 5 < 0.25 * sum(losses[:5]) / 5

    part = train_loop(
        RegressionTask(),
        LoopConfig(steps=40, checkpoint_every=15, **LOOP),
        optim,
        tmp_path / "resumed",
        seed=3,
        stop_after=20,
    )
    assert part.steps_done == 20 and latest_checkpoint(tmp_path / "resumed").step == 20
    rest = train_loop(
        RegressionTask(),
        LoopConfig(steps=40, checkpoint_every=15, **LOOP),
        optim,
        tmp_path / "resumed",
        seed=3,
    )
    assert min(rest.losses) == 20
    for step in range(20, 40):
        assert rest.losses[step] == full.losses[step], step  # bitwise: same curve as the uninterrupted run
    rows = (tmp_path / "resumed" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,lr,loss,images_per_s,grad_norm,mse")
    assert [int(r.split(",")[0]) for r in rows[1:]] == [5, 10, 15, 20, 25, 30, 35, 40]


def test_non_finite_loss_stops_and_names_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged) as err:
        train_loop(
            RegressionTask(poison_step=7),
            LoopConfig(steps=20, checkpoint_every=5, **LOOP),
            OptimConfig(lr=1e-2),
            tmp_path,
            seed=0,
        )
    assert str(err.value) == (
        f"non-finite loss (nan) at step 7; stopping. Last good checkpoint: {tmp_path / 'checkpoints' / 'step_00000005'}"
    )


def test_lr_schedule_closed_form():
    cfg = OptimConfig(lr=1.0, warmup_steps=10, warmup_start_ratio=0.0, min_lr_ratio=0.1)
    assert lr_at(0, 110, cfg) == 0.0
    assert lr_at(5, 110, cfg) == pytest.approx(0.5)
    assert lr_at(10, 110, cfg) == pytest.approx(1.0)
    assert lr_at(60, 110, cfg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(110, 110, cfg) == pytest.approx(0.1)
    assert no_weight_decay("blocks.0.attn.q_bias", torch.zeros(4))
    assert no_weight_decay("pos_start", torch.zeros(1, 4, 4))
    assert not no_weight_decay("blocks.0.ffn.fc1.weight", torch.zeros(4, 4))


DDP_SCRIPT = r"""
import os, sys, torch, torch.distributed as dist
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 2))
g = torch.Generator().manual_seed(1)
x = torch.randn(8, 6, generator=g); y = torch.randn(8, 2, generator=g)
out = sys.argv[1]
if os.environ.get("WORLD_SIZE"):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    xs, ys = x.chunk(world)[rank], y.chunk(world)[rank]
    torch.nn.functional.mse_loss(ddp(xs), ys).backward()
    if rank == 0:
        torch.save([p.grad for p in model.parameters()], out)
    dist.barrier()  # no rank tears gloo down while its peer still talks to it
    dist.destroy_process_group()
else:
    torch.nn.functional.mse_loss(model(x), y).backward()
    torch.save([p.grad for p in model.parameters()], out)
"""


def test_ddp_two_gloo_processes_match_single_process_gradients(tmp_path):
    script = tmp_path / "ddp_step.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), str(tmp_path / "single.pt")], check=True, env=env, timeout=120)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            str(script),
            str(tmp_path / "ddp.pt"),
        ],
        env=env,
        timeout=180,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = torch.load(tmp_path / "single.pt", weights_only=True)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    for a, b in zip(single, ddp):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_train_loop_runs_under_torchrun(tmp_path):
    """The real loop under torchrun (2 gloo CPU processes) runs on both ranks; rank 0 checkpoints and logs."""
    script = tmp_path / "loop_ddp.py"
    script.write_text(
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_training_loop import RegressionTask, LOOP\n"
        "from harness.training.loop import LoopConfig, train_loop\n"
        "from harness.training.optim import OptimConfig\n"
        "r = train_loop(RegressionTask(), LoopConfig(steps=6, checkpoint_every=3, **LOOP), OptimConfig(lr=1e-2),"
        " sys.argv[1], seed=0)\n"
        "import os, pathlib; pathlib.Path(sys.argv[1], 'done_' + os.environ['RANK']).write_text(str(r.steps_done))\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            str(script),
            str(tmp_path / "run"),
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=240,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [(tmp_path / "run" / f"done_{r}").read_text() for r in (0, 1)] == ["6", "6"]
    assert latest_checkpoint(tmp_path / "run").step == 6
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == 3  # header + steps 5 and 6


TOKENIZER_DDP_SCRIPT = """
import os, sys
import torch
from harness.data.training.config import TrainDataConfig
from harness.training.loop import LoopConfig, train_loop
from harness.training.optim import OptimConfig
from harness.training.tokenizer import TokenizerTask, TokenizerTrainConfig

cfg = TokenizerTrainConfig(data=TrainDataConfig(crop_size=32, batch_size=2), restart_dead_codes_every=2)
task = TokenizerTask(cfg, seed=0)
train_loop(task, LoopConfig(steps=4, checkpoint_every=4, log_every=2, progress=False, tensorboard=False,
           device="cpu"), OptimConfig(lr=1e-3), sys.argv[1], seed=0)
q = task.module.model.quantize  # LossModule(vae, loss)
torch.save([q.embedding.weight.detach(), q.ema_vocab_hit_SV.clone()],
           os.path.join(sys.argv[1], "codebook_" + os.environ["RANK"] + ".pt"))
"""


def test_tokenizer_trains_under_torchrun_with_dead_code_restarts_and_identical_replicas(tmp_path):
    """Two gloo ranks: DDP tolerates the unused phi convs (find_unused_parameters), the code-usage statistics are
    averaged over the ranks, and after dead-code restarts (every 2 steps) both replicas hold the same codebook."""
    script = tmp_path / "tok_ddp.py"
    script.write_text(TOKENIZER_DDP_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script)]
    proc = subprocess.run(
        [*cmd, str(tmp_path / "run")],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (w0, h0), (w1, h1) = (torch.load(tmp_path / "run" / f"codebook_{r}.pt", weights_only=True) for r in (0, 1))
    assert torch.equal(w0, w1) and torch.equal(h0, h1)
    assert h0.sum() > 0  # the usage statistics were updated
