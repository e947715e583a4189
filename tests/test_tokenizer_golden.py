"""VQ-VAE tokenizer against the official VARSR golden fixtures (shared/golden/varsr, README there).

The synthetic checkpoint (ch=32, official key names, seed 1234) is regenerated with the fixture's own
``make_state_dict.py`` (hash-checked) and loaded through the public path ``read_state_dict`` +
``VQVAE.from_state_dict``. Each stage is fed golden inputs so errors do not compound. Tolerances (float32; the
README's suggestions): ``f_enc``, ``fhat_final``, ``teacher_input``, ``vq_residual_last`` atol 1e-4; tokens
exact except at listed near-ties (``vq_gap`` < 1e-3); ``decoded`` / ``infer_img`` (float16 storage) atol 1e-2.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from methods.alignvar.quantizer import area_down
from methods.alignvar.scales import ScaleSchedule
from methods.alignvar.vqvae import VQVAE
from methods.alignvar.weights import load_vqvae, read_state_dict

SEED = 1234
FILES = {
    "vqvae": ("keys_vqvae.tsv", "state_dict_sha256_vqvae.tsv"),
    "var": ("keys_var_d2.tsv", "state_dict_sha256_var.tsv"),
}
NEAR_TIE = 1e-3
S = ScaleSchedule.official()


def make_state_dict(golden_dir, which: str, out) -> None:
    """Run the fixture's generator (hash check on) for ``which`` in {'vqvae', 'var'}; fail loudly on
    mismatch."""
    keys, hashes = FILES[which]
    cmd = [
        sys.executable,
        str(golden_dir / "make_state_dict.py"),
        str(golden_dir / keys),
        str(SEED),
        str(out),
    ]
    proc = subprocess.run(cmd + ["--check", str(golden_dir / hashes)], capture_output=True, text=True)
    if proc.returncode:
        pytest.fail(
            f"make_state_dict.py {keys} failed (exit {proc.returncode}); if the hash check failed, this "
            f"torch's RNG differs from the one the golden numbers were made with.\n"
            f"{proc.stdout}\n{proc.stderr}"
        )


@pytest.fixture(scope="module")
def golden(golden_dir):
    with np.load(golden_dir / "golden.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def vqvae_pth(golden_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("golden_vqvae") / "VQVAE.pth"
    make_state_dict(golden_dir, "vqvae", out)
    return out


@pytest.fixture(scope="module")
def vae(vqvae_pth) -> VQVAE:
    return load_vqvae(read_state_dict(vqvae_pth), source=str(vqvae_pth))


@pytest.fixture(scope="module")
def golden_idx(golden) -> list[torch.Tensor]:
    return [torch.from_numpy(golden[f"idx_scale_{k}"].astype(np.int64))[None] for k in range(S.num_scales)]


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float32))


def test_checkpoint_loads_with_official_layout(vae, vqvae_pth, golden_dir):
    sd = read_state_dict(vqvae_pth)  # auto-descends ['trainer']['vae_local']
    assert len(sd) == 324
    assert list(vae.state_dict()) == list(sd), "module key order should follow the official state dict"
    assert vae.config["ch"] == 32 and vae.config["ch_mult"] == (1, 1, 2, 2, 4) and vae.config["vocab_size"] == 4096
    assert not vae.training
    for key in (
        "quantize.embedding.weight",
        "decoder.up.4.attn.2.qkv.weight",
        "encoder.down.2.block.0.nin_shortcut.weight",
    ):
        assert torch.equal(vae.state_dict()[key], sd[key])


def test_released_architecture_parameter_counts():
    """VARSR's VQ-VAE (ch=160) has 108,948,355 parameters (reference, measured on the official model)."""
    vae = VQVAE()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(vae) == 108_948_355
    assert (count(vae.encoder), count(vae.decoder), count(vae.quantize)) == (44_107_872, 64_653_923, 168_064)


@torch.inference_mode()
def test_encoder_matches_golden(vae, golden):
    hr = torch.from_numpy(golden["hr"]).permute(2, 0, 1).float().div(255).mul(2).sub(1)[None]
    f = vae.encode(hr)
    assert f.shape == (1, 32, 32, 32)
    torch.testing.assert_close(f[0], t(golden["f_enc"]), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def tokens(vae, golden):
    return vae.quantize.f_to_idx(t(golden["f_enc"])[None], S, return_gaps=True)


def test_quantizer_tokens_match_golden(tokens, golden):
    """Exact tokens except where the official run itself had a near-tie (vq_gap < 1e-3)."""
    gap = golden["vq_gap"]
    for k, (b, e) in enumerate(S.begin_ends):
        ours = tokens.idx[k][0].numpy()
        ref = golden[f"idx_scale_{k}"].astype(np.int64)
        assert ours.shape == ref.shape == (e - b,)
        bad = np.nonzero(ours != ref)[0]
        assert np.all(gap[b + bad] < NEAR_TIE), f"scale {k}: token mismatch at {bad[:10]} (gaps {gap[b + bad][:10]})"
    ours_gap = torch.cat([g[0] for g in tokens.gaps])
    torch.testing.assert_close(ours_gap, t(gap), atol=1e-4, rtol=1e-3)


def test_quantizer_continuous_outputs(tokens, golden, golden_idx, vae):
    """fhat_final and the residual f - F_{K-2}: from our own tokens when they all agree, and always from the
    golden tokens (so a flip at a near-tie cannot hide an arithmetic error)."""
    same = all(torch.equal(a, b) for a, b in zip(tokens.idx, golden_idx))
    if same:
        torch.testing.assert_close(tokens.f_hat[-1][0], t(golden["fhat_final"]), atol=1e-4, rtol=0)
        torch.testing.assert_close(tokens.residual[0], t(golden["vq_residual_last"]), atol=1e-4, rtol=0)
    with torch.no_grad():
        F = vae.quantize.cumulative_targets(golden_idx, S)
    torch.testing.assert_close(F[-1][0], t(golden["fhat_final"]), atol=1e-4, rtol=0)
    f = t(golden["f_enc"])[None]
    residual = (f - F[-2]).permute(0, 2, 3, 1).reshape(1, 1024, 32)
    torch.testing.assert_close(residual[0], t(golden["vq_residual_last"]), atol=1e-4, rtol=0)
    # last scale adds the raw codebook entries: F_{K-1} - F_{K-2} == E[idx_last] exactly (no phi, no resize)
    last = vae.quantize.lookup(golden_idx[-1], S.latent_hw)
    torch.testing.assert_close(F[-1] - F[-2], last, atol=1e-6, rtol=0)


@torch.no_grad()
def test_teacher_forcing_input_matches_golden(vae, golden, golden_idx):
    ti = vae.quantize.idx_to_var_input(golden_idx, S)
    assert ti.shape == (1, 2239, 32) and ti.dtype == torch.float32
    torch.testing.assert_close(ti[0], t(golden["teacher_input"]), atol=1e-4, rtol=0)


@torch.no_grad()
def test_inference_steps_reproduce_teacher_input(vae, golden, golden_idx):
    """next_ar_input (inference) gives the same next-scale inputs and final f_hat as teacher forcing."""
    q = vae.quantize
    f_hat = torch.zeros(1, 32, 32, 32)
    inputs = []
    for k, hw in enumerate(S.patch_nums):
        f_hat, nxt = q.next_ar_input(k, f_hat, q.lookup(golden_idx[k], hw), S)
        if nxt is not None:
            assert nxt.shape[-2:] == S.patch_nums[k + 1]
            inputs.append(nxt.flatten(2).transpose(1, 2))
        else:
            assert k == S.num_scales - 1
    torch.testing.assert_close(torch.cat(inputs, 1)[0], t(golden["teacher_input"]), atol=1e-4, rtol=0)
    torch.testing.assert_close(f_hat[0], t(golden["fhat_final"]), atol=1e-4, rtol=0)


@torch.inference_mode()
def test_decoder_matches_golden(vae, golden):
    dec = vae.decode(t(golden["fhat_final"])[None])
    assert dec.shape == (1, 3, 512, 512)
    assert dec.min() < -1 and dec.max() > 1, "decode must not clamp (golden values reach -3.7 .. 7.2)"
    torch.testing.assert_close(dec[0], t(golden["decoded"]), atol=1e-2, rtol=0)


@torch.inference_mode()
def test_inference_image_matches_golden(vae, golden):
    img = (vae.decode(t(golden["infer_fhat"])[None]).clamp(-1, 1) + 1) / 2
    torch.testing.assert_close(img[0], t(golden["infer_img"]), atol=1e-2, rtol=0)


@torch.no_grad()
def test_non_square_tokenisation_is_consistent(vae):
    """256x384 latent grid (16x24): shapes, the residual identity, and teacher input == area_down(F_k)."""
    s = ScaleSchedule.for_size(256, 384)
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 32, 16, 24, generator=g) * 0.5
    out = vae.quantize.f_to_idx(f, s)
    assert [tuple(i.shape) for i in out.idx] == [(2, h * w) for h, w in s.patch_nums]
    assert all(i.dtype == torch.int64 for i in out.idx)
    torch.testing.assert_close(out.residual, (f - out.f_hat[-2]).flatten(2).transpose(1, 2), atol=1e-6, rtol=0)
    F = vae.quantize.cumulative_targets(out.idx, s)
    for a, b in zip(F, out.f_hat):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    ti = vae.quantize.idx_to_var_input(out.idx, s)
    expect = torch.cat([area_down(F[k], s.patch_nums[k + 1]).flatten(2).transpose(1, 2) for k in range(9)], 1)
    assert ti.shape == (2, s.total_tokens - 1, 32)
    torch.testing.assert_close(ti, expect, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"does not match the schedule's latent grid \(16, 24\)"):
        vae.quantize.f_to_idx(torch.zeros(1, 32, 32, 32), s)


def test_embed_scale_is_differentiable_and_matches_hard_lookup(vae):
    """HCC path: softmax-weighted codebook maps go through embed_scale with gradients; one-hot weights give
    exactly the hard-token contribution."""
    q = vae.quantize
    k, hw = 3, S.patch_nums[3]
    idx = torch.randint(0, 4096, (1, hw[0] * hw[1]), generator=torch.Generator().manual_seed(1))
    onehot = torch.nn.functional.one_hot(idx, 4096).float()
    soft_map = (onehot @ q.embedding.weight).transpose(1, 2).reshape(1, 32, *hw)
    torch.testing.assert_close(q.embed_scale(k, soft_map, S), q.embed_scale(k, q.lookup(idx, hw), S))
    logits = torch.zeros(1, hw[0] * hw[1], 4096, requires_grad=True)
    emb = (logits.softmax(-1) @ q.embedding.weight.detach()).transpose(1, 2).reshape(1, 32, *hw)
    q.embed_scale(k, emb, S).square().sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
