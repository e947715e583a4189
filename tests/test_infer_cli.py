"""``run.py infer`` end to end: official-layout (golden recipe, d2) and tiny safetensors checkpoints.

Shape/existence checks only: these weights are random (no image quality is implied). The golden recipe's
numerical agreement with the official code is tested in ``test_transformer_golden.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.cli.main import main
from methods.alignvar.configs import ARCHS, AlignVARConfig
from methods.alignvar.model import AlignVAR

REPO = Path(__file__).resolve().parents[1]


def _golden_checkpoints(golden_dir: Path, out_dir: Path) -> tuple[Path, Path]:
    """VARSR.pth / VQVAE.pth stand-ins (official nesting) from the fixture generator (seed 1234)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outs = []
    for keys, hashes, name in (
        ("keys_var_d2.tsv", "state_dict_sha256_var.tsv", "VARSR_d2.pth"),
        ("keys_vqvae.tsv", "state_dict_sha256_vqvae.tsv", "VQVAE_ch32.pth"),
    ):
        out = out_dir / name
        if not out.is_file():
            cmd = [
                sys.executable,
                str(golden_dir / "make_state_dict.py"),
                str(golden_dir / keys),
                "1234",
                str(out),
            ]
            res = subprocess.run([*cmd, "--check", str(golden_dir / hashes)], capture_output=True, text=True)
            assert res.returncode == 0, res.stdout + res.stderr
        outs.append(out)
    return outs[0], outs[1]


def _png(path: Path, h: int, w: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = AlignVAR(ARCHS["tiny"].transformer, ARCHS["tiny"].vqvae, AlignVARConfig())
    return model.save(tmp_path_factory.mktemp("tiny") / "tiny.safetensors")


def test_infer_official_layout_checkpoints(golden_dir: Path, tmp_path: Path, tmp_path_factory) -> None:
    var, vqvae = _golden_checkpoints(golden_dir, tmp_path_factory.getbasetemp() / "varsr_golden_ckpt")
    with np.load(golden_dir / "golden.npz") as z:
        Image.fromarray(z["lr"]).save(tmp_path / "astronaut_lr.png")
    out = tmp_path / "out"
    args = [
        "infer",
        "--method",
        "varsr",
        "--checkpoint",
        str(var),
        "--vqvae",
        str(vqvae),
        "--input",
        str(tmp_path / "astronaut_lr.png"),
        "--output",
        str(out),
        "--no-refiner",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    with Image.open(out / "astronaut_lr.png") as img:
        assert img.size == (512, 512) and img.mode == "RGB"


def test_infer_tiny_folder_non_square_and_tiled(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "lr"
    src.mkdir()
    _png(src / "a.png", 16, 16)
    _png(src / "b.png", 13, 22, seed=1)  # odd sizes: padded inside, cropped back to 4x
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "sr"
    args = [
        "infer",
        "--method",
        "alignvar",
        "--checkpoint",
        str(tiny_checkpoint),
        "--input",
        str(src),
        "--output",
        str(out),
        "--sca",
        "random",
        "--tile",
        "48",
        "--tile-overlap",
        "16",
        "--seed",
        "3",
    ]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    with Image.open(out / "a.png") as a, Image.open(out / "b.png") as b:
        assert a.size == (64, 64) and b.size == (88, 52)
    assert f"wrote 2 x4 image(s) to {out}" in capsys.readouterr().out


def test_infer_single_file_to_named_png(tiny_checkpoint: Path, tmp_path: Path) -> None:
    lr = _png(tmp_path / "x.png", 16, 24)
    target = tmp_path / "result" / "sr.png"
    args = [
        "infer",
        "--method",
        "alignvar",
        "--checkpoint",
        str(tiny_checkpoint),
        "--input",
        str(lr),
        "--output",
        str(target),
        "--color-fix",
        "wavelet",
        "--no-refiner",
    ]
    assert main(args) == 0
    with Image.open(target) as img:
        assert img.size == (96, 64)


def test_infer_missing_checkpoint_exact_message(tmp_path: Path) -> None:
    lr = _png(tmp_path / "x.png", 16, 16)
    missing = tmp_path / "nowhere" / "VARSR.pth"
    cmd = [
        sys.executable,
        str(REPO / "run.py"),
        "infer",
        "--method",
        "varsr",
        "--checkpoint",
        str(missing),
        "--input",
        str(lr),
        "--output",
        str(tmp_path / "out"),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: varsr: checkpoint file not found: {missing}; download VARSR.pth from "
        "https://github.com/qyp2000/VARSR (checkpoints/) and put it there, or give its actual path "
        "(checkpoint: in YAML, --checkpoint on the command line)"
    )
    assert not (tmp_path / "out").exists()


def test_infer_official_checkpoint_needs_vqvae(tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / "VARSR.pth"
    torch.save({"trainer": {"var_wo_ddp": {"w": torch.zeros(1)}}}, ckpt)
    lr = _png(tmp_path / "x.png", 16, 16)
    assert (
        main(["infer", "--checkpoint", str(ckpt), "--input", str(lr), "--output", str(tmp_path / "o")]) == 2
    )
    assert capsys.readouterr().err.strip() == (
        "error: varsr: no vqvae given; download VQVAE.pth from https://github.com/qyp2000/VARSR "
        "(checkpoints/) and set vqvae: /path/to/VQVAE.pth (--vqvae on the command line); methods never run "
        "with random weights"
    )
