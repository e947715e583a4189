"""The model-facing probes (``harness.analysis.probes``) on the tiny model: inputs prepared as ``upscale``
prepares them, one seeded generation shared by every probe, token corruption drawn from its documented seed,
the SCA gates of the generated tokens, the aggregation tables in exact numbers and the exact error messages.
(``tests/test_sweep_ablation.py`` checks that ``probe_image`` equals the three separate probes.)

Tolerances: values recomputed along the same path are compared bit for bit; table means of a few floats with
``pytest.approx`` defaults."""

from __future__ import annotations

import types

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from harness.analysis import probes
from harness.analysis.accumulation import AccumulationResult
from harness.analysis.attention.stats import STATISTICS, UNIFORM, key_scale_attention_map
from methods.alignvar.model import upsample_bicubic
from methods.alignvar.scales import ScaleSchedule
from tests.tiny_models import make_tiny


@pytest.fixture(scope="module")
def model():
    return make_tiny("laplacian", cfg=1.5)


def _lr_hr(astronaut: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An LR of 18 x 17 (cropped to 16 x 16 by the probes) and an HR of 70 x 70, in [0, 1]."""
    hr = F.interpolate(astronaut[None], size=(70, 70), mode="area")[0]
    lr = F.interpolate(astronaut[None], size=(18, 17), mode="area")[0]
    return lr, hr


# ------------------------------------------------------------------------------------------------- inputs
def test_var_model_accepts_var_methods_only(model):
    assert probes.var_model(types.SimpleNamespace(model=model), "m") is model
    msg = (
        r"^method 'bic' \(SimpleNamespace\) is not a VAR-style model; these analyses need an AlignVAR/VARSR "
        r"method \(type: alignvar or varsr\)$"
    )
    with pytest.raises(ValueError, match=msg):
        probes.var_model(types.SimpleNamespace(), "bic")
    with pytest.raises(ValueError, match=msg):
        probes.var_model(types.SimpleNamespace(model=types.SimpleNamespace(transformer=1, vqvae=2)), "bic")


def test_model_inputs_crop_to_multiples_of_four_and_upsample_like_upscale(model, astronaut):
    lr, hr = _lr_hr(astronaut)
    lr_m11, hr_m11, schedule = probes.model_inputs(model, lr, hr)
    want = upsample_bicubic(lr[None, :, :16, :16], (64, 64)) * 2 - 1
    assert torch.equal(lr_m11, want)
    assert torch.equal(hr_m11, hr[None, :, :64, :64] * 2 - 1)
    assert schedule == ScaleSchedule.for_size(64, 64)
    assert probes.model_inputs(model, lr)[1] is None
    assert probes.model_inputs(model, lr[:, :, :13])[0].shape == (1, 3, 64, 48)  # 18 x 13 -> 16 x 12, x4
    with pytest.raises(ValueError, match=r"^LR image \(3, 17\) is smaller than 4x4$"):
        probes.model_inputs(model, lr[:, :3])
    with pytest.raises(ValueError, match=r"^HR \(63, 70\) is smaller than 4 x LR \(16, 16\)$"):
        probes.model_inputs(model, lr, hr[:, :63])
    with pytest.raises(ValueError, match=r"^HR \(70, 63\) is smaller than 4 x LR \(16, 16\)$"):
        probes.model_inputs(model, lr, hr[:, :, :63])


def test_free_running_is_the_seeded_generation_refiner_off(model, astronaut):
    lr_m11, _, _ = probes.model_inputs(model, *_lr_hr(astronaut))
    gen = probes.free_running(model, lr_m11)
    seen = []
    _, want = model.generate(
        lr_m11,
        generator=torch.Generator().manual_seed(int(model.config.seed)),
        use_refiner=False,
        return_tokens=True,
        token_hook=lambda k, idx, logits: seen.append(k) or idx,
    )
    assert all(torch.equal(a, b) for a, b in zip(gen.tokens, want.tokens))
    assert torch.equal(gen.f_hat, gen.f_hat_tokens)  # refiner off: the latent is the tokens' alone
    sampled = make_tiny("laplacian", cfg=1.5, top_k=0, top_p=0.0)  # tokens drawn from the seeded generator
    runs = [probes.free_running(sampled, lr_m11).tokens for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    _, want = sampled.generate(
        lr_m11, generator=torch.Generator().manual_seed(int(sampled.config.seed)), use_refiner=False, return_tokens=True
    )
    assert all(torch.equal(a, b) for a, b in zip(runs[0], want.tokens))
    torch.manual_seed(1)
    _, unseeded = sampled.generate(lr_m11, use_refiner=False, return_tokens=True)
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], unseeded.tokens))  # the seed matters here
    hooked = probes.free_running(model, lr_m11, token_hook=lambda k, idx, logits: torch.zeros_like(idx))
    assert all(int(t.abs().sum()) == 0 for t in hooked.tokens)  # the hook is passed on


# ------------------------------------------------------------------------------------------------ attention
def test_attention_recorder_and_key_scale_maps(model, astronaut):
    lr_m11, _, schedule = probes.model_inputs(model, *_lr_hr(astronaut))
    recorder, layout = probes.attention_recorder(model, schedule, layers=[1], query_sample=2)
    assert recorder.batch_rows == 1 and recorder.query_sample == 2 and recorder.layout is layout
    assert len(layout) == 16 + 30 and layout.label(3) == "4x4"  # LR prefix on the 4x4 latent grid + 30 tokens
    with recorder:
        probes.free_running(model, lr_m11)
    assert {r.layer for r in recorder.records} == {1}  # only the layer asked for
    maps = probes.key_scale_maps(recorder, layout)
    rec = [r for r in recorder.records if bool((layout.levels[r.query_index] == 3).any())][-1]
    assert list(maps) == [f"layer 1: {layout.label(lv)}" for lv in sorted(layout.grids)]
    for level in sorted(layout.grids):
        want = key_scale_attention_map(rec.probs, rec.query_index, layout, 3, level)
        assert torch.equal(maps[f"layer 1: {layout.label(level)}"], want)
    table, heat = probes.attention_for_image(model, _lr_hr(astronaut)[0], layers=[1], query_sample=2, radius=0.2)
    assert set(table["layer"]) == {1} and set(table["radius"]) == {0.2}
    assert int(table.groupby("head")["n_queries"].sum().iloc[0]) == 1 + 2 * 3  # class token + 2 per scale
    assert heat.keys() == maps.keys() and all(torch.equal(heat[k], maps[k]) for k in maps)
    recorder.clear()
    assert probes.key_scale_maps(recorder, layout) == {}  # nothing recorded: no map


def _frame(layer: int, value: float, n: int) -> pd.DataFrame:
    row = {"layer": layer, "head": 0, "query_level": 1, "query_scale": "2x2", "radius": 0.1, "n_queries": n}
    row.update({name: value for name in (*STATISTICS, *UNIFORM)})
    return pd.DataFrame([row])


def test_attention_table_sums_queries_and_averages_statistics():
    table = probes.attention_table([_frame(0, 1.0, 3), _frame(0, 2.0, 4), _frame(1, 5.0, 2)], "m")
    assert list(table["layer"]) == [0, 1] and list(table["n_queries"]) == [7, 2]
    assert list(table["model"]) == ["m", "m"]
    for name in (*STATISTICS, *UNIFORM):
        assert list(table[name]) == [1.5, 5.0]
    with pytest.raises(ValueError, match=r"^attention_table: no per-image tables given$"):
        probes.attention_table([], "m")


def test_mean_heatmaps():
    a = {"x": torch.tensor([[1.0, 2.0]]), "y": torch.ones(2, 2)}
    b = {"x": torch.tensor([[3.0, 6.0]]), "y": torch.zeros(2, 2)}
    out = probes.mean_heatmaps([a, b])
    assert torch.equal(out["x"], torch.tensor([[2.0, 4.0]])) and torch.equal(out["y"], torch.full((2, 2), 0.5))
    assert probes.mean_heatmaps([]) is None and probes.mean_heatmaps([{}]) is None
    assert probes.mean_heatmaps([a, {"x": torch.zeros(1, 3), "y": torch.ones(2, 2)}]) is None  # grids differ


# --------------------------------------------------------------------------------------------- accumulation
def test_corruption_replaces_the_documented_tokens(model, astronaut):
    lr_m11, _, schedule = probes.model_inputs(model, *_lr_hr(astronaut))
    quant = model.vqvae.quantize
    clean = probes.free_running(model, lr_m11).tokens
    run = probes.corrupting_run_fn(model, lr_m11, schedule, seed=3)
    same = run({})
    assert all(torch.equal(a, b) for a, b in zip(same, quant.cumulative_targets(clean, schedule)))
    assert all(torch.equal(a, b) for a, b in zip(run({2: 0.0}), same))  # a zero fraction corrupts nothing
    for frac, n_changed in ((0.5, 4), (0.01, 1)):  # round(0.5 * 9) = 4 of the 3x3 tokens; at least one
        g = torch.Generator().manual_seed(3 * 7919 + 2)
        pos = torch.randperm(9, generator=g)[:n_changed]
        want = clean[2].clone()
        want[:, pos] = torch.randint(512, (1, n_changed), generator=g)
        hit = clean[:2] + [want]
        lat = run({2: frac})
        assert all(torch.equal(lat[k], same[k]) for k in range(2))  # earlier scales untouched
        assert torch.equal(lat[2], quant.cumulative_targets(hit + clean[3:], schedule)[2])


def test_accumulation_curves_and_table(model, astronaut):
    lr, hr = _lr_hr(astronaut)
    with pytest.raises(ValueError, match=r"^perturb_scales \[4\] outside 0\.\.3 \(this image has 4 scales: "):
        probes.accumulation_for_image(model, lr, hr, "m", perturb_scales=(4,))
    with pytest.raises(ValueError, match=r"scales: 1x1, 2x2, 3x3, 4x4\)$"):
        probes.accumulation_for_image(model, lr, hr, "m", perturb_scales=(-1,))
    curves = probes.accumulation_for_image(model, lr, hr, "m", perturb_scales=(1,), perturb_fraction=0.5)
    assert [(c.mode, c.model, c.injected_scale) for c in curves] == [
        ("teacher_forced", "m", None),
        ("free_running", "m", None),
        ("perturbation", "m", 1),
    ]
    assert list(curves[2].scales) == ["1x1", "2x2", "3x3", "4x4"] and curves[2].metric == "mse"
    assert float(curves[2].errors[0]) == 0.0 and float(curves[2].errors[1]) > 0  # round(0.5 * 4) = 2 tokens
    table = probes.accumulation_table(curves + curves)  # the same image twice: the mean is the value
    assert list(table.columns) == [*probes.ACCUMULATION_KEYS, "error"]
    assert len(table) == 3 * 4
    first = table[(table["mode"] == "perturbation") & (table["scale_index"] == 1)]["error"]
    assert float(first.iloc[0]) == pytest.approx(float(curves[2].errors[1]))
    with pytest.raises(ValueError, match=r"^accumulation_table: no curves given$"):
        probes.accumulation_table([])


def test_accumulation_table_averages_over_images():
    a = AccumulationResult(torch.tensor([1.0, 2.0]), "free_running", "m", scales=["1x1", "2x2"])
    b = AccumulationResult(torch.tensor([3.0, 6.0]), "free_running", "m", scales=["1x1", "2x2"])
    table = probes.accumulation_table([a, b])
    assert list(table["error"]) == [2.0, 4.0] and list(table["scale"]) == ["1x1", "2x2"]


# ------------------------------------------------------------------------------------------------ SCA gates
def test_sca_gates_and_figure_of_the_generated_tokens(model, astronaut):
    lr_m11, _, schedule = probes.model_inputs(model, *_lr_hr(astronaut))
    tokens = probes.free_running(model, lr_m11).tokens
    maps, gate = probes.sca_gates(model, lr_m11, schedule, tokens)
    want_maps = model.sca.guidance(lr_m11, schedule)
    assert len(maps) == 4 and all(torch.equal(a, b) for a, b in zip(maps, want_maps))
    x_in = model.vqvae.quantize.idx_to_var_input(tokens, schedule)
    with torch.no_grad():
        want = model.sca.gate(x_in, torch.cat(want_maps[1:], dim=1))
    assert torch.equal(gate, want)
    rows = probes.gate_rows(gate, schedule)
    assert [(r["scale_index"], r["scale"], r["n_tokens"]) for r in rows] == [
        (1, "2x2", 4),
        (2, "3x3", 9),
        (3, "4x4", 16),
    ]
    assert rows[1]["gate_mean"] == pytest.approx(float(gate[0, 4:13].mean()))
    assert rows[2]["gate_std"] == pytest.approx(float(gate[0, 13:].std(unbiased=False)))
    assert rows[2]["gate_open"] == pytest.approx(float((gate[0, 13:] > 0.5).float().mean()))
    fig = probes.sca_masks_for_image(model, _lr_hr(astronaut)[0])
    assert len(fig.axes) == 2 * 3 + 1  # maps and gates of scales 2..4 + a colour bar
    background = fig.axes[3].images[0].get_array()  # the first gate panel, over the LR image in [0, 1]
    want_bg = ((lr_m11[0] + 1) / 2).clamp(0, 1).mean(0).numpy()
    assert abs(background - want_bg).max() < 1e-6
    assert float(abs(fig.axes[3].images[1].get_array() - gate[0, :4, 0].view(2, 2).numpy()).max()) < 1e-6
    plain = make_tiny("none")
    with pytest.raises(ValueError, match=r"^this model has SCA off \(sca: none\): there are no gates to show$"):
        probes.sca_masks_for_image(plain, _lr_hr(astronaut)[0])


def test_gate_table_averages_rows_and_sums_tokens():
    rows = [
        {"scale_index": 1, "scale": "2x2", "n_tokens": 4, "gate_mean": 0.2, "gate_std": 0.1, "gate_open": 0.0},
        {"scale_index": 2, "scale": "3x3", "n_tokens": 9, "gate_mean": 0.9, "gate_std": 0.0, "gate_open": 1.0},
        {"scale_index": 1, "scale": "2x2", "n_tokens": 4, "gate_mean": 0.4, "gate_std": 0.3, "gate_open": 0.5},
    ]
    table = probes.gate_table(rows, "m")
    assert list(table.columns) == list(probes.GATE_COLUMNS)
    assert table.to_dict("records") == [
        {"model": "m", "scale_index": 1, "scale": "2x2", "n_tokens": 8, "gate_mean": pytest.approx(0.3),
         "gate_std": pytest.approx(0.2), "gate_open": 0.25},
        {"model": "m", "scale_index": 2, "scale": "3x3", "n_tokens": 9, "gate_mean": 0.9, "gate_std": 0.0,
         "gate_open": 1.0},
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"^gate_table: no gate rows given$"):
        probes.gate_table([], "m")


def test_probe_image_parts_and_options(model, astronaut):
    lr, hr = _lr_hr(astronaut)
    probe = probes.probe_image(model, lr, None, "m", layers=[0], query_sample=2, radius=0.3)
    assert probe.curves == [] and probe.sca_figure is None  # no HR: no curves; no figure unless asked
    assert set(probe.attention["layer"]) == {0} and set(probe.attention["radius"]) == {0.3}
    lr_m11, _, schedule = probes.model_inputs(model, lr)
    gate = probes.sca_gates(model, lr_m11, schedule, probes.free_running(model, lr_m11).tokens)[1]
    assert probe.gates == probes.gate_rows(gate, schedule)
    labels = ("prefix 4x4", "1x1 (class)", "2x2", "3x3", "4x4")
    assert list(probe.heatmaps) == [f"layer 0: {x}" for x in labels]  # the last recorded layer: 0
    top = probes.probe_image(model, lr, None, "m", layers=[0], query_sample=2, alignment="topleft", sca_figure=True)
    table, _ = probes.attention_for_image(model, lr, layers=[0], query_sample=2, alignment="topleft")
    pd.testing.assert_frame_equal(top.attention, table)
    assert not top.attention["mean_distance"].equals(probe.attention["mean_distance"])  # the alignment matters
    assert top.sca_figure is not None and len(top.sca_figure.axes) == 2 * 3 + 1
    full = probes.probe_image(model, lr, hr, "m", query_sample=2, perturb_scales=(2,), perturb_fraction=0.5)
    assert [c.mode for c in full.curves] == ["teacher_forced", "free_running", "perturbation"]
    assert full.curves[2].injected_scale == 2
    assert probes.probe_image(make_tiny("none"), lr, None, "m", query_sample=2).gates is None


def test_probe_defaults(model, astronaut):
    lr, hr = _lr_hr(astronaut)
    table, heat = probes.attention_for_image(model, lr)
    want, want_heat = probes.attention_for_image(model, lr, query_sample=16, radius=0.1, alignment="center")
    pd.testing.assert_frame_equal(table, want)
    assert set(table["radius"]) == {0.1} and heat.keys() == want_heat.keys()
    a = probes.accumulation_for_image(model, lr, hr, "m", perturb_scales=(1,))
    b = probes.accumulation_for_image(model, lr, hr, "m", perturb_scales=(1,), perturb_fraction=0.1)
    assert all(torch.equal(x.errors, y.errors) for x, y in zip(a, b))
    c = probes.accumulation_for_image(model, lr, hr, "m", perturb_scales=(1,), perturb_fraction=1.0)
    assert not torch.equal(a[2].errors, c[2].errors)
    assert probes.accumulation_for_image(model, lr, hr, "m")[-1].mode == "free_running"  # no perturbation asked
    scale0 = probes.accumulation_for_image(model, lr, hr, "m", perturb_scales=(0,), perturb_fraction=1.0)
    assert scale0[2].injected_scale == 0 and float(scale0[2].errors[0]) > 0  # scale 0 can be perturbed


def test_accumulated_latents_without_cfg_and_with_the_gate(astronaut):
    lr, hr = _lr_hr(astronaut)
    plain = make_tiny("laplacian", cfg=0.0)
    lr_m11, hr_m11, schedule = probes.model_inputs(plain, lr, hr)
    lat = probes.accumulated_latents(plain, lr_m11, hr_m11, schedule)
    gt = plain.vqvae.img_to_idx(hr_m11, schedule)
    x_in = plain.vqvae.quantize.idx_to_var_input(gt.idx, schedule)
    q = plain.vqvae.quantize
    with torch.no_grad():
        gate = plain.sca(lr_m11, x_in, schedule)
        logits = plain.transformer(lr_m11, torch.tensor([0]), x_in, schedule, gate)  # label 0, no CFG batch
    prev = torch.zeros_like(gt.f_hat[0])
    for k, ((b, e), hw) in enumerate(zip(schedule.begin_ends, schedule.patch_nums)):
        want = prev + q.embed_scale(k, q.lookup(logits[:, b:e].argmax(-1), hw), schedule)
        assert torch.equal(lat["teacher_forced"][k], want)
        prev = gt.f_hat[k]
    assert all(torch.equal(a, b) for a, b in zip(lat["gt"], gt.f_hat))


# ------------------------------------------------------------------------------- branches and options (mutants)
def test_model_inputs_rejects_a_too_narrow_lr(model, astronaut):
    lr, _ = _lr_hr(astronaut)
    with pytest.raises(ValueError, match=r"^LR image \(18, 3\) is smaller than 4x4$"):
        probes.model_inputs(model, lr[:, :, :3])


def test_mean_heatmaps_of_one_image_is_that_image():
    a = {"x": torch.tensor([[1.0, 2.0]]), "y": torch.ones(2, 2)}
    out = probes.mean_heatmaps([a])
    assert out.keys() == a.keys() and all(torch.equal(out[k], a[k]) for k in a)


def test_tables_order_their_groups():
    """attention / gate tables: groups sorted by key; the accumulation table keeps the curves' order."""
    table = probes.attention_table([_frame(1, 5.0, 2), _frame(0, 1.0, 3)], "m")
    assert list(table["layer"]) == [0, 1] and list(table["n_queries"]) == [3, 2]
    rows = [
        {"scale_index": 2, "scale": "3x3", "n_tokens": 9, "gate_mean": 0.9, "gate_std": 0.0, "gate_open": 1.0},
        {"scale_index": 1, "scale": "2x2", "n_tokens": 4, "gate_mean": 0.2, "gate_std": 0.1, "gate_open": 0.0},
    ]
    assert list(probes.gate_table(rows, "m")["scale_index"]) == [1, 2]
    a = AccumulationResult(torch.tensor([1.0, 2.0]), "teacher_forced", "m", scales=["1x1", "2x2"])
    b = AccumulationResult(torch.tensor([3.0, 6.0]), "free_running", "m", scales=["1x1", "2x2"])
    table = probes.accumulation_table([a, b])
    assert list(table["mode"]) == ["teacher_forced"] * 2 + ["free_running"] * 2
    assert list(table["error"]) == [1.0, 2.0, 3.0, 6.0]


def test_default_query_sample_is_sixteen_per_scale(model):
    lr = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(0))  # 96 x 96: scales 1, 2, 3, 5, 6
    lr_m11, _, schedule = probes.model_inputs(model, lr)
    assert schedule.patch_nums == ((1, 1), (2, 2), (3, 3), (5, 5), (6, 6))
    assert probes.attention_recorder(model, schedule)[0].query_sample == 16
    want = 16 + 1 + 4 + 9 + 16 + 16  # LR prefix (6x6), then every token of a scale up to 16 tokens, else 16
    table, _ = probes.attention_for_image(model, lr, layers=[0])
    assert set(table.groupby("head")["n_queries"].sum()) == {want}
    probe = probes.probe_image(model, lr, None, "m", layers=[0])
    assert set(probe.attention.groupby("head")["n_queries"].sum()) == {want}


def test_probe_image_reuses_its_generation_and_matches_the_accumulation_probe(model, astronaut, monkeypatch):
    """One recorded generation + one per perturbed scale (the unperturbed reference is that generation);
    the curves are those of ``accumulation_for_image`` with the default fraction 0.1."""
    lr, hr = _lr_hr(astronaut)
    calls = []
    generate = model.generate
    monkeypatch.setattr(model, "generate", lambda *a, **k: calls.append(1) or generate(*a, **k))
    probe = probes.probe_image(model, lr, hr, "m", layers=[0], query_sample=2, perturb_scales=(1, 2))
    assert len(calls) == 1 + 2
    calls.clear()
    want = probes.accumulation_for_image(model, lr, hr, "m", perturb_scales=(1, 2), perturb_fraction=0.1)
    assert len(calls) == 1 + 2  # the free-running run, then one per perturbed scale: no extra reference run
    assert [(c.mode, c.model, c.injected_scale, list(c.scales)) for c in probe.curves] == [
        (c.mode, "m", c.injected_scale, ["1x1", "2x2", "3x3", "4x4"]) for c in want
    ]
    assert all(torch.equal(a.errors, b.errors) for a, b in zip(probe.curves, want))
    assert float(want[2].errors[1]) > 0 and float(want[3].errors[2]) > 0  # the perturbations do change things


def test_sca_figure_titles_are_the_scale_grids(model, astronaut):
    fig = probes.sca_masks_for_image(model, _lr_hr(astronaut)[0])
    assert [ax.get_title() for ax in fig.axes[:3]] == ["2x2", "3x3", "4x4"]


def test_sca_gates_of_one_and_two_scales(model):
    lr_m11, _, one = probes.model_inputs(model, torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0)))
    assert one.patch_nums == ((1, 1),)
    maps, gate = probes.sca_gates(model, lr_m11, one, probes.free_running(model, lr_m11).tokens)
    assert len(maps) == 1 and gate.shape == (1, 0, 1) and gate.dtype == torch.float32  # nothing is gated
    assert probes.gate_rows(gate, one) == []
    lr_m11, _, two = probes.model_inputs(model, torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0)))
    assert two.patch_nums == ((1, 1), (2, 2))
    tokens = probes.free_running(model, lr_m11).tokens
    maps, gate = probes.sca_gates(model, lr_m11, two, tokens)
    x_in = model.vqvae.quantize.idx_to_var_input(tokens, two)
    with torch.no_grad():
        want = model.sca.gate(x_in, maps[1])
    assert gate.shape == (1, 4, 1) and torch.equal(gate, want)


def test_sca_gates_of_a_random_map_come_from_the_seeded_generator(astronaut):
    rand = make_tiny("random")
    lr_m11, _, schedule = probes.model_inputs(rand, _lr_hr(astronaut)[0])
    tokens = probes.free_running(rand, lr_m11).tokens
    torch.manual_seed(123)  # the global generator must not be what draws the maps
    maps, _ = probes.sca_gates(rand, lr_m11, schedule, tokens)
    want = rand.sca.guidance(lr_m11, schedule, torch.Generator().manual_seed(int(rand.config.seed)))
    assert all(torch.equal(a, b) for a, b in zip(maps, want))


def _teacher_forcing(model, astronaut):
    """The model's inputs, its accumulated latents, its quantiser and the HR image's tokens."""
    lr, hr = _lr_hr(astronaut)
    lr_m11, hr_m11, schedule = probes.model_inputs(model, lr, hr)
    lat = probes.accumulated_latents(model, lr_m11, hr_m11, schedule)
    return lr_m11, schedule, lat, model.vqvae.quantize, model.vqvae.img_to_idx(hr_m11, schedule)


def test_accumulated_latents_with_guidance(astronaut):
    """Teacher forcing with CFG as at inference: label 0 conditional, label 1 negative, guidance
    (1 + t_k) l_cond - t_k l_neg with t_k = cfg * k / (K - 1); cfg = 1 (guided: any cfg > 0)."""
    guided = make_tiny("laplacian", cfg=1.0)
    lr_m11, schedule, lat, q, gt = _teacher_forcing(guided, astronaut)
    x_in = q.idx_to_var_input(gt.idx, schedule)
    with torch.no_grad():
        gate = guided.sca(lr_m11, x_in, schedule)
        logits = guided.transformer(
            lr_m11.repeat(2, 1, 1, 1), torch.tensor([0, 1]), x_in.repeat(2, 1, 1), schedule, gate.repeat(2, 1, 1)
        )
    prev, differs = torch.zeros_like(gt.f_hat[0]), False
    for k, ((b, e), hw) in enumerate(zip(schedule.begin_ends, schedule.patch_nums)):
        t = 1.0 * k / 3
        lk = (1 + t) * logits[:1, b:e] - t * logits[1:, b:e]
        assert torch.equal(lat["teacher_forced"][k], prev + q.embed_scale(k, q.lookup(lk.argmax(-1), hw), schedule))
        differs |= not torch.equal(lk.argmax(-1), logits[:1, b:e].argmax(-1))
        prev = gt.f_hat[k]
    assert differs  # the guidance changes some teacher-forced token here


def test_accumulated_latents_with_sca_off(astronaut):
    plain = make_tiny("none", cfg=0.0)
    lr_m11, schedule, lat, q, gt = _teacher_forcing(plain, astronaut)
    with torch.no_grad():
        logits = plain.transformer(lr_m11, torch.tensor([0]), q.idx_to_var_input(gt.idx, schedule), schedule, None)
    b, e = schedule.begin_ends[2]
    want = gt.f_hat[1] + q.embed_scale(2, q.lookup(logits[:, b:e].argmax(-1), (3, 3)), schedule)
    assert torch.equal(lat["teacher_forced"][2], want)
    assert len(lat["free_running"]) == 4 and all(torch.equal(a, b) for a, b in zip(lat["gt"], gt.f_hat))
