"""Tokenizer and AlignVAR trainers on real bundled photographs: the loss decreases, resume is exact, and the
trained checkpoint is what the model core and the ``@trained`` bench reference load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.cli.main import main as cli
from harness.config.experiment import load_experiment
from harness.core.mapping import ConfigError
from harness.training.stage import TRAINED, resolve_trained

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "experiments" / "tiny_train.yaml"


def _csv_losses(path: Path) -> dict[int, float]:
    import csv

    with open(path, newline="") as fh:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(fh)}


def _overrides(root: Path, steps: int, tok_steps: int, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        f"output_root={root}",
        f"train.loop.steps={steps}",
        "train.loop.log_every=1",
        "train.loop.checkpoint_every=4",
        "train.loop.progress=false",
        "train.loop.tensorboard=false",
        "train.data.crop_size=32",
        f"train.tokenizer.loop.steps={tok_steps}",
        "train.tokenizer.loop.log_every=1",
        "train.tokenizer.loop.progress=false",
        "train.tokenizer.loop.tensorboard=false",
        "train.tokenizer.data.crop_size=32",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """One uninterrupted tiny run (tokenizer + AlignVAR) and one interrupted at step 4 then resumed."""
    root = tmp_path_factory.mktemp("runs")
    full = _overrides(root, steps=10, tok_steps=40, extra=("name=full",))
    assert cli(["train", str(TINY), *full]) == 0
    cut = _overrides(root, steps=10, tok_steps=40, extra=("name=cut",))
    from harness.training.stage import run_train

    run_train(load_experiment(TINY, cut), stop_after=4)  # an interruption after step 4
    assert cli(["train", str(TINY), *cut]) == 0  # resumes from the step-4 checkpoint
    return root


def test_tokenizer_loss_decreases_and_is_cached(trained_runs):
    tok_dirs = list((trained_runs / "_tokenizers").iterdir())
    assert len(tok_dirs) == 1, "both runs must share one cached tokenizer (same config and seed)"
    losses = _csv_losses(tok_dirs[0] / "metrics.csv")
    first = sum(losses[s] for s in range(1, 6)) / 5
    last = sum(losses[s] for s in range(36, 41)) / 5
    assert last < 0.8 * first, (first, last)
    from methods.alignvar.weights import load_vqvae, read_state_dict

    path = tok_dirs[0] / "tokenizer.safetensors"
    vae = load_vqvae(read_state_dict(path), str(path))
    assert vae.vocab_size == 512 and vae.z_channels == 16


def test_alignvar_loss_decreases(trained_runs):
    losses = _csv_losses(trained_runs / "full" / "train" / "metrics.csv")
    assert sorted(losses) == list(range(1, 11))
    assert losses[10] < losses[1]
    assert sum(losses[s] for s in (8, 9, 10)) < sum(losses[s] for s in (1, 2, 3))
    header = (trained_runs / "full" / "train" / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in ("ce", "hcc", "refiner", "ce_s0", "hcc_s0", "ce_s1", "hcc_s1", "lr", "grad_norm"):
        assert column in header
    # HCC's gradient share and the SCA gate statistics at every log step (log_every 1 here)
    for column in ("hcc_grad_ratio", "hcc_share", "hcc_share_s0", "gate_mean", "gate_std", "gate_open", "gate_mean_s1"):
        assert column in header
    import pandas as pd

    log = pd.read_csv(trained_runs / "full" / "train" / "metrics.csv")
    assert log["hcc_share"].tolist() == pytest.approx(log["hcc_grad_ratio"].tolist())  # lambda 1 (tiny_train)
    assert log["gate_mean"].between(0.4, 0.6).all()  # sca.init_bias 0: the gate starts at 1/2


def test_resume_reproduces_uninterrupted_losses(trained_runs):
    full = _csv_losses(trained_runs / "full" / "train" / "metrics.csv")
    cut = _csv_losses(trained_runs / "cut" / "train" / "metrics.csv")
    assert sorted(cut) == list(range(1, 11))
    for step in range(1, 11):
        assert cut[step] == pytest.approx(full[step], rel=1e-6, abs=1e-7), step


def test_trained_checkpoint_loads_and_upscales(trained_runs):
    from methods.alignvar.model import AlignVAR

    ckpt = trained_runs / "full" / "train" / "model.safetensors"
    model = AlignVAR.from_pretrained(ckpt)
    assert model.config.sca.mask_input == "laplacian" and model.config.hcc.lambda_ == 1.0
    lr = torch.rand(1, 3, 8, 8)
    sr = model.upscale(lr, seed=0)
    assert sr.shape == (1, 3, 32, 32) and 0 <= sr.min() and sr.max() <= 1

    cfg = load_experiment(TINY, [f"output_root={trained_runs}", "name=full"])
    resolved = resolve_trained(cfg)
    assert resolved.methods[1].options.checkpoint == str(ckpt)
    assert cfg.methods[1].options.checkpoint == TRAINED  # the original is left untouched
    missing = load_experiment(TINY, [f"output_root={trained_runs}", "name=never_trained"])
    with pytest.raises(ConfigError, match="uses checkpoint '@trained' but .* does not exist; run the train stage"):
        resolve_trained(missing)


def test_dead_code_restart_reseeds_only_unused_codes():
    from methods.alignvar.configs import TINY_VQVAE
    from methods.alignvar.tokenizer_loss import restart_dead_codes, update_code_usage
    from methods.alignvar.vqvae import VQVAE

    torch.manual_seed(0)
    vae = VQVAE(**TINY_VQVAE)
    before = vae.quantize.embedding.weight.detach().clone()
    live = torch.tensor([3, 3, 7, 9])
    for _ in range(50):  # EMA of the histogram: codes 3, 7, 9 used, all others never
        update_code_usage(vae, [live, live])
    hits = vae.quantize.ema_vocab_hit_SV
    assert hits[0, 3] == pytest.approx(0.5 * (1 - 0.99**50)) and hits[2:].abs().sum() == 0
    residuals = [torch.randn(6, 16), torch.randn(10, 16)]
    restarted = restart_dead_codes(vae, residuals)
    after = vae.quantize.embedding.weight.detach()
    assert restarted == 512 - 3
    assert torch.equal(after[[3, 7, 9]], before[[3, 7, 9]])  # live codes untouched
    pool = torch.cat(residuals)
    nearest = torch.cdist(after[[0, 1, 100, 511]], pool).min(dim=1).values
    assert (nearest < 0.01).all()  # dead codes now sit on residual vectors of the batch (+1e-3 noise)
