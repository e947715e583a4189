"""FlexAttention's block-causal pass (``attention: flex``) equals the dense-mask reference.

Tiny architecture, float32, random weights (structural equality, not quality). The block mask is checked
position by position against the dense boolean mask; the teacher-forced logits of the two paths are compared
on CPU (FlexAttention's forward runs eagerly there); outputs and gradients together need FlexAttention's
backward, which torch 2.14 has on CUDA only: that test runs on a GPU (``-m cuda``) and skips on CPU naming why.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask

from methods.alignvar.configs import AlignVARConfig
from methods.alignvar.hcc import alignvar_losses, teacher_input
from methods.alignvar.scales import ScaleSchedule
from methods.alignvar.transformer import VARTransformer
from tests.tiny_models import make_tiny

# Float32 tolerance. The two paths differ only inside the attention: dense SDPA sums exp(s - max) over the whole
# key row, FlexAttention over 128-key tiles with an online-softmax rescale per tile. Softmax weights are in
# [0, 1] and sum to 1, so each output element is a convex combination of values and its rounding error is a
# few ulp of max|v| times the number of rounding steps in the sum: with ~300 keys (tiny at 64 px) the
# worst-case accumulated relative error is ~300 * 2**-24 ~ 2e-5, the typical one sqrt(300) * 2**-24 ~ 1e-6.
# Two blocks and the head (linear maps of norm ~1 at this init) carry that to the logits, so 1e-5 relative to
# the largest logit (plus the same rtol) is above the typical error and below anything a wrong mask would give
# (a single extra or missing key changes a softmax row by O(1/L) ~ 3e-3; the logits then move by ~1e-3 of
# their scale, two orders of magnitude above the bound).
RTOL = 1e-5


def _batch(astronaut: torch.Tensor, side: int = 64):
    crops = [astronaut[:, 90 * i + 40 : 90 * i + 296, 100 + 50 * i : 356 + 50 * i] for i in range(2)]
    hr = torch.stack([F.interpolate(c[None], size=(side, side), mode="area")[0] for c in crops]) * 2 - 1
    lr = F.interpolate(hr, size=(side // 4, side // 4), mode="area")
    lr_up = F.interpolate(lr, size=(side, side), mode="bicubic")
    return hr, lr_up, torch.tensor([0, 1])


def _pair(**kwargs):
    dense = make_tiny(**kwargs)
    flex = make_tiny(attention="flex", **kwargs)
    flex.load_state_dict(dense.state_dict())
    assert dense.transformer.attention == "dense" and flex.transformer.attention == "flex"
    return dense, flex


def test_block_mask_is_the_dense_block_causal_mask_position_by_position() -> None:
    tr = make_tiny().transformer
    schedule = ScaleSchedule.for_size(64, 64)
    n_prefix = 16  # tiny at 64 px: a 4 x 4 LR prefix
    dense = VARTransformer.block_causal_mask(schedule, n_prefix, torch.device("cpu"))
    bm = tr.flex_block_mask(schedule, n_prefix, torch.device("cpu"))
    assert isinstance(bm, BlockMask) and tr.flex_block_mask(schedule, n_prefix, torch.device("cpu")) is bm  # cached
    L = dense.shape[0]
    assert L == n_prefix + schedule.total_tokens and bm.shape[-2:] == (L, L)
    q, kv = torch.meshgrid(torch.arange(L), torch.arange(L), indexing="ij")
    zero = torch.zeros((), dtype=torch.long)
    assert torch.equal(bm.mask_mod(zero, zero, q, kv), dense)


def test_block_mask_built_under_inference_mode_is_a_normal_tensor() -> None:
    """Built first inside ``inference_mode`` (an eval pass), the cached mask must still serve training."""
    tr = make_tiny().transformer
    schedule = ScaleSchedule.for_size(64, 64)
    with torch.inference_mode():
        bm = tr.flex_block_mask(schedule, 16, torch.device("cpu"))
    assert not bm.kv_num_blocks.is_inference() and not bm.kv_indices.is_inference()


def test_block_mask_skips_the_tiles_above_the_scale_diagonal() -> None:
    """At 512 px (3264 positions, 26 x 26 tiles of 128) the last scale's tiles see everything, the prefix's tiles
    only the prefix: a real fraction of tiles is never computed."""
    tr = VARTransformer.__new__(VARTransformer)  # the mask builder needs no weights
    torch.nn.Module.__init__(tr)
    tr._block_masks = {}
    schedule = ScaleSchedule.for_size(512, 512)
    bm = tr.flex_block_mask(schedule, 1024, torch.device("cpu"))
    dense = VARTransformer.block_causal_mask(schedule, 1024, torch.device("cpu"))
    n = -(-3264 // 128)
    padded = torch.zeros(n * 128, n * 128, dtype=torch.bool)
    padded[:3264, :3264] = dense
    any_tile = padded.view(n, 128, n, 128).any(dim=(1, 3))
    assert int(any_tile.sum()) < n * n  # some tiles are empty
    # the BlockMask visits exactly the non-empty tiles (full or partial)
    visited = bm.to_dense()[0, 0].bool()
    assert visited.shape == (n, n) and torch.equal(visited, any_tile)


def test_flex_forward_equals_dense_forward_on_cpu(astronaut) -> None:
    dense, flex = _pair()
    hr, lr_up, label = _batch(astronaut)
    tok = dense.vqvae.img_to_idx(hr, ScaleSchedule.for_size(64, 64))
    x_in = teacher_input(tok.f_hat, ScaleSchedule.for_size(64, 64))
    with torch.no_grad():
        ref = dense.transformer(lr_up, label, x_in)
        out = flex.transformer(lr_up, label, x_in)
    assert out.shape == ref.shape == (2, ScaleSchedule.for_size(64, 64).total_tokens, dense.transformer.cfg.vocab)
    scale = float(ref.abs().max())
    torch.testing.assert_close(out, ref, atol=RTOL * scale, rtol=RTOL)


def test_flex_training_on_cpu_is_refused_with_the_reason(astronaut) -> None:
    flex = make_tiny(attention="flex").train()
    hr, lr_up, label = _batch(astronaut)
    with pytest.raises(ValueError, match=r"attention 'flex' needs a GPU for training: torch's FlexAttention has no"):
        alignvar_losses(flex, hr, lr_up, label, generator=torch.Generator().manual_seed(1))


def test_unknown_attention_is_a_config_error() -> None:
    with pytest.raises(ValueError, match=r"unknown attention 'sparse'; valid choices: dense, flex"):
        AlignVARConfig(attention="sparse")


def _cpu_flex_backward_missing() -> bool:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    q = torch.randn(1, 1, 128, 16, requires_grad=True)
    bm = create_block_mask(lambda b, h, i, j: i >= j, None, None, 128, 128, device="cpu")
    try:
        flex_attention(q, q, q, block_mask=bm).sum().backward()
    except NotImplementedError:
        return True
    return False


@pytest.mark.cuda
def test_flex_loss_and_gradients_equal_dense(astronaut) -> None:
    """The whole training loss (CE + HCC + refiner) and every parameter gradient, dense vs flex."""
    if torch.cuda.is_available():
        device = torch.device("cuda")
    elif _cpu_flex_backward_missing():
        pytest.skip("torch's FlexAttention has no backward on CPU (NotImplementedError in torch 2.14); runs on CUDA")
    else:
        device = torch.device("cpu")
    dense, flex = _pair()
    dense, flex = dense.to(device).train(), flex.to(device).train()
    hr, lr_up, label = (t.to(device) for t in _batch(astronaut))
    results = {}
    for name, model in (("dense", dense), ("flex", flex)):
        out = alignvar_losses(model, hr, lr_up, label, generator=torch.Generator(device).manual_seed(1))
        out.total.backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        results[name] = (out.total.detach(), grads)
    torch.testing.assert_close(results["flex"][0], results["dense"][0], atol=0, rtol=RTOL)
    g_dense, g_flex = results["dense"][1], results["flex"][1]
    assert g_dense.keys() == g_flex.keys() and any(".attn.mat_qkv." in k for k in g_dense)
    for k in g_dense:
        scale = float(g_dense[k].abs().max())
        torch.testing.assert_close(g_flex[k], g_dense[k], atol=RTOL * max(scale, 1e-12), rtol=RTOL * 10, msg=k)
