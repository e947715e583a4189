"""Properties of the AlignVAR model on the ``tiny`` architecture (random weights; float32).

Tolerances: KV-cached vs masked full-sequence logits atol 1e-5 (same arithmetic, different batching);
causality and the SCA-off identity are bitwise; HCC zero-cases < 1e-12 (straight-through is exact in the
forward pass). Random weights are fine here: these are structural properties, not quality numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math

import pytest
import torch
import torch.nn.functional as F

from harness.core.mapping import ConfigError, from_dict
from harness.core.registry import create
from harness.core.tiling import tiled_upscale
from methods.adapters.alignvar import AlignVARMethod, AlignVARMethodConfig, MissingCheckpointError, VARSRMethodConfig
from methods.alignvar.colorfix import adain_color_fix
from methods.alignvar.configs import ARCHS, AlignVARConfig, SCAConfig, TransformerConfig, varsr_transformer
from methods.alignvar.hcc import alignvar_losses, ce_per_scale, hcc_per_scale, relaxed_embedding, teacher_input
from methods.alignvar.model import AlignVAR, upsample_bicubic
from methods.alignvar.refiner import DiffusionRefiner
from methods.alignvar.rope import apply_rope, rope_table, token_positions
from methods.alignvar.sampling import filter_top_k_top_p, guidance_ramp, sample_logits
from methods.alignvar.sca import SCAGate, minmax_per_image, structure_maps
from methods.alignvar.scales import ScaleSchedule
from methods.alignvar.transformer import VARTransformer, level_rows
from tests.tiny_models import make_tiny


@pytest.fixture(scope="module")
def tiny() -> AlignVAR:
    return make_tiny("laplacian")


def _image(astronaut: torch.Tensor, h: int, w: int, batch: int = 2) -> torch.Tensor:
    """Real image content in [-1, 1] (astronaut crops, area-resized)."""
    crops = [astronaut[:, 100 * i : 100 * i + 320, 60 : 60 + 320 * w // h] for i in range(batch)]
    return torch.stack([F.interpolate(c[None], size=(h, w), mode="area")[0] for c in crops]) * 2 - 1


# ----------------------------------------------------------------------------------------------- inference
@pytest.mark.parametrize("size", [(64, 64), (64, 96)])
def test_kv_cached_inference_equals_masked_forward(tiny: AlignVAR, astronaut: torch.Tensor, size) -> None:
    lr = _image(astronaut, *size)
    schedule = ScaleSchedule.for_size(*size)
    seen: dict[int, torch.Tensor] = {}

    def record(k: int, idx: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        seen[k] = logits.clone()
        return idx

    gen = torch.Generator().manual_seed(3)
    _, out = tiny.generate(
        lr,
        cfg=3.0,
        top_k=0,
        top_p=0.0,
        generator=gen,
        use_refiner=False,
        token_hook=record,
        return_tokens=True,
    )
    assert len(set(torch.cat(out.tokens, 1).flatten().tolist())) > 5  # sampled, not a constant sequence
    x_in = tiny.vqvae.quantize.idx_to_var_input(out.tokens, schedule)
    gate = tiny.sca(lr, x_in, schedule)
    with torch.no_grad():
        cond, h_cond = tiny.transformer(lr, torch.zeros(2, dtype=torch.long), x_in, schedule, gate, True)
        neg = tiny.transformer(lr, torch.ones(2, dtype=torch.long), x_in, schedule, gate)
        z = tiny.transformer.decoder_norm(
            h_cond[:, -schedule.tokens_per_scale[-1] :]
            + tiny.transformer.word_embed(tiny.vqvae.quantize.embedding(out.tokens[-1]))
        )
    for k, (t, (b, e)) in enumerate(zip(guidance_ramp(3.0, schedule.num_scales), schedule.begin_ends)):
        expected = (1 + t) * cond[:, b:e] - t * neg[:, b:e]
        torch.testing.assert_close(seen[k], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.refiner_z, z, atol=1e-5, rtol=0)


def test_causality_later_tokens_never_change_earlier_logits(tiny: AlignVAR, astronaut: torch.Tensor) -> None:
    schedule = ScaleSchedule.for_size(64, 96)
    lr = _image(astronaut, 64, 96)
    g = torch.Generator().manual_seed(0)
    V = tiny.transformer.cfg.vocab
    tokens = [torch.randint(V, (2, n), generator=g) for n in schedule.tokens_per_scale]
    q = tiny.vqvae.quantize

    def logits(toks):
        x_in = q.idx_to_var_input(toks, schedule)
        with torch.no_grad():
            return tiny.transformer(lr, torch.tensor([0, 1]), x_in, schedule, tiny.sca(lr, x_in, schedule))

    base = logits(tokens)
    for k in range(schedule.num_scales - 1):  # the last scale's tokens feed no input
        changed = list(tokens)
        changed[k] = (tokens[k] + 1 + torch.randint(V - 1, tokens[k].shape, generator=g)) % V
        out = logits(changed)
        end = schedule.begin_ends[k][1]
        assert torch.equal(out[:, :end], base[:, :end]), f"changing scale {k} altered logits of scales <= {k}"
        assert not torch.allclose(out[:, end:], base[:, end:]), "later scales must see the change"


def test_sca_none_is_bitwise_the_plain_varsr_model(tiny: AlignVAR, astronaut: torch.Tensor, tmp_path) -> None:
    path = tiny.save(tmp_path / "with_sca.safetensors")
    cfg = AlignVARConfig(arch="auto", checkpoint=str(path), sca=SCAConfig("none"))
    plain = AlignVAR.from_pretrained(path, config=cfg)
    assert plain.sca is None and any("ignored" in n for n in plain.load_notes)
    lr = _image(astronaut, 64, 64)
    out = plain.generate(lr, generator=torch.Generator().manual_seed(1))
    # the VARSR pipeline by hand, from the SCA model's own transformer/VQ-VAE (same weights), no gate anywhere
    gen = tiny.transformer.generate(
        lr,
        tiny.vqvae.quantize,
        cfg=6.0,
        top_k=1,
        top_p=0.75,
        generator=torch.Generator().manual_seed(1),
        sca=None,
    )
    with torch.no_grad():
        ref = (tiny.vqvae.decode(gen.f_hat).clamp(-1, 1) + 1) / 2
    assert torch.equal(out, ref)
    gated = tiny.generate(lr, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(gated, ref)  # the toggle is not a no-op when SCA is on
    # teacher forcing: the loss path without SCA calls the transformer with no gate
    hr = _image(astronaut, 64, 64)
    with torch.no_grad():
        lo = alignvar_losses(plain, hr, lr, torch.tensor([0, 1]), refiner_weight=0.0)
        tok = plain.vqvae.img_to_idx(hr)
        logits = plain.transformer(lr, torch.tensor([0, 1]), teacher_input(tok.f_hat, ScaleSchedule.for_size(64, 64)))
    assert torch.equal(lo.logits, logits)


def test_non_square_and_odd_sizes_end_to_end(tiny: AlignVAR, astronaut: torch.Tensor) -> None:
    lr01 = (_image(astronaut, 16, 24, batch=1) + 1) / 2
    sr = tiny.upscale(lr01)
    assert sr.shape == (1, 3, 64, 96) and 0 <= float(sr.min()) and float(sr.max()) <= 1
    odd = tiny.upscale(lr01[..., :15, :21])  # padded to 16x24 inside, cropped back
    assert odd.shape == (1, 3, 60, 84)
    hr = _image(astronaut, 64, 96)
    lo = alignvar_losses(tiny, hr, hr.flip(-1), torch.tensor([0, 1]))
    assert lo.logits.shape == (2, ScaleSchedule.for_size(64, 96).total_tokens, 512)
    assert torch.isfinite(lo.total)


def test_tiled_upscale(tiny: AlignVAR, astronaut: torch.Tensor) -> None:
    lr01 = (_image(astronaut, 32, 48, batch=1) + 1) / 2
    whole = tiny.upscale(lr01)

    def tiler(tile: int, overlap: int):
        return functools.partial(tiled_upscale, scale=1, tile=tile, overlap=overlap, ramp=1.0)

    assert torch.equal(tiny.upscale(lr01, tiler=tiler(256, 32)), whole)  # one tile covers the image: identical
    tiled = tiny.upscale(lr01, tiler=tiler(64, 32))
    assert tiled.shape == whole.shape == (1, 3, 128, 192) and torch.isfinite(tiled).all()
    # the tiles are the shared tiler's (tests/test_spandrel_adapter.py has its closed forms): 64-px output tiles
    # of the upsampled LR, 32 px cross-faded, generated row-major from one generator stream
    gen = torch.Generator().manual_seed(tiny.config.seed)
    lr_up = upsample_bicubic(lr01, (128, 192)) * 2 - 1
    manual = tiled_upscale(lambda crop: tiny.generate(crop, generator=gen), lr_up, 1, 64, 32, ramp=1.0)
    torch.testing.assert_close(tiled, adain_color_fix(manual, upsample_bicubic(lr01, (128, 192))).clamp(0, 1))


def test_generation_options_defaults_reference_path_and_hook(tiny: AlignVAR, astronaut: torch.Tensor) -> None:
    """``VARTransformer.generate``: the documented defaults, CFG off ignores the negative label, the class label
    and the negative label reach the logits, the uncached reference path gives the same result, the token hook
    replaces the tokens, the refiner adds to the tokens' latent (and is refused without a refiner)."""
    tr, q = tiny.transformer, tiny.vqvae.quantize
    lr = _image(astronaut, 64, 64, batch=1)
    gate = tiny.sca.gate_fn(tiny.sca.guidance(lr, ScaleSchedule.for_size(64, 64)))

    def run(**kw):
        seen: list[torch.Tensor] = []
        hook = kw.pop("token_hook", None)

        def record(k, idx, logits):
            seen.append(logits.clone())
            return idx if hook is None else hook(k, idx, logits)

        out = tr.generate(lr, q, sca=gate, generator=torch.Generator().manual_seed(5), token_hook=record, **kw)
        return out, seen

    explicit = dict(cfg=6.0, top_k=1, top_p=0.75, temperature=1.0, label=0, neg_label=1, refiner_temperature=1.0)
    default, d_logits = run()
    same, s_logits = run(use_refiner=True, kv_cache=True, **explicit)
    assert all(torch.equal(a, b) for a, b in zip(d_logits, s_logits))
    assert torch.equal(default.f_hat, same.f_hat)  # refiner on by default
    assert not torch.equal(default.f_hat, default.f_hat_tokens)
    assert torch.equal(default.f_hat_tokens, q.cumulative_targets(default.tokens, ScaleSchedule.for_size(64, 64))[-1])
    assert default.refiner_z.shape == (1, 16, tr.word_embed.out_features)  # the conditional branch only
    # the uncached reference path: the same logits (up to batching) and tokens
    ref, r_logits = run(use_refiner=False, kv_cache=False)
    assert all(torch.equal(a, b) for a, b in zip(ref.tokens, default.tokens))
    for a, b in zip(r_logits, d_logits):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert torch.equal(ref.f_hat, default.f_hat_tokens)
    via_reference = tr.generate_reference(lr, q, sca=gate, use_refiner=False, generator=torch.Generator())
    assert all(torch.equal(a, b) for a, b in zip(via_reference.tokens, default.tokens))
    # CFG off: the negative label plays no part; with CFG the labels do
    _, la = run(cfg=0.0, neg_label=1, use_refiner=False)
    _, lb = run(cfg=0.0, neg_label=0, use_refiner=False)
    assert all(torch.equal(a, b) for a, b in zip(la, lb))
    _, other_neg = run(neg_label=0, use_refiner=False)
    _, other_label = run(label=1, use_refiner=False)
    assert not torch.allclose(other_neg[-1], d_logits[-1]) and not torch.allclose(other_label[-1], d_logits[-1])
    assert not torch.allclose(la[-1], d_logits[-1])  # cfg 0 differs from the guided default
    _, half = run(cfg=0.5, use_refiner=False)
    assert not torch.allclose(half[-1], la[-1])  # any cfg > 0 guides, 0.5 included
    # unguided refiner: f_hat = tokens' latent + the refiner's unguided sample on the condition z (greedy tokens
    # draw nothing, so the refiner's noise comes from the fresh generator)
    unguided, _ = run(cfg=0.0, refiner_temperature=0.7)
    with torch.no_grad():
        delta = tr.diffloss.sample(unguided.refiner_z[0], None, 0.7, torch.Generator().manual_seed(5))
    want = unguided.f_hat_tokens + delta.T.reshape(1, -1, 4, 4)
    assert torch.equal(unguided.f_hat, want)
    # the hook's tokens are the ones used (and fed back)
    zeros, _ = run(use_refiner=False, token_hook=lambda k, idx, logits: torch.zeros_like(idx))
    assert all(int(t.abs().sum()) == 0 for t in zeros.tokens)
    assert torch.equal(zeros.f_hat, q.cumulative_targets(zeros.tokens, ScaleSchedule.for_size(64, 64))[-1])
    # the guided refiner: both branches' conditions, guidance t_{K-1} = cfg, the temperature and the generator
    calls = []
    sample = tr.diffloss.sample

    def spy(z, cfg, temperature=1.0, generator=None, **kw):
        calls.append((tuple(z.shape), cfg, temperature, generator))
        return sample(z, cfg, temperature=temperature, generator=generator, **kw)

    tr.diffloss.sample = spy
    try:
        g = torch.Generator().manual_seed(5)
        tr.generate(lr, q, sca=gate, generator=g, cfg=3.0, refiner_temperature=0.7)
    finally:
        del tr.diffloss.sample
    assert calls == [((2 * 16, tr.word_embed.out_features), 3.0, 0.7, g)]
    bare = make_tiny("none", transformer=dataclasses.replace(ARCHS["tiny"].transformer, with_refiner=False))
    msg = r"^use_refiner=True but this transformer has no diffusion refiner \(diffloss\)$"
    with pytest.raises(ValueError, match=msg):
        bare.transformer.generate(lr, bare.vqvae.quantize)


def test_generation_follows_a_given_schedule_and_the_reference_path_recomputes(
    tiny: AlignVAR, astronaut: torch.Tensor
) -> None:
    """``generate`` uses the schedule it is given (positionally, also through ``generate_reference``) instead of
    the LR size's own; ``generate_reference`` recomputes the whole prefix at every scale (no KV cache); the
    default temperature is 1 (it matters once sampling is not greedy)."""
    tr, q = tiny.transformer, tiny.vqvae.quantize
    lr = _image(astronaut, 64, 64, batch=1)
    sched = ScaleSchedule.from_sides([1, 2, 4])
    assert sched != ScaleSchedule.for_size(64, 64)
    out = tr.generate(lr, q, sched, use_refiner=False)
    assert [tuple(t.shape) for t in out.tokens] == [(1, 1), (1, 4), (1, 16)]
    lengths: list[int] = []
    recompute = tr._recompute_step

    def spy(seq, *args):
        lengths.append(sum(x.shape[1] for x in seq))
        return recompute(seq, *args)

    tr._recompute_step = spy
    try:
        ref = tr.generate_reference(lr, q, sched, use_refiner=False)
    finally:
        del tr._recompute_step
    assert lengths[1:] == [lengths[0] + 4, lengths[0] + 4 + 16]  # one full recompute per scale
    assert all(torch.equal(a, b) for a, b in zip(ref.tokens, out.tokens, strict=True))

    def sampled(**kw):
        return tr.generate(
            lr, q, sched, top_k=8, top_p=1.0, use_refiner=False, generator=torch.Generator().manual_seed(2), **kw
        )

    default, one, two = sampled(), sampled(temperature=1.0), sampled(temperature=2.0)
    assert all(torch.equal(a, b) for a, b in zip(default.tokens, one.tokens, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(two.tokens, one.tokens, strict=True))


def test_generation_on_frozen_adaln_tables_matches_both_paths(tiny: AlignVAR, astronaut: torch.Tensor) -> None:
    """After ``freeze_adaln`` (the projections replaced by per-class tables) the cached and the reference path
    read every AdaLN parameter from the tables and give the unfrozen model's tokens (one image with CFG)."""
    frozen = copy.deepcopy(tiny.transformer)
    frozen.freeze_adaln()
    assert frozen.adaln_frozen
    q, lr = tiny.vqvae.quantize, _image(astronaut, 64, 64, batch=1)
    want = tiny.transformer.generate(lr, q, use_refiner=False).tokens
    for kv_cache in (True, False):
        got = frozen.generate(lr, q, use_refiner=False, kv_cache=kv_cache).tokens
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


# ----------------------------------------------------------------------------------------------- losses
def test_hcc_zero_iff_prediction_matches_target(tiny: AlignVAR, astronaut: torch.Tensor) -> None:
    schedule = ScaleSchedule.for_size(64, 64)
    tok = tiny.vqvae.img_to_idx(_image(astronaut, 64, 64), schedule)
    q, V = tiny.vqvae.quantize, tiny.transformer.cfg.vocab
    exact = F.one_hot(torch.cat(tok.idx, 1), V).float() * 30.0
    st = hcc_per_scale(exact, tok.f_hat, q, schedule, "straight_through")
    soft = hcc_per_scale(exact, tok.f_hat, q, schedule, "softmax", temperature=0.05)
    assert float(st.abs().max()) < 1e-12 and float(soft.abs().max()) < 1e-12
    # one wrong token of image 0 at the last scale (no phi, no resize): only the last term, the squared L2 norm
    # of image 0's error averaged over the batch of 2 (reduction 'sum', the default) = ||E_j - E_i||^2 / 2
    wrong = exact.clone()
    pos = schedule.begin_ends[-1][0] + 5
    i = int(torch.cat(tok.idx, 1)[0, pos])
    j = (i + 1) % V
    wrong[0, pos] = F.one_hot(torch.tensor(j), V).float() * 30.0
    terms = hcc_per_scale(wrong, tok.f_hat, q, schedule, "straight_through")
    E = q.embedding.weight
    expected = (E[j] - E[i]).pow(2).sum() / 2
    assert float(terms[:-1].abs().max()) < 1e-12
    torch.testing.assert_close(terms[-1], expected, rtol=1e-5, atol=0)
    # reduction 'mean': the same error over all B x Cvae x H x W elements
    mean_terms = hcc_per_scale(wrong, tok.f_hat, q, schedule, "straight_through", reduction="mean")
    torch.testing.assert_close(mean_terms[-1], expected * 2 / tok.f_hat[-1].numel(), rtol=1e-5, atol=0)
    # a wrong first-scale token propagates into every cumulative term
    first = exact.clone()
    first[:, 0] = F.one_hot(torch.cat(tok.idx, 1)[:, 0] + 1, V).float() * 30.0
    assert bool((hcc_per_scale(first, tok.f_hat, q, schedule, "straight_through") > 0).all())


def test_relaxations_and_ce_closed_forms() -> None:
    codebook = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    logits = torch.tensor([[[math.log(1.0), math.log(3.0), -math.inf]]])  # softmax = (0.25, 0.75, 0)
    torch.testing.assert_close(relaxed_embedding(logits, codebook), torch.tensor([[[0.25, 1.5]]]))
    torch.testing.assert_close(relaxed_embedding(logits, codebook, "straight_through"), torch.tensor([[[0.0, 2.0]]]))
    schedule = ScaleSchedule.from_sides([1, 2])
    logits = torch.zeros(1, 5, 4)  # uniform: CE = ln 4 everywhere
    per_scale, uniform = ce_per_scale(
        logits, [torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 4, dtype=torch.long)], schedule
    )
    torch.testing.assert_close(per_scale, torch.full((2,), math.log(4)))
    torch.testing.assert_close(uniform, torch.tensor(math.log(4)))


def test_gradients_reach_sca_and_transformer_through_hcc_alone(astronaut: torch.Tensor) -> None:
    model = make_tiny("laplacian").train()
    hr = _image(astronaut, 64, 64)
    lr_up = F.interpolate(F.interpolate(hr, scale_factor=0.25, mode="area"), size=(64, 64), mode="bicubic")
    lo = alignvar_losses(model, hr, lr_up, torch.tensor([0, 1]), refiner_weight=0.0)
    assert lo.refiner is None
    torch.testing.assert_close(lo.total, lo.ce + 1.0 * lo.hcc)
    sched = ScaleSchedule.for_size(64, 64)
    weights = torch.tensor(sched.tokens_per_scale, dtype=torch.float32) / sched.total_tokens
    torch.testing.assert_close(lo.ce, (lo.ce_per_scale * weights).sum())  # uniform per-token CE
    lo.hcc.backward()  # CE not involved
    tr = model.transformer
    for name, p in [
        ("sca.mlp.0", model.sca.mlp[0].weight),
        ("sca.mlp.2", model.sca.mlp[2].weight),
        ("blocks.0.mat_qkv", tr.blocks[0].attn.mat_qkv.weight),
        ("head", tr.head.weight),
        ("con_embedding", tr.con_embedding.conv_in.weight),
        ("word_embed", tr.word_embed.weight),
    ]:
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, f"no HCC gradient reaches {name}"
    assert all(p.grad is None for p in model.vqvae.parameters())  # the tokenizer is frozen


def test_refiner_loss_is_part_of_the_total(tiny: AlignVAR, astronaut: torch.Tensor) -> None:
    hr = _image(astronaut, 64, 64)
    lo = alignvar_losses(
        tiny,
        hr,
        hr,
        torch.tensor([0, 1]),
        generator=torch.Generator().manual_seed(0),
        hcc_lambda=0.5,
        refiner_weight=2.0,
    )
    assert lo.refiner is not None and float(lo.refiner.detach()) > 0
    torch.testing.assert_close(lo.total, lo.ce + 0.5 * lo.hcc + 2.0 * lo.refiner)


# ----------------------------------------------------------------------------------------------- components
def test_parameter_counts_match_the_official_models() -> None:
    """VAR_RoPE totals (transformer + refiner) measured on the official code (varsr-internals.md 2.10)."""

    def n(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    body, refiner = {}, {}
    for depth in (2, 16, 24):
        cfg = varsr_transformer(depth)
        with torch.device("meta"):  # no memory: the d24 body has 1.07 B parameters
            body[depth] = n(VARTransformer(dataclasses.replace(cfg, with_refiner=False)))
        # the refiner's noise schedules need real tensors, so it is built on the CPU (36 M parameters)
        refiner[depth] = n(DiffusionRefiner(cfg.cvae, cfg.width, cfg.refiner_width, cfg.refiner_depth))
    assert refiner == {2: 35_143_744, 16: 36_061_248, 24: 36_585_536}
    totals = {d: body[d] + refiner[d] for d in body}
    assert totals == {2: 49_904_740, 16: 371_532_256, 24: 1_101_916_448}


def test_rope_closed_form() -> None:
    rows, cols = token_positions((32, 32), ScaleSchedule.official().patch_nums, (32, 32))
    assert rows.shape == (3264,)
    assert rows[33] == 1 and cols[33] == 1  # LR token (1, 1)
    assert rows[1024] == 0 and cols[1024] == 0  # class token
    b = 1024 + 1 + 4  # first token of the 3x3 scale
    torch.testing.assert_close(cols[b : b + 3], torch.tensor([0.0, 32 / 3, 64 / 3]))
    table = rope_table(64, (32, 32), ScaleSchedule.official().patch_nums)
    assert table.shape == (2, 3264, 32)
    assert torch.equal(table[:, 1024], torch.stack([torch.ones(32), torch.zeros(32)]))  # identity rotation
    torch.testing.assert_close(table[0, 33, 1], torch.tensor(math.cos(10000 ** (-1 / 16))))  # row angle, pair 1
    torch.testing.assert_close(table[1, 33, 17], torch.tensor(math.sin(10000 ** (-1 / 16))))  # col angle, pair 17
    x = torch.randn(1, 2, 3264, 64)
    ref = torch.view_as_real(torch.view_as_complex(x.reshape(1, 2, 3264, 32, 2)) * torch.complex(table[0], table[1]))
    torch.testing.assert_close(apply_rope(x, table), ref.flatten(-2), atol=1e-6, rtol=0)


def test_sampling_semantics() -> None:
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert sample_logits(logits, top_k=1).tolist() == [1]
    assert sample_logits(logits, top_k=0, temperature=0).tolist() == [1]
    kept = filter_top_k_top_p(logits, top_k=2)
    assert torch.isinf(kept[0, [0, 3]]).all() and torch.isfinite(kept[0, [1, 2]]).all()
    # softmax = (.087, .644, .237, .032); top-p 0.7 drops the tokens whose ascending cumsum <= 0.3
    kept = filter_top_k_top_p(logits, top_p=0.7)
    assert torch.isfinite(kept[0]).tolist() == [False, True, True, False]
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    many = torch.randn(64, 16)
    assert torch.equal(sample_logits(many, generator=g1), sample_logits(many, generator=g2))
    assert guidance_ramp(6.0, 10)[0] == 0 and guidance_ramp(6.0, 10)[-1] == 6.0


def test_sca_structure_maps_and_initial_gate(astronaut: torch.Tensor) -> None:
    schedule = ScaleSchedule.for_size(64, 64)
    lr = _image(astronaut, 64, 64)
    maps = structure_maps(lr, schedule, "laplacian")
    assert [m.shape[1] for m in maps] == list(schedule.tokens_per_scale)
    for m in maps[1:]:
        per_image = m.flatten(1)
        assert torch.equal(per_image.amin(1), torch.zeros(2)) and torch.equal(per_image.amax(1), torch.ones(2))
    assert torch.equal(maps[0], torch.zeros_like(maps[0]))  # a 1x1 map is constant -> 0
    flat = structure_maps(torch.full_like(lr, 0.3), schedule, "laplacian")
    assert all(float(m.abs().max()) == 0 for m in flat)
    r1 = structure_maps(lr, schedule, "random", torch.Generator().manual_seed(1))
    r2 = structure_maps(lr, schedule, "random", torch.Generator().manual_seed(1))
    r3 = structure_maps(lr, schedule, "random", torch.Generator().manual_seed(2))
    assert torch.equal(r1[-1], r2[-1]) and not torch.equal(r1[-1], r3[-1])
    torch.testing.assert_close(minmax_per_image(torch.tensor([[[[2.0, 4.0, 3.0]]]])), torch.tensor([[[[0, 1, 0.5]]]]))
    gate = SCAGate(cvae=16)  # default init_bias 0: m starts at 1/2 (last-layer weights std 1e-3)
    m = gate(lr, torch.randn(2, schedule.total_tokens - 1, 16), schedule)
    assert m.shape == (2, schedule.total_tokens - 1, 1)
    # deviation = slope 1/4 x (last-layer weights, std 1e-3) . (64 GELU units of O(1)): a few 1e-3
    torch.testing.assert_close(m, torch.full_like(m, 0.5), atol=2e-2, rtol=0)
    closed = SCAGate(cvae=16, init_bias=-6.0)(lr, torch.randn(2, schedule.total_tokens - 1, 16), schedule)
    torch.testing.assert_close(closed, torch.full_like(closed, 1 / (1 + math.exp(6))), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="SCA off"):
        SCAGate(cvae=16, mask_input="none")


def test_levels_and_pos_start_for_other_sizes(tiny: AlignVAR) -> None:
    assert level_rows(10, 10) == list(range(10))
    assert level_rows(4, 10) == [0, 3, 6, 9]
    assert level_rows(6, 10) == [0, 2, 4, 5, 7, 9]
    tr = tiny.transformer
    assert tr.pos_start_for((4, 4)) is tr.pos_start  # training grid: unchanged
    resized = tr.pos_start_for((4, 6))
    assert resized.shape == (1, 25, 64) and torch.equal(resized[:, -1], tr.pos_start[:, -1])


def test_loading_accepts_official_buffers_and_fresh_sca(tiny: AlignVAR, tmp_path) -> None:
    """Official-layout transformer file (lvl_1L / attn mask / zero_k_bias) + VQ-VAE file: SCA starts fresh."""
    sd = {k: v.clone() for k, v in tiny.transformer.state_dict().items()}
    sd["lvl_1L"] = torch.zeros(1, 17 + 29, dtype=torch.long)
    sd["attn_bias_for_masking"] = torch.zeros(1, 1, 46, 46)
    sd["blocks.0.attn.zero_k_bias"] = torch.zeros(64)
    torch.save({"trainer": {"var_wo_ddp": sd}}, tmp_path / "VARSR_tiny.pth")
    torch.save({"trainer": {"vae_local": tiny.vqvae.state_dict()}}, tmp_path / "VQVAE_tiny.pth")
    model = AlignVAR.from_pretrained(tmp_path / "VARSR_tiny.pth", tmp_path / "VQVAE_tiny.pth")
    assert model.sca is not None and any("freshly initialised" in n for n in model.load_notes)
    assert model.sca_untrained  # fine for fine-tuning; the benchmark method refuses it (below)
    with pytest.raises(ValueError, match="has no SCA weights .* would run an untrained gate"):
        AlignVARMethod(
            AlignVARMethodConfig(
                checkpoint=str(tmp_path / "VARSR_tiny.pth"), vqvae=str(tmp_path / "VQVAE_tiny.pth"), sca="laplacian"
            ),
            "alignvar",
        )
    for k, v in tiny.transformer.state_dict().items():
        assert torch.equal(model.transformer.state_dict()[k], v), k
    sd["blocks.1.attn.zero_k_bias"] = torch.ones(64)
    with pytest.raises(ValueError, match="zero_k_bias is not all zeros"):
        model.transformer.load_state_dict(sd)


def test_checkpoint_round_trip_and_yaml_config(tiny: AlignVAR, tmp_path, astronaut: torch.Tensor) -> None:
    path = tiny.save(tmp_path / "tiny.safetensors")
    again = AlignVAR.from_pretrained(path)
    assert again.config.sca.mask_input == "laplacian" and again.load_notes == []
    lr01 = (_image(astronaut, 16, 16, batch=1) + 1) / 2
    assert torch.equal(again.upscale(lr01), tiny.upscale(lr01))
    cfg = from_dict(
        AlignVARConfig,
        {"arch": "tiny", "hcc": {"lambda": 0.5, "space": "pixel"}, "sca": {"mask_input": "random"}},
    )
    assert (cfg.hcc.lambda_, cfg.hcc.space, cfg.sca.mask_input) == (0.5, "pixel", "random")
    with pytest.raises(ConfigError, match="valid choices: laplacian, sobel, random, none"):
        from_dict(AlignVARConfig, {"sca": {"mask_input": "canny"}})
    with pytest.raises(ConfigError, match="unknown arch 'd99'"):
        from_dict(AlignVARConfig, {"arch": "d99"})
    built = create("models", "alignvar", {"arch": "tiny", "checkpoint": str(path)})
    assert isinstance(built, AlignVAR) and built.transformer.cfg == tiny.transformer.cfg
    assert isinstance(ARCHS["tiny"].transformer, TransformerConfig)


def test_methods_refuse_random_weights_and_count_components(tiny: AlignVAR, tmp_path) -> None:
    with pytest.raises(MissingCheckpointError) as err:
        AlignVARMethod(VARSRMethodConfig(), "varsr")
    assert str(err.value) == (
        "varsr: no checkpoint given; set checkpoint: hf://qyp2000/VARSR/VARSR.pth (the official VARSR.pth, "
        "downloaded once) or the path of VARSR.pth from https://github.com/qyp2000/VARSR (--checkpoint on the "
        "command line); methods never run with random weights"
    )
    path = tiny.save(tmp_path / "tiny.safetensors")
    method = create("methods", "alignvar", {"checkpoint": str(path), "sca": "none", "arch": "tiny"})
    assert method.inference_steps == 4 and method.model.sca is None
    counts = method.parameter_counts()
    # the whole model (SCA off here), not only what inference keeps resident
    assert sum(counts.values()) == sum(p.numel() for n, p in tiny.named_parameters() if not n.startswith("sca."))
    assert method.parameter_total() == sum(counts.values())
    assert set(method.modules()) == {"transformer", "vqvae", "refiner", "lr_stem"}
    with pytest.raises(ValueError, match="does not match arch 'd2'"):
        AlignVARMethod(AlignVARMethodConfig(checkpoint=str(path), arch="d2"), "alignvar")
