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
from harness.core.imageio import load_image
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
            cmd = [sys.executable, str(golden_dir / "make_state_dict.py"), str(golden_dir / keys), "1234"]
            res = subprocess.run([*cmd, str(out), "--check", str(golden_dir / hashes)], capture_output=True)
            assert res.returncode == 0, res.stdout + res.stderr
        outs.append(out)
    return outs[0], outs[1]


def _png(path: Path, h: int, w: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def infer(*options: str | Path) -> int:
    return main(["infer", *map(str, options)])


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = AlignVAR(ARCHS["tiny"].transformer, ARCHS["tiny"].vqvae, AlignVARConfig())
    return model.save(tmp_path_factory.mktemp("tiny") / "tiny.safetensors")


def test_infer_official_layout_checkpoints(golden_dir: Path, tmp_path: Path, tmp_path_factory) -> None:
    """The d2 official-layout files (``['trainer'][...]`` nesting, derived buffers) at a non-512 size."""
    var, vqvae = _golden_checkpoints(golden_dir, tmp_path_factory.getbasetemp() / "varsr_golden_ckpt")
    with np.load(golden_dir / "golden.npz") as z:
        Image.fromarray(z["lr"][40:72, 30:78]).save(tmp_path / "face.png")  # 32x48 LR -> 128x192
    out = tmp_path / "out"
    rc = infer("--method", "varsr", "--checkpoint", var, "--vqvae", vqvae, "--input", tmp_path / "face.png",
               "--output", out, "--no-refiner", "--device", "cpu")  # fmt: skip
    assert rc == 0
    with Image.open(out / "face.png") as img:
        assert img.size == (192, 128) and img.mode == "RGB"


def test_infer_tiny_folder_non_square_and_tiled(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "lr"
    src.mkdir()
    _png(src / "a.png", 16, 16)
    _png(src / "b.png", 13, 22, seed=1)  # odd sizes: padded inside, cropped back to 4x
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "sr"
    rc = infer("--method", "alignvar", "--checkpoint", tiny_checkpoint, "--input", src, "--output", out,
               "--sca", "random", "--tile", "48", "--tile-overlap", "16", "--seed", "3")  # fmt: skip
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    with Image.open(out / "a.png") as a, Image.open(out / "b.png") as b:
        assert a.size == (64, 64) and b.size == (88, 52)
    assert f"wrote 2 x4 image(s) to {out}" in capsys.readouterr().out


def test_infer_single_file_to_named_png(tiny_checkpoint: Path, tmp_path: Path) -> None:
    lr = _png(tmp_path / "x.png", 16, 24)
    target = tmp_path / "result" / "sr.png"
    rc = infer("--method", "alignvar", "--checkpoint", tiny_checkpoint, "--input", lr, "--output", target,
               "--color-fix", "wavelet", "--no-refiner")  # fmt: skip
    assert rc == 0
    with Image.open(target) as img:
        assert img.size == (96, 64)


def test_infer_missing_checkpoint_exact_message(tmp_path: Path) -> None:
    lr = _png(tmp_path / "x.png", 16, 16)
    missing = tmp_path / "nowhere" / "VARSR.pth"
    cmd = [sys.executable, str(REPO / "run.py"), "infer", "--method", "varsr", "--checkpoint", str(missing)]
    res = subprocess.run([*cmd, "--input", str(lr), "--output", str(tmp_path / "out")], capture_output=True,
                         text=True, cwd=REPO)  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: varsr: checkpoint file not found: {missing}; give its actual path, or use "
        "hf://qyp2000/VARSR/VARSR.pth (the official VARSR.pth, downloaded once) or the path of VARSR.pth from "
        "https://github.com/qyp2000/VARSR (checkpoint: in YAML, --checkpoint on the command line)"
    )
    assert not (tmp_path / "out").exists()


def test_infer_official_checkpoint_needs_vqvae(tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / "VARSR.pth"
    torch.save({"trainer": {"var_wo_ddp": {"w": torch.zeros(1)}}}, ckpt)
    lr = _png(tmp_path / "x.png", 16, 16)
    assert infer("--checkpoint", ckpt, "--input", lr, "--output", tmp_path / "o") == 2
    assert capsys.readouterr().err.strip() == (
        "error: varsr: no vqvae given; set vqvae: hf://qyp2000/VARSR/VQVAE.pth (the official VQVAE.pth, "
        "downloaded once) or the path of VQVAE.pth from https://github.com/qyp2000/VARSR (--vqvae on the command "
        "line); methods never run with random weights"
    )


def test_infer_refuses_sca_for_varsr(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    lr = _png(tmp_path / "x.png", 16, 16)
    assert infer("--checkpoint", tiny_checkpoint, "--input", lr, "--output", tmp_path / "o", "--sca", "random") == 2
    assert "--sca applies to --method alignvar only" in capsys.readouterr().err


def test_infer_precision_flag(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    lr = _png(tmp_path / "x.png", 16, 16)
    out = tmp_path / "o"
    args = ("--checkpoint", tiny_checkpoint, "--input", lr, "--output", out, "--device", "cpu", "--no-refiner")
    assert infer(*args, "--precision", "fp16") == 2
    assert "error: precision fp16 needs a GPU; on CPU use fp32 (default) or bf16" in capsys.readouterr().err
    assert not out.exists()
    assert infer(*args, "--precision", "bf16") == 0
    bf16 = load_image(out / "x.png")
    assert infer(*args) == 0  # fp32, the default
    fp32 = load_image(out / "x.png")
    assert bf16.shape == fp32.shape == (3, 64, 64)
    assert not torch.equal(bf16, fp32)  # autocast really ran ...
    assert (bf16 - fp32).abs().mean() < 0.05  # ... the same model
