"""The training-loss contract of ``methods.alignvar.hcc`` beyond the HCC formula (tests/test_sca_hcc.py): every
HCC knob of the config reaches ``hcc_per_scale``, the refiner loss is VARSR's composition with the caller's
generator, ``gradient_ratio`` handles losses that do not reach the logits, the exact error messages.

Tolerances: values computed twice along the same float32 path are compared bit for bit; a hand composition
of the same float32 operations uses ``assert_close``'s float32 defaults."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from methods.alignvar.hcc import (
    _reduce,
    alignvar_losses,
    gradient_ratio,
    hcc_per_scale,
    refiner_loss,
    teacher_input,
)
from methods.alignvar.scales import ScaleSchedule
from tests.tiny_models import make_tiny


def _pair(astronaut: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(HR, LR bicubic-upsampled back to 64 x 64), a batch of two 64 x 64 crops in [-1, 1]."""
    crops = [astronaut[:, 100 * i : 100 * i + 320, 60:380] for i in range(2)]
    hr = torch.stack([F.interpolate(c[None], size=(64, 64), mode="area")[0] for c in crops]) * 2 - 1
    lr = F.interpolate(F.interpolate(hr, scale_factor=0.25, mode="area"), size=(64, 64), mode="bicubic")
    return hr, lr


LABEL = torch.tensor([0, 1])
SCHEDULE = ScaleSchedule.for_size(64, 64)  # 1, 2, 3, 4 -> 4 scales, 30 tokens


# ------------------------------------------------------------------------------------------ config knobs
def test_reduction_and_space_of_the_config_reach_the_hcc_terms(astronaut):
    hr, lr = _pair(astronaut)
    model = make_tiny("none").train()
    q, tok = model.vqvae.quantize, model.vqvae.img_to_idx(hr, SCHEDULE)
    model.config.hcc.reduction = "mean"
    out = alignvar_losses(model, hr, lr, LABEL, refiner_weight=0.0)
    want = hcc_per_scale(out.logits.detach(), tok.f_hat, q, SCHEDULE, reduction="mean")
    torch.testing.assert_close(out.hcc_per_scale.detach(), want)
    model.config.hcc.reduction, model.config.hcc.space, model.config.hcc.pixel_scales = "sum", "pixel", (-1,)
    out = alignvar_losses(model, hr, lr, LABEL, refiner_weight=0.0)
    want = hcc_per_scale(
        out.logits.detach(), tok.f_hat, q, SCHEDULE, space="pixel", decode=model.vqvae.decode, scales=[3]
    )
    torch.testing.assert_close(out.hcc.detach(), want[3])
    latent = hcc_per_scale(out.logits.detach(), tok.f_hat, q, SCHEDULE)[3]
    assert not torch.allclose(want[3], latent)  # the two spaces give different numbers here
    model.config.hcc.space, model.config.hcc.temperature = "latent", 0.5
    out = alignvar_losses(model, hr, lr, LABEL, refiner_weight=0.0)
    want = hcc_per_scale(out.logits.detach(), tok.f_hat, q, SCHEDULE, temperature=0.5)
    torch.testing.assert_close(out.hcc_per_scale.detach(), want)
    assert not torch.allclose(want, hcc_per_scale(out.logits.detach(), tok.f_hat, q, SCHEDULE))  # tau matters
    model.config.hcc.relaxation, model.config.hcc.temperature = "straight_through", 1.0
    out = alignvar_losses(model, hr, lr, LABEL, refiner_weight=0.0)
    want = hcc_per_scale(out.logits.detach(), tok.f_hat, q, SCHEDULE, "straight_through")
    torch.testing.assert_close(out.hcc_per_scale.detach(), want)
    assert not torch.allclose(want, hcc_per_scale(out.logits.detach(), tok.f_hat, q, SCHEDULE))


def test_pixel_scales_apply_to_pixel_space_only(astronaut):
    hr, lr = _pair(astronaut)
    model = make_tiny("none").train()
    model.config.hcc.pixel_scales = (-1,)  # ignored in latent space: every scale has a term
    out = alignvar_losses(model, hr, lr, LABEL, refiner_weight=0.0)
    assert bool(torch.isfinite(out.hcc_per_scale).all())
    torch.testing.assert_close(out.hcc, out.hcc_per_scale.sum())


def _counting_decoder(model, calls: list[str]):
    decode = model.vqvae.decode

    def counted(z):
        calls.append("grad" if torch.is_grad_enabled() else "no_grad")
        return decode(z)

    model.vqvae.decode = counted


@pytest.mark.parametrize("checkpointing", [False, True])
def test_decoder_checkpointing_recomputes_each_pixel_decode_in_backward(astronaut, checkpointing):
    """Pixel HCC on the 4 scales: 4 target decodes (no grad) + 4 prediction decodes in the forward pass; the
    backward pass recomputes the 4 prediction decodes only with ``hcc.decoder_checkpointing`` (off by default,
    also in ``hcc_per_scale``)."""
    hr, lr = _pair(astronaut)
    model = make_tiny("none").train()
    model.config.hcc.space = "pixel"
    if checkpointing:
        model.config.hcc.decoder_checkpointing = True
    calls: list[str] = []
    _counting_decoder(model, calls)
    out = alignvar_losses(model, hr, lr, LABEL, refiner_weight=0.0)
    assert sorted(calls) == ["grad"] * 4 + ["no_grad"] * 4
    calls.clear()
    out.total.backward()
    assert len(calls) == (4 if checkpointing else 0)
    # hcc_per_scale's own default: no recompute
    tok = model.vqvae.img_to_idx(hr, SCHEDULE)
    logits = torch.randn(2, 30, 512, generator=torch.Generator().manual_seed(0)).requires_grad_()
    terms = hcc_per_scale(logits, tok.f_hat, model.vqvae.quantize, SCHEDULE, space="pixel", decode=model.vqvae.decode)
    calls.clear()
    terms.sum().backward()
    assert calls == []


def test_gradient_ratio_only_when_asked_and_total_at_lambda_one(astronaut):
    hr, lr = _pair(astronaut)
    model = make_tiny("none").train()
    out = alignvar_losses(model, hr, lr, LABEL, refiner_weight=0.0, hcc_lambda=1.0)
    assert out.hcc.requires_grad and out.gradient_ratio is None  # not measured unless asked
    assert out.refiner is None  # refiner_weight 0: no refiner loss


# -------------------------------------------------------------------------------------------- generators
def test_the_callers_generator_draws_the_random_sca_map_and_the_refiner_noise(astronaut):
    hr, lr = _pair(astronaut)
    model = make_tiny("random").train()
    assert model.transformer.diffloss is not None
    runs = [
        alignvar_losses(model, hr, lr, LABEL, generator=torch.Generator().manual_seed(5), refiner_weight=0.5)
        for _ in range(2)
    ]
    # (draws from the global RNG instead would differ between the two runs)
    assert torch.equal(runs[0].gate, runs[1].gate)
    assert torch.equal(runs[0].refiner, runs[1].refiner)
    x_in = teacher_input(model.vqvae.img_to_idx(hr, SCHEDULE).f_hat, SCHEDULE)
    with torch.no_grad():
        gate = model.sca(lr, x_in, SCHEDULE, torch.Generator().manual_seed(5))
    assert torch.equal(runs[0].gate, gate)
    # refiner_weight 0.5 (< 1) is on: total = ce + lambda * hcc + 0.5 * refiner
    torch.testing.assert_close(runs[0].total, runs[0].ce + runs[0].hcc + 0.5 * runs[0].refiner)


class _RecordingDiffLoss(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls: list[tuple] = []

    def training_loss(self, target, z, generator=None):
        self.calls.append((target, z, generator))
        return target.sum() * 0


def test_refiner_loss_is_varsrs_composition():
    """target = residual - E[argmax]; z = decoder_norm(h_last + word_embed(E[argmax])); the generator is passed."""
    model = make_tiny("none")
    tr = model.transformer
    fake = _RecordingDiffLoss()
    tr.diffloss = fake
    g = torch.Generator().manual_seed(0)
    n_last, cvae = 16, 16
    logits = torch.randn(2, 30, 512, generator=g)
    hidden = torch.randn(2, 30, tr.word_embed.out_features, generator=g)
    residual = torch.randn(2, n_last, cvae, generator=g)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        refiner_loss(model, logits, hidden, residual, SCHEDULE, gen)
    ((target, z, passed),) = fake.calls
    emb = model.vqvae.quantize.embedding.weight[logits[:, -n_last:].argmax(-1)]
    with torch.no_grad():
        want_z = tr.decoder_norm(hidden[:, -n_last:] + tr.word_embed(emb))
    torch.testing.assert_close(target, (residual - emb).reshape(-1, cvae))
    torch.testing.assert_close(z, want_z.reshape(-1, want_z.shape[-1]))
    assert passed is gen


# ------------------------------------------------------------------------------------------ gradient ratio
def test_gradient_ratio_of_losses_that_do_not_reach_the_logits():
    """HCC without a path to the logits: ratio 0 everywhere; CE without one: HCC / 0 = inf (docstring)."""
    logits = torch.randn(1, 30, 8, requires_grad=True)
    connected = (logits**2).sum()
    free = torch.ones((), requires_grad=True) * 2.0  # requires grad, independent of the logits
    zero = gradient_ratio(connected, free, logits, SCHEDULE)
    assert torch.equal(zero, torch.zeros(5))
    inf = gradient_ratio(free, connected, logits, SCHEDULE)
    assert bool(torch.isinf(inf).all())


# ---------------------------------------------------------------------------------------- errors / edges
def test_teacher_input_of_a_one_scale_schedule_is_empty():
    f0 = torch.randn(3, 16, 5, 7, dtype=torch.float64)  # batch 3, Cvae 16, spatial sizes unrelated to both
    out = teacher_input([f0], ScaleSchedule.from_sides([1]))
    assert out.shape == (3, 0, 16) and out.dtype == torch.float64


def test_hcc_errors_name_the_bad_value():
    model = make_tiny("none")
    q = model.vqvae.quantize
    logits = torch.zeros(1, 30, 512)
    f_hat = [torch.zeros(1, 16, 4, 4)] * 4
    with pytest.raises(ValueError, match=r"^3 HCC targets for a 4-scale schedule$"):
        hcc_per_scale(logits, f_hat[:3], q, SCHEDULE)
    with pytest.raises(ValueError, match=r"^unknown HCC space 'image'; valid choices: latent, pixel$"):
        hcc_per_scale(logits, f_hat, q, SCHEDULE, space="image")
    with pytest.raises(ValueError, match=r"^HCC in pixel space needs a decoder \(decode=vqvae\.decode\)$"):
        hcc_per_scale(logits, f_hat, q, SCHEDULE, space="pixel")
    with pytest.raises(ValueError, match=r"^unknown HCC reduction 'max'; valid choices: sum, mean$"):
        hcc_per_scale(logits, f_hat, q, SCHEDULE, reduction="max")
    with pytest.raises(ValueError, match=r"^unknown HCC reduction 'max'; valid choices: sum, mean$"):
        _reduce(torch.zeros(1, 2), "max")
    with pytest.raises(ValueError, match=r"^HCC scales \[4\] outside 0\.\.3$"):
        hcc_per_scale(logits, f_hat, q, SCHEDULE, scales=[0, 4])
    with pytest.raises(ValueError, match=r"^HCC scales \[-1\] outside 0\.\.3$"):
        hcc_per_scale(logits, f_hat, q, SCHEDULE, scales=[-1])
    with pytest.raises(
        ValueError, match=r"^unknown HCC relaxation 'gumbel'; valid choices: softmax, straight_through$"
    ):
        hcc_per_scale(logits, f_hat, q, SCHEDULE, "gumbel")
    none = hcc_per_scale(logits, f_hat, q, SCHEDULE, scales=[])
    assert none.shape == (4,) and bool(torch.isnan(none).all())  # no scale: a NaN per scale
    hr = torch.zeros(1, 3, 64, 64)
    with pytest.raises(
        ValueError, match=r"^lr_up \(1, 3, 32, 32\) must be upsampled to the HR shape \(1, 3, 64, 64\)$"
    ):
        alignvar_losses(model, hr, torch.zeros(1, 3, 32, 32), torch.tensor([0]))


def test_terms_after_the_last_wanted_scale_are_nan_and_the_prediction_keeps_its_dtype(astronaut):
    hr, _ = _pair(astronaut)
    model = make_tiny("none")
    q, tok = model.vqvae.quantize, model.vqvae.img_to_idx(hr, SCHEDULE)
    logits = torch.randn(2, 30, 512, generator=torch.Generator().manual_seed(2)) * 3
    full = hcc_per_scale(logits, tok.f_hat, q, SCHEDULE)
    one = hcc_per_scale(logits, tok.f_hat, q, SCHEDULE, scales=[1])
    assert one.shape == (4,) and [bool(torch.isnan(t)) for t in one] == [True, False, True, True]
    assert torch.equal(one[1], full[1])
    # float64 targets: the terms stay in the prediction's float32 (the target is cast, not the prediction)
    as64 = hcc_per_scale(logits, [f.double() for f in tok.f_hat], q, SCHEDULE)
    assert as64.dtype == torch.float32
    torch.testing.assert_close(as64, full)
