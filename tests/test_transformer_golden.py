"""The transformer against numbers computed by the official VARSR code (``shared/golden/varsr``, depth 2).

The synthetic official-layout checkpoints are generated with the fixture's ``make_state_dict.py`` (seed 1234,
``.pth`` with the official ``['trainer'][...]`` nesting, hashes checked) and loaded through the public path
(``AlignVAR.from_pretrained``: nesting, architecture inference, strict loading, derived buffers dropped).

Tolerances (float32; golden arrays partly stored as float16), from the fixture README:
con_emb_out 2e-3 (fp16 storage); logits_sel 5e-3 (fp16, |x| < 8); logits_lse 1e-4; infer_fhat 1e-4;
infer_img 1e-2 (fp16); refiner_z_from_model 1e-4. Integer tokens exact, except at near-ties (gap < 1e-3) where
a flip is accepted (and, during inference, replaced by the golden token so later scales stay comparable).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from methods.alignvar.configs import AlignVARConfig, SCAConfig
from methods.alignvar.model import AlignVAR
from methods.alignvar.scales import ScaleSchedule

SEED = 1234
NEAR_TIE = 1e-3


def make_golden_checkpoints(golden_dir: Path, out_dir: Path) -> tuple[Path, Path]:
    """VARSR.pth / VQVAE.pth stand-ins (official nesting) from the fixture generator; hashes verified."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for keys, hashes, name in (
        ("keys_var_d2.tsv", "state_dict_sha256_var.tsv", "VARSR_d2.pth"),
        ("keys_vqvae.tsv", "state_dict_sha256_vqvae.tsv", "VQVAE_ch32.pth"),
    ):
        out = out_dir / name
        if not out.is_file():
            cmd = [sys.executable, str(golden_dir / "make_state_dict.py"), str(golden_dir / keys), str(SEED)]
            cmd += [str(out), "--check", str(golden_dir / hashes)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode:
                pytest.fail(f"make_state_dict.py failed (torch RNG differs from 2.13?):\n{res.stdout}{res.stderr}")
        paths.append(out)
    return paths[0], paths[1]


@pytest.fixture(scope="module")
def golden(golden_dir: Path) -> dict[str, np.ndarray]:
    with np.load(golden_dir / "golden.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def model(golden_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> AlignVAR:
    var, vqvae = make_golden_checkpoints(golden_dir, tmp_path_factory.getbasetemp() / "varsr_golden_ckpt")
    cfg = AlignVARConfig(arch="auto", checkpoint=str(var), vqvae=str(vqvae), sca=SCAConfig(mask_input="none"))
    return AlignVAR.from_pretrained(var, vqvae, cfg)


@pytest.fixture(scope="module")
def lr_up(golden: dict[str, np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(golden["lr_up"])[None]


def test_architecture_inferred_from_tensors(model: AlignVAR) -> None:
    cfg = model.transformer.cfg
    assert (cfg.depth, cfg.width, cfg.heads, cfg.vocab, cfg.cvae, cfg.image_size) == (
        2,
        128,
        2,
        4096,
        32,
        512,
    )
    assert cfg.with_refiner and (cfg.refiner_width, cfg.refiner_depth) == (1024, 6)
    assert sum(p.numel() for p in model.transformer.parameters()) == 49_904_740  # VAR_RoPE d2, measured
    assert model.sca is None


def test_conditioning_stem(model: AlignVAR, golden: dict, lr_up: torch.Tensor) -> None:
    with torch.no_grad():
        tokens = model.transformer.con_embedding(lr_up).flatten(2).transpose(1, 2)[0]
    ref = torch.from_numpy(golden["con_emb_out"].astype(np.float32))
    torch.testing.assert_close(tokens, ref, atol=2e-3, rtol=0)


def _check_tokens(ours: torch.Tensor, ref: np.ndarray, gap: np.ndarray, what: str) -> None:
    ref_t = torch.from_numpy(ref.astype(np.int64))
    bad = (ours != ref_t).nonzero().flatten()
    ties = torch.from_numpy(gap)[bad] < NEAR_TIE
    assert bool(ties.all()), f"{what}: tokens differ away from near-ties at positions {bad[~ties][:10].tolist()}"


@pytest.mark.parametrize("label", [0, 1])
def test_teacher_forced_logits(model: AlignVAR, golden: dict, lr_up: torch.Tensor, label: int) -> None:
    x_in = torch.from_numpy(golden["teacher_input"])[None]
    with torch.no_grad():
        logits = model.transformer(lr_up, torch.tensor([label]), x_in, ScaleSchedule.official())[0]
    assert logits.shape == (2240, 4096)
    suffix = "" if label == 0 else "_label1"
    torch.testing.assert_close(logits.logsumexp(-1), torch.from_numpy(golden["logits_lse" + suffix]), atol=1e-4, rtol=0)
    _check_tokens(logits.argmax(-1), golden["logits_argmax" + suffix], golden["logits_gap" + suffix], "argmax")
    if label == 0:
        pos = torch.from_numpy(golden["logits_pos"].astype(np.int64))
        ref = torch.from_numpy(golden["logits_sel"].astype(np.float32))
        torch.testing.assert_close(logits[pos], ref, atol=5e-3, rtol=0)


def test_greedy_cfg_inference_without_refiner(model: AlignVAR, golden: dict, lr_up: torch.Tensor) -> None:
    schedule = ScaleSchedule.official()
    ref_idx = torch.from_numpy(golden["infer_idx"].astype(np.int64))
    ref_gap = torch.from_numpy(golden["infer_gap"])
    substituted: list[tuple[int, int]] = []

    def force_near_ties(k: int, idx: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        b, e = schedule.begin_ends[k]
        ref = ref_idx[b:e][None]
        bad = (idx != ref)[0].nonzero().flatten()
        assert bool((ref_gap[b:e][bad] < NEAR_TIE).all()), f"scale {k}: tokens {bad.tolist()} differ, no near-tie"
        substituted.extend((k, int(i)) for i in bad)
        return ref

    img, gen = model.generate(
        lr_up,
        schedule,
        cfg=6.0,
        top_k=1,
        top_p=0.75,
        use_refiner=False,
        token_hook=force_near_ties,
        return_tokens=True,
    )
    assert len(substituted) <= 2, substituted  # the fixture lists two inference near-ties
    torch.testing.assert_close(torch.cat(gen.tokens, 1)[0], ref_idx)
    torch.testing.assert_close(gen.f_hat[0], torch.from_numpy(golden["infer_fhat"]), atol=1e-4, rtol=0)
    torch.testing.assert_close(img[0], torch.from_numpy(golden["infer_img"].astype(np.float32)), atol=1e-2, rtol=0)
    torch.testing.assert_close(
        gen.refiner_z[0, :64], torch.from_numpy(golden["refiner_z_from_model"]), atol=1e-4, rtol=1e-4
    )
