"""SCA and HCC pinned by closed forms: edge operators on a single bright pixel, the gating identity, the LR-only
structure map, HCC as a hand-written sum of per-scale squared errors, pixel-space HCC, the logged signals.

Tolerances: operators on exact small integers and the gating identity are bitwise; sums of float32 squares
compared with a float64 hand sum use rtol 1e-5 (float32 accumulation over <= 1e3 terms)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from harness.training.alignvar import scalar_logs
from methods.alignvar.hcc import alignvar_losses, gradient_ratio, hcc_per_scale, relaxed_embedding, teacher_input
from methods.alignvar.sca import (
    SCAGate,
    gate_statistics,
    laplacian_magnitude,
    sobel_magnitude,
    structure_maps,
)
from methods.alignvar.scales import ScaleSchedule
from tests.tiny_models import make_tiny


def _bright_pixel(h: int = 9, w: int = 9, r: int = 4, c: int = 4) -> torch.Tensor:
    """A black image in [-1, 1] with one white pixel at (r, c): luma 0 everywhere, 1 there."""
    img = torch.full((1, 3, h, w), -1.0)
    img[..., r, c] = 1.0
    return img


def _photo(astronaut: torch.Tensor, size: int = 64, batch: int = 2, offset: int = 0) -> torch.Tensor:
    crops = [astronaut[:, 100 * i + offset : 100 * i + offset + 320, 60:380] for i in range(batch)]
    return torch.stack([F.interpolate(c[None], size=(size, size), mode="area")[0] for c in crops]) * 2 - 1


# ------------------------------------------------------------------------------------------------ SCA maps
def test_laplacian_of_a_single_bright_pixel():
    out = laplacian_magnitude(_bright_pixel())[0, 0]
    want = torch.zeros(9, 9)
    want[4, 4] = 4.0
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        want[4 + dr, 4 + dc] = 1.0
    assert torch.equal(out, want)


def test_sobel_of_a_single_bright_pixel():
    out = sobel_magnitude(_bright_pixel())[0, 0]
    want = torch.zeros(9, 9)
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        want[4 + dr, 4 + dc] = 2.0  # one Sobel derivative is +-2 there, the other 0
    for dr in (-1, 1):
        for dc in (-1, 1):
            want[4 + dr, 4 + dc] = math.sqrt(2.0)  # both derivatives are +-1 on the diagonals
    torch.testing.assert_close(out, want, atol=1e-7, rtol=0)
    # a vertical step edge: |Gx| = 4 on the two columns beside it, Gy = 0 (replicate padding, no border effect)
    step = torch.full((1, 3, 6, 6), -1.0)
    step[..., 3:] = 1.0
    edge = sobel_magnitude(step)[0, 0]
    assert torch.equal(edge[:, 2:4], torch.full((6, 2), 4.0)) and edge[:, :2].abs().sum() == 0


def test_each_mask_input_does_what_its_name_says(astronaut):
    schedule = ScaleSchedule.for_size(64, 64)
    lr = _photo(astronaut)
    for mode, op in (("laplacian", laplacian_magnitude), ("sobel", sobel_magnitude)):
        maps = structure_maps(lr, schedule, mode)
        finest = F.interpolate(op(lr), size=schedule.latent_hw, mode="area").flatten(1)
        lo, hi = finest.amin(1, keepdim=True), finest.amax(1, keepdim=True)
        torch.testing.assert_close(maps[-1][..., 0], (finest - lo) / (hi - lo), atol=1e-6, rtol=0)
    lap, sob = structure_maps(lr, schedule, "laplacian")[-1], structure_maps(lr, schedule, "sobel")[-1]
    assert not torch.allclose(lap, sob, atol=1e-2)  # two different operators
    g = torch.Generator().manual_seed(3)
    rnd = structure_maps(lr, schedule, "random", g)[-1]
    noise = torch.rand((2, 1, 64, 64), generator=torch.Generator().manual_seed(3))
    raw = F.interpolate(noise, size=schedule.latent_hw, mode="area").flatten(1)
    lo, hi = raw.amin(1, keepdim=True), raw.amax(1, keepdim=True)
    torch.testing.assert_close(rnd[..., 0], (raw - lo) / (hi - lo), atol=1e-6, rtol=0)  # the image plays no part
    assert make_tiny("none").sca is None  # none = SCA off: no gate module at all
    for mode in ("laplacian", "sobel", "random"):
        assert make_tiny(mode).sca.mask_input == mode
    with pytest.raises(ValueError, match="valid choices: laplacian, sobel, random, none"):
        SCAGate(16, mask_input="canny")


# ------------------------------------------------------------------------------------------------ SCA gate
def test_gated_forward_equals_the_plain_forward_of_scaled_tokens(astronaut):
    """``forward(x, gate=g) == forward((1 + g) * x, gate=None)``, bit for bit: the paper's (1 + m) * r."""
    model = make_tiny("laplacian")
    schedule = ScaleSchedule.for_size(64, 64)
    lr = _photo(astronaut)
    g = torch.Generator().manual_seed(0)
    x_in = torch.randn(2, schedule.total_tokens - 1, 16, generator=g)
    gate = torch.rand(2, schedule.total_tokens - 1, 1, generator=g)
    label = torch.tensor([0, 1])
    with torch.no_grad():
        gated = model.transformer(lr, label, x_in, schedule, sca_gate=gate)
        scaled = model.transformer(lr, label, (1 + gate) * x_in, schedule, sca_gate=None)
        plain = model.transformer(lr, label, x_in, schedule, sca_gate=None)
    assert torch.equal(gated, scaled)
    assert not torch.allclose(gated, plain)


def test_training_gate_comes_from_the_lr_image_only(astronaut):
    """With the gate MLP blind to the tokens, the gate is a function of the structure map alone: unchanged when
    only the HR image changes, changed when the LR image changes."""
    model = make_tiny("laplacian").train()
    with torch.no_grad():
        model.sca.mlp[0].weight[:, :16] = 0  # the 16 token channels; the last input is s_k
    hr_a, hr_b = _photo(astronaut), _photo(astronaut, offset=40)
    lr = F.interpolate(F.interpolate(hr_a, scale_factor=0.25, mode="area"), size=(64, 64), mode="bicubic")
    kw = dict(refiner_weight=0.0, hcc_lambda=0.0)
    a = alignvar_losses(model, hr_a, lr, torch.tensor([0, 0]), **kw)
    b = alignvar_losses(model, hr_b, lr, torch.tensor([0, 0]), **kw)
    c = alignvar_losses(model, hr_a, lr.flip(-1), torch.tensor([0, 0]), **kw)
    assert not torch.equal(a.logits, b.logits)  # the HR (teacher input) did change
    assert torch.equal(a.gate, b.gate)
    assert not torch.allclose(a.gate, c.gate)


def test_gate_statistics_closed_form():
    schedule = ScaleSchedule.from_sides([1, 2, 3])  # gated inputs: 4 (2x2) + 9 (3x3)
    gate = torch.zeros(2, 13, 1)
    gate[0, :4, 0] = torch.tensor([0.2, 0.4, 0.6, 0.8])
    gate[1, :4, 0] = 0.5  # exactly 0.5 is not "open"
    gate[:, 4:, 0] = 0.9
    st = gate_statistics(gate, schedule)
    vals = torch.tensor([0.2, 0.4, 0.6, 0.8, 0.5, 0.5, 0.5, 0.5])
    torch.testing.assert_close(st["gate_mean_s1"], vals.mean())
    torch.testing.assert_close(st["gate_std_s1"], vals.std(unbiased=False))
    assert float(st["gate_open_s1"]) == 2 / 8 and float(st["gate_open_s2"]) == 1.0
    torch.testing.assert_close(st["gate_mean_s2"], torch.tensor(0.9))
    torch.testing.assert_close(st["gate_mean"], (vals.sum() + 18 * 0.9) / 26)
    assert float(st["gate_open"]) == pytest.approx((2 + 18) / 26, rel=1e-6)  # a float32 mean
    with pytest.raises(ValueError, match="gate has 12 tokens; schedule 1_2_3 has 13 inputs"):
        gate_statistics(gate[:, :12], schedule)


# --------------------------------------------------------------------------------------------------- HCC
def _hand_hcc(logits, f_hat, quantizer, schedule, reduction="sum"):
    """HCC written out: u_k = u_{k-1} + embed_scale(k, softmax(l_k) @ E); sum over scales of the per-image
    squared L2 norm of u_k - F_k averaged over the batch (float64)."""
    E = quantizer.embedding.weight.double()
    total, u = 0.0, 0.0
    for k, ((b, e), (h, w)) in enumerate(zip(schedule.begin_ends, schedule.patch_nums)):
        emb = torch.softmax(logits[:, b:e].double(), -1) @ E  # (B, n_k, Cvae)
        up = quantizer.embed_scale(k, emb.float().transpose(1, 2).reshape(logits.shape[0], -1, h, w), schedule)
        u = u + up.double()
        sq = (u - f_hat[k].double()) ** 2
        total += float(sq.sum((1, 2, 3)).mean() if reduction == "sum" else sq.mean())
    return total


def test_hcc_is_the_sum_over_scales_of_per_image_squared_l2_errors(astronaut):
    model = make_tiny("none")
    schedule = ScaleSchedule.for_size(64, 64)
    tok = model.vqvae.img_to_idx(_photo(astronaut), schedule)
    logits = torch.randn(2, schedule.total_tokens, 512, generator=torch.Generator().manual_seed(1)) * 3
    q = model.vqvae.quantize
    for reduction in ("sum", "mean"):
        terms = hcc_per_scale(logits, tok.f_hat, q, schedule, reduction=reduction)
        assert float(terms.sum()) == pytest.approx(_hand_hcc(logits, tok.f_hat, q, schedule, reduction), rel=1e-5)
    terms = hcc_per_scale(logits, tok.f_hat, q, schedule)
    means = hcc_per_scale(logits, tok.f_hat, q, schedule, reduction="mean")
    numel = tok.f_hat[0][0].numel()  # C x H x W = 16 x 4 x 4 for every scale (u_k lives on the full grid)
    torch.testing.assert_close(terms, means * numel, rtol=1e-5, atol=0)


def test_losses_hcc_is_logged_at_lambda_zero_and_matches_the_terms(astronaut):
    model = make_tiny("laplacian").train()
    hr = _photo(astronaut)
    lr = F.interpolate(F.interpolate(hr, scale_factor=0.25, mode="area"), size=(64, 64), mode="bicubic")
    on = alignvar_losses(model, hr, lr, torch.tensor([0, 1]), refiner_weight=0.0, hcc_lambda=1.0)
    off = alignvar_losses(model, hr, lr, torch.tensor([0, 1]), refiner_weight=0.0, hcc_lambda=0.0)
    torch.testing.assert_close(off.hcc, on.hcc.detach())  # the same HCC, only not trained at lambda 0
    assert float(off.hcc) > 0 and not off.hcc.requires_grad and on.hcc.requires_grad
    torch.testing.assert_close(on.total, on.ce + on.hcc)
    assert torch.equal(off.total, off.ce)
    torch.testing.assert_close(on.hcc, on.hcc_per_scale.sum())
    tok = model.vqvae.img_to_idx(hr)
    sched = ScaleSchedule.for_size(64, 64)
    want = _hand_hcc(on.logits.detach(), tok.f_hat, model.vqvae.quantize, sched)
    assert float(on.hcc.detach()) == pytest.approx(want, rel=1e-5)


def test_gradient_ratio_and_logged_share(astronaut):
    model = make_tiny("laplacian").train()
    hr = _photo(astronaut)
    lr = F.interpolate(F.interpolate(hr, scale_factor=0.25, mode="area"), size=(64, 64), mode="bicubic")
    out = alignvar_losses(model, hr, lr, torch.tensor([0, 1]), refiner_weight=0.0, measure_gradients=True)
    sched = out.schedule
    g_ce = torch.autograd.grad(out.ce, out.logits, retain_graph=True)[0]
    g_hcc = torch.autograd.grad(out.hcc, out.logits, retain_graph=True)[0]
    want = [g_hcc[:, b:e].norm() / g_ce[:, b:e].norm() for b, e in sched.begin_ends] + [g_hcc.norm() / g_ce.norm()]
    torch.testing.assert_close(out.gradient_ratio, torch.stack(want))
    torch.testing.assert_close(gradient_ratio(out.ce, out.hcc, out.logits, sched), torch.stack(want))
    logs = scalar_logs(out, hcc_lambda=0.25)
    torch.testing.assert_close(logs["hcc_share"], 0.25 * want[-1])
    torch.testing.assert_close(logs["hcc_share_s2"], 0.25 * want[2])
    torch.testing.assert_close(logs["hcc_grad_ratio"], want[-1])
    assert {"gate_mean", "gate_std", "gate_open", "gate_mean_s1", "gate_open_s3"} <= set(logs)
    assert "gate_mean_s0" not in logs  # scale 0 is the class slot: never gated
    out.total.backward()  # the training backward still runs after the measurement
    # at lambda = 0 the ratio is still measured (HCC gets a graph for it), the share is 0
    off = alignvar_losses(
        model, hr, lr, torch.tensor([0, 1]), refiner_weight=0.0, hcc_lambda=0.0, measure_gradients=True
    )
    assert off.gradient_ratio is not None and float(off.gradient_ratio[-1]) > 0
    assert float(scalar_logs(off, 0.0)["hcc_share"]) == 0.0


def test_pixel_hcc_zero_for_exact_tokens_gradient_to_logits_not_to_the_vqvae(astronaut):
    model = make_tiny("none").train()
    model.config.hcc.space = "pixel"
    schedule = ScaleSchedule.for_size(64, 64)
    tok = model.vqvae.img_to_idx(_photo(astronaut), schedule)
    q, V = model.vqvae.quantize, 512
    exact = F.one_hot(torch.cat(tok.idx, 1), V).float() * 30.0
    zero = hcc_per_scale(exact, tok.f_hat, q, schedule, "straight_through", space="pixel", decode=model.vqvae.decode)
    assert float(zero.abs().max()) == 0.0
    logits = (exact + torch.randn(exact.shape, generator=torch.Generator().manual_seed(0)) * 10).requires_grad_()
    previous: tuple[torch.Tensor, torch.Tensor] | None = None
    for scales, ckpt in ((None, False), ((1, -1), False), ((1, -1), True)):
        logits.grad = None
        terms = hcc_per_scale(
            logits,
            tok.f_hat,
            q,
            schedule,
            space="pixel",
            decode=model.vqvae.decode,
            scales=None if scales is None else [k % 4 for k in scales],
            checkpoint_decoder=ckpt,
        )
        wanted = range(4) if scales is None else (1, 3)
        assert [bool(torch.isnan(t)) for t in terms] == [k not in wanted for k in range(4)]
        total = terms[list(wanted)].sum()
        total.backward()
        assert logits.grad is not None and float(logits.grad.abs().sum()) > 0
        assert all(p.grad is None for p in model.vqvae.parameters())  # the frozen tokenizer gets nothing
        if scales is not None:
            grads = logits.grad.clone()
            if ckpt:  # recomputing the decodes changes neither the value nor the gradient
                assert previous is not None
                torch.testing.assert_close(total.detach(), previous[0], rtol=1e-6, atol=0)
                torch.testing.assert_close(grads, previous[1], rtol=1e-5, atol=1e-9)
            previous = (total.detach(), grads)
    # each pixel term: squared error of the decoded images summed over 3 x H x W, averaged over the batch
    with torch.no_grad():
        u = 0.0
        for k in range(4):
            b, e = schedule.begin_ends[k]
            h, w = schedule.patch_nums[k]
            emb = relaxed_embedding(logits[:, b:e], q.embedding.weight)
            u = u + q.embed_scale(k, emb.transpose(1, 2).reshape(2, -1, h, w), schedule)
        diff = model.vqvae.decode(u) - model.vqvae.decode(tok.f_hat[-1])
        last = hcc_per_scale(logits, tok.f_hat, q, schedule, space="pixel", decode=model.vqvae.decode)[-1]
    torch.testing.assert_close(last, diff.pow(2).sum((1, 2, 3)).mean(), rtol=1e-5, atol=0)


def test_pixel_scales_knob_and_losses(astronaut):
    from methods.alignvar.configs import HCCConfig

    assert HCCConfig(pixel_scales=[-1, 0]).pixel_scale_set(10) == (0, 9)
    assert HCCConfig().pixel_scale_set(4) == (0, 1, 2, 3)
    with pytest.raises(ValueError, match=r"hcc.pixel_scales \[4\] outside the 4-scale schedule"):
        HCCConfig(pixel_scales=[4]).pixel_scale_set(4)
    model = make_tiny("none").train()
    model.config.hcc.space, model.config.hcc.pixel_scales = "pixel", (-1,)
    hr = _photo(astronaut)
    out = alignvar_losses(model, hr, hr, torch.tensor([0, 1]), refiner_weight=0.0)
    assert torch.isnan(out.hcc_per_scale[:3]).all() and torch.isfinite(out.hcc)
    torch.testing.assert_close(out.hcc, out.hcc_per_scale[-1])
    out.total.backward()
    assert all(p.grad is None for p in model.vqvae.parameters())


def test_teacher_input_matches_the_quantizer(astronaut):
    model = make_tiny("none")
    schedule = ScaleSchedule.for_size(64, 96)
    tok = model.vqvae.img_to_idx(F.interpolate(_photo(astronaut), size=(64, 96), mode="area"), schedule)
    torch.testing.assert_close(
        teacher_input(tok.f_hat, schedule), model.vqvae.quantize.idx_to_var_input(tok.idx, schedule)
    )
