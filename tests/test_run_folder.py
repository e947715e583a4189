"""Fault tests of what a run folder guarantees: one writer (the lock), build-then-swap, resume identity.

Second processes are real processes where that is the point (a holder killed with SIGKILL, a bench killed in
the middle of its run); everything else runs in-process through ``harness.cli.main.main``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.cli.main import main
from harness.core import runfolder
from harness.core.mapping import ConfigError
from harness.core.runlock import RunLock, RunLockedError, is_locked, read_owner

REPO = Path(__file__).resolve().parents[1]


def _png(path: Path, h: int, w: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _experiment(tmp_path: Path, **extra: str) -> Path:
    for i in range(2):
        _png(tmp_path / "data/LR" / f"im{i}.png", 8, 8, i)
        _png(tmp_path / "data/HR" / f"im{i}.png", 32, 32, 10 + i)
    lines = "".join(f"{k}: {v}\n" for k, v in extra.items())
    path = tmp_path / "exp.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        name: exp
        output_root: {tmp_path}/runs
        datasets: [{{type: paired, lr_dir: {tmp_path}/data/LR, hr_dir: {tmp_path}/data/HR}}]
        methods: [bicubic]
        metrics: [psnr_y]
        bench: {{bootstrap_samples: 100, device: cpu}}
        """)
        + lines
    )
    return path


def _with_method(exp: Path, command: list[str], tail: str, name: str, **options) -> Path:
    """A copy of ``exp`` whose one method is the command ``command`` (argv, shell-quoted) + ``tail``."""
    import yaml

    data = yaml.safe_load(exp.read_text())
    data["methods"] = [{"type": "command", "command": f"{shlex.join(command)} {tail}", **options}]
    path = exp.with_name(name)
    path.write_text(yaml.safe_dump(data))
    return path


def _tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in (".lock", ".lock.owner.json")
    }


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE"}


# ----------------------------------------------------------------------------------------------- the lock
def test_lock_is_reentrant_in_a_process_and_names_its_holder(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with RunLock(folder) as outer:
        owner = read_owner(folder)
        assert owner["pid"] == os.getpid() and owner["host"] and owner["started"]
        with RunLock(folder):  # a sweep cell's stages take their cell's lock again
            assert is_locked(folder)
        assert is_locked(folder) and outer.took_over is None
    assert not is_locked(folder) and read_owner(folder) is None


def test_a_second_process_fails_at_once_and_a_dead_holders_lock_is_taken_over(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    code = f"from harness.core.runlock import RunLock\nRunLock({str(folder)!r}).acquire()\nprint('held', flush=True)\n"
    holder = subprocess.Popen(
        [sys.executable, "-c", code + "import time; time.sleep(120)"], stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        with pytest.raises(RunLockedError) as err:
            RunLock(folder, "bench run folder").acquire()
        assert time.monotonic() - start < 1.0  # at once, no waiting
        owner = read_owner(folder)
        assert str(err.value).startswith(
            f"{folder}: this bench run folder is being written by pid {holder.pid} on host {owner['host']}, "
            f"started {owner['started']} ("
        )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert read_owner(folder)["pid"] == holder.pid  # the dead holder's record is left behind ...
    lock = RunLock(folder)
    lock.acquire()  # ... but the OS released its lock: taken over
    try:
        assert lock.took_over["pid"] == holder.pid and read_owner(folder)["pid"] == os.getpid()
    finally:
        lock.release()


def test_two_bench_processes_on_one_run_folder(tmp_path: Path) -> None:
    """The second of two benches with the same name exits 3 naming the first; the first finishes intact."""
    exp = _experiment(tmp_path)
    go = tmp_path / "go"  # the first bench's method waits for it: it is still running when the second starts
    wait = (
        "import sys, time, shutil, pathlib\n"
        f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.05)\n"
        "shutil.copy(sys.argv[1], sys.argv[2])"
    )
    slow = _with_method(exp, [sys.executable, "-c", wait], "{input} {output}", "slow.yaml", scale=1)
    first = subprocess.Popen(
        [sys.executable, "run.py", "bench", str(slow), "datasets.0.hr_dir=" + str(tmp_path / "data/LR"),
         "datasets.0.scale=1", "--no-progress"],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_dir = tmp_path / "runs/exp"
    try:
        for _ in range(2400):  # until the first one holds the lock
            if (run_dir / ".lock.owner.json").is_file() or first.poll() is not None:
                break
            time.sleep(0.05)
        second = subprocess.run(
            [sys.executable, "run.py", "bench", str(exp), "--no-progress"], cwd=REPO, env=_env(),
            capture_output=True, text=True,
        )  # fmt: skip
    finally:
        go.touch()
        out, err = first.communicate(timeout=300)
    assert second.returncode == 3, second.stderr
    assert f"error: {run_dir}: this bench run folder is being written by pid {first.pid} on host" in second.stderr
    assert first.returncode == 0, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert list(summary["methods"]) == ["command"] and summary["status"] == "ok"


# ----------------------------------------------------------------------------------------------- the swap
def test_a_failing_force_leaves_the_finished_run_as_it_was(tmp_path: Path, monkeypatch, capsys) -> None:
    exp = _experiment(tmp_path)
    run_dir = tmp_path / "runs/exp"
    assert main(["bench", str(exp), "--no-progress"]) == 0
    before = _tree(run_dir)
    from harness.bench import layout

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(run_dir / "summary.csv"))

    monkeypatch.setattr(layout, "write_summary", disk_full)  # the disk fills up at the very end of the new run
    capsys.readouterr()
    assert main(["bench", str(exp), "--force", "--no-progress", "bench.batch_size=2"]) == 4
    assert capsys.readouterr().err.strip() == f"error: {run_dir / 'summary.csv'}: No space left on device"
    assert _tree(run_dir) == before  # the old run, byte for byte, and no staging folder left
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".staging-")] == []


def test_a_bench_killed_mid_run_leaves_the_old_run_and_the_next_one_cleans_up(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    run_dir = tmp_path / "runs/exp"
    assert main(["bench", str(exp), "--no-progress"]) == 0
    before = _tree(run_dir)
    pid_file = tmp_path / "command.pid"
    code = f"import os, time, pathlib; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); time.sleep(120)"
    hang = _with_method(exp, [sys.executable, "-c", code], "{input} {output}", "hang.yaml")
    proc = subprocess.Popen(
        [sys.executable, "run.py", "bench", str(hang), "--force", "--no-progress"],
        cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(2400):  # until the forced run is inside its method, writing its staging folder
            if pid_file.is_file() and pid_file.read_text():
                break
            time.sleep(0.05)
        assert pid_file.is_file(), "the forced run never reached its method"
    finally:
        proc.send_signal(signal.SIGKILL)  # the bench, mid-run ...
        proc.wait()
        if pid_file.is_file() and pid_file.read_text():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)  # ... and the command it was waiting for
    staged = [p.name for p in run_dir.iterdir() if p.name.startswith(".staging-")]
    assert len(staged) == 1  # the killed run's half-built output, beside the old run
    assert {k: v for k, v in _tree(run_dir).items() if not k.startswith(".staging-")} == before
    assert main(["bench", str(exp), "--force", "--no-progress", "bench.batch_size=2"]) == 0
    assert not any(p.name.startswith(".staging-") for p in run_dir.iterdir())  # the leftover was removed
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "ok"


def test_force_replaces_exactly_the_harness_files(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    run_dir = tmp_path / "runs/exp"
    assert main(["bench", str(exp), "--no-progress", "methods=[bicubic, nearest]", "--report"]) == 0
    notes = run_dir / "notes.txt"  # a file of the user's beside the run's outputs: never touched
    notes.write_text("mine")
    assert main(["bench", str(exp), "--force", "--no-progress"]) == 0
    assert not (run_dir / "images/paired/nearest").exists() and not (run_dir / "report.html").exists()
    assert notes.read_text() == "mine"
    owned = runfolder.read_manifest(run_dir)
    assert "notes.txt" not in owned and owned["summary.json"] == "bench"
    assert set(owned) == {p for p in _tree(run_dir) if p not in ("notes.txt", runfolder.MANIFEST_FILE)}


def test_a_run_folder_that_links_out_of_output_root_is_refused(tmp_path: Path, capsys) -> None:
    exp = _experiment(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "runs/exp").symlink_to(tmp_path / "elsewhere")
    assert main(["bench", str(exp), "--no-progress"]) == 2
    assert f"name: {tmp_path}/runs/exp resolves to {tmp_path}/elsewhere, outside output_root" in capsys.readouterr().err
    assert list((tmp_path / "elsewhere").iterdir()) == []
    with pytest.raises(ConfigError, match="must be a plain folder name"):
        runfolder.run_folder(tmp_path, "../x")


# ----------------------------------------------------------------------------------------------- training
def _train_config(tmp_path: Path, steps: int = 4) -> Path:
    for i in range(3):
        _png(tmp_path / "src" / f"x{i}.png", 48, 48, i)
    path = tmp_path / "train.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        name: tok
        output_root: {tmp_path}/runs
        train:
          type: vqvae
          arch: tiny
          data: {{sources: [{{path: {tmp_path}/src}}], crop_size: 32, batch_size: 2}}
          loop: {{steps: {steps}, log_every: 1, checkpoint_every: 2, keep_checkpoints: 3, progress: false,
                  tensorboard: false}}
          optim: {{lr: 1e-3, weight_decay: 0.0, warmup_steps: 1}}
        """)
    )
    return path


def test_training_identity_resume_force_and_fallback(tmp_path: Path, capsys) -> None:
    cfg = _train_config(tmp_path)
    train_dir = tmp_path / "runs/tok/train"
    from harness.config.experiment import load_experiment
    from harness.training.stage import run_train

    run_train(load_experiment(cfg), stop_after=2)  # interrupted after step 2
    assert main(["train", str(cfg)]) == 0  # same identity: resumed
    out, err = capsys.readouterr()
    assert "resuming from" in err and "resuming" not in out  # diagnostics on stderr, results on stdout
    assert out == f"trained checkpoint: {train_dir / 'tokenizer.safetensors'}\n"
    model = train_dir / "tokenizer.safetensors"
    finished = model.read_bytes()
    mtime = model.stat().st_mtime_ns

    assert main(["train", str(cfg)]) == 0  # finished: nothing trained, nothing rewritten
    assert "this training run has finished (same config, data and code); nothing to do" in capsys.readouterr().err
    assert model.stat().st_mtime_ns == mtime

    _png(tmp_path / "src" / "x1.png", 48, 48, seed=99)  # the training data changed
    assert main(["train", str(cfg)]) == 3
    assert "  data.train.data.sources[0].x1.png: content changed (sha256 " in capsys.readouterr().err
    assert model.read_bytes() == finished

    before = _tree(train_dir)  # a forced run that fails (diverges) leaves the finished one as it was
    assert main(["train", str(cfg), "--force", "train.optim.lr=1e30", "train.loop.steps=20"]) == 1
    assert "non-finite loss" in capsys.readouterr().err
    assert _tree(train_dir) == before
    assert main(["train", str(cfg), "--force"]) == 0  # a forced run that finishes replaces it
    assert "resuming" not in capsys.readouterr().err
    assert model.read_bytes() != finished
    identity = json.loads((train_dir / "identity.json").read_text())
    assert identity["kind"] == "train" and identity["code"]["version"] and identity["data_sha256"]

    (train_dir / "result.json").unlink()  # make it resumable again, then damage its latest checkpoint
    latest = train_dir / "checkpoints" / (train_dir / "checkpoints/latest").read_text().strip()
    weights = (latest / "model.safetensors").read_bytes()
    (latest / "model.safetensors").write_bytes(weights[: len(weights) // 3])
    assert main(["train", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^warning: 1 newer checkpoint\(s\) are damaged and were skipped .* resuming from", err, re.M)
    assert f"resuming from {train_dir / 'checkpoints/step_00000002'} (step 2)" in err

    (train_dir / "result.json").unlink()
    for step in (train_dir / "checkpoints").glob("step_*"):
        (step / "trainer_state.pt").write_bytes(b"")
    assert main(["train", str(cfg)]) == 1
    assert f"error: {train_dir}: no usable checkpoint, every one is damaged:" in capsys.readouterr().err


def test_sweep_force_trains_every_cell_afresh(tmp_path: Path) -> None:
    cfg = _train_config(tmp_path, steps=2)
    text = cfg.read_text() + "sweep: {grid: {seed: [0]}, stages: [train]}\n"
    cfg.write_text(text)
    from harness.sweep.expand import load_sweep
    from harness.sweep.runner import run_sweep

    spec = load_sweep(cfg)
    first = run_sweep(spec, isolation="inline", progress=False)
    assert first.ok
    cell = first.sweep_dir / first.rows[0]["dir"]
    model = cell / "train/tokenizer.safetensors"
    inode = model.stat().st_ino
    again = run_sweep(spec, isolation="inline", progress=False)
    assert again.outcomes[0].skipped  # done: skipped
    forced = run_sweep(spec, isolation="inline", progress=False, force=True)
    assert forced.ok and not forced.outcomes[0].skipped
    log = (cell / "log.txt").read_text()
    assert "resuming from" not in log  # trained from step 0, not "resumed" at the end
    assert model.stat().st_ino != inode  # a new file swapped in


# ----------------------------------------------------------------------------------------------- data, methods
def test_bundled_cache_file_edited_is_rebuilt(tmp_path: Path, caplog) -> None:
    from harness.core.registry import create

    options = {"hr_size": 64, "count": 2, "cache_dir": str(tmp_path / "cache")}
    first = create("datasets", "bundled", options)
    lr_file = first.path_of(first.keys[0])[0]
    original = lr_file.read_bytes()
    _png(lr_file, 16, 16, seed=7)  # edited in place
    again = create("datasets", "bundled", options)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert re.search(r"1 file\(s\) missing or changed since they were generated \(lr/", warning)
    assert again.generated and lr_file.read_bytes() == original
    assert again.digests[str(lr_file)] == hashlib.sha256(original).hexdigest()


def test_command_keys_never_become_code(tmp_path: Path) -> None:
    """A file named ``$(touch PWNED).png`` reaches the script as data through the safe positional form."""
    from harness.core.registry import create

    copy = shlex.join([sys.executable, "-c", "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])"])
    script = f'{copy} "$1" "$2"'
    method = create("methods", "command", {"command": f"bash -c {shlex.quote(script)} _ {{input}} {{output}}",
                                           "scale": 1, "cwd": str(tmp_path)})  # fmt: skip
    lr = torch.rand(1, 3, 4, 4).mul(255).round().div(255)
    sr = method.upscale(lr, ["$(touch PWNED)"])
    assert torch.equal(sr, lr) and not (tmp_path / "PWNED").exists()
    method.close()


def test_alignvar_tiles_bound_what_the_model_sees(tmp_path: Path) -> None:
    """With ``tile``, the transformer never sees more than a tile: its memory does not grow with the image."""
    from harness.core.registry import create
    from harness.core.tiling import tile_starts
    from methods.alignvar.configs import ARCHS, AlignVARConfig
    from methods.alignvar.model import AlignVAR

    torch.manual_seed(0)
    ckpt = AlignVAR(ARCHS["tiny"].transformer, ARCHS["tiny"].vqvae, AlignVARConfig()).save(tmp_path / "t.safetensors")
    seen: list[tuple[int, ...]] = []

    def spy(method):
        generate = method.model.generate

        def wrapped(crop, **kw):
            seen.append(tuple(crop.shape))
            return generate(crop, **kw)

        method.model.generate = wrapped
        return method

    options = {"checkpoint": str(ckpt), "use_refiner": False, "device": "cpu"}
    tiled = spy(create("methods", "alignvar", {**options, "tile": 32, "tile_overlap": 8}))
    lr = torch.rand(1, 3, 24, 24)  # 96x96 output: 3x the tile side
    out = tiled.upscale(lr, ["x"])
    assert out.shape == (1, 3, 96, 96) and torch.isfinite(out).all()
    n = len(tile_starts(96, 32, 8))
    assert len(seen) == n * n == 16 and set(seen) == {(1, 3, 32, 32)}
    seen.clear()
    whole = spy(create("methods", "alignvar", options))
    whole.upscale(lr, ["x"])
    assert seen == [(1, 3, 96, 96)]  # without tiles: the whole image at once
