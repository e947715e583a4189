"""Error accumulation on toy "models" with constructed per-scale errors: every curve has a closed form."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from harness.analysis.accumulation import (
    ACCUMULATION_COLUMNS,
    AccumulationResult,
    accumulation_curves,
    per_scale_latent_error,
    per_scale_psnr,
    perturbation_curve,
    perturbation_results,
    read_accumulation_csv,
    results_to_frame,
    write_accumulation_csv,
)

PN = (1, 2, 3, 4, 6)
C = 4  # latent channels
STEP_ERRORS = (0.1, -0.05, 0.2, 0.0, 0.3)  # e_k: the constant error the toy model makes at scale k


def ground_truth(batch: int = 2) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(batch, C, pn, pn, generator=gen) for pn in PN]


def toy_model(u_gt, step_errors=STEP_ERRORS, gain: float = 1.0, teacher_forced: bool = False):
    """u_hat_k = u_k + d_k with d_k = gain * d_{k-1} + e_k + p_k (free-running: deviations carry over, scaled
    by ``gain``); teacher-forced: d_k = e_k + p_k (every scale starts from the ground truth)."""

    def run(perturbations=None):
        perturbations = perturbations or {}
        out, dev = [], 0.0
        for k, u in enumerate(u_gt):
            step = step_errors[k] + perturbations.get(k, 0.0)
            dev = step if teacher_forced else gain * dev + step
            out.append(u + dev)
        return out

    return run


def test_free_running_error_is_the_square_of_the_accumulated_deviation():
    u = ground_truth()
    pred = toy_model(u)()
    acc = [sum(STEP_ERRORS[: k + 1]) for k in range(len(PN))]
    expected = torch.tensor([a * a for a in acc], dtype=torch.float64)
    assert torch.allclose(per_scale_latent_error(pred, u), expected, atol=1e-12)
    # 'sse' is the HCC term ||u_pred - u_gt||^2 per sample (C * pn^2 elements); 'l2' its square root
    numel = torch.tensor([C * pn * pn for pn in PN], dtype=torch.float64)
    assert torch.allclose(per_scale_latent_error(pred, u, "sse"), expected * numel, atol=1e-9)
    assert torch.allclose(per_scale_latent_error(pred, u, "l2"), (expected * numel).sqrt(), atol=1e-9)


def test_teacher_forced_vs_free_running_curves():
    u = ground_truth()
    curves = accumulation_curves(
        u,
        toy_model(u, teacher_forced=True)(),
        toy_model(u)(),
        model="HCC off",
        scales=[f"{p}x{p}" for p in PN],
    )
    tf, fr = curves
    assert (tf.mode, fr.mode) == ("teacher_forced", "free_running")
    assert torch.allclose(tf.errors, torch.tensor([e * e for e in STEP_ERRORS], dtype=torch.float64), atol=1e-12)
    assert fr.errors[-1] == pytest.approx(sum(STEP_ERRORS) ** 2)
    df = results_to_frame(curves)
    assert list(df.columns) == list(ACCUMULATION_COLUMNS)
    assert df["scale"].tolist()[:5] == ["1x1", "2x2", "3x3", "4x4", "6x6"]
    assert df.groupby("mode")["error"].sum()["free_running"] == pytest.approx(
        sum(sum(STEP_ERRORS[: k + 1]) ** 2 for k in range(5))
    )


def test_perturbation_leaves_earlier_scales_and_shifts_later_ones():
    u = ground_truth()
    curve = perturbation_curve(toy_model(u), j=2, eps=0.3)
    assert curve[:2].tolist() == [0.0, 0.0]
    assert torch.allclose(curve[2:], torch.full((3,), 0.09, dtype=torch.float64), atol=1e-12)


def test_amplifying_model_grows_the_perturbation_geometrically():
    u = ground_truth()
    gain, eps, j = 1.5, 0.2, 1
    curve = perturbation_curve(toy_model(u, gain=gain), j, eps)
    expected = [0.0] + [(gain ** (k - j) * eps) ** 2 for k in range(j, len(PN))]
    assert torch.allclose(curve, torch.tensor(expected, dtype=torch.float64), atol=1e-12)
    # a correcting model (gain < 1) shrinks it
    shrink = perturbation_curve(toy_model(u, gain=0.5), j, eps)
    assert (shrink[j + 1 :] < shrink[j]).all()


def test_perturbation_results_share_one_reference_run():
    u = ground_truth()
    calls = []

    def run(perturbations):
        calls.append(dict(perturbations))
        return toy_model(u)(perturbations)

    results = perturbation_results(run, [0, 3], 0.1, model="m")
    assert calls == [{}, {0: 0.1}, {3: 0.1}]
    assert [r.injected_scale for r in results] == [0, 3]
    df = results_to_frame(results)
    assert df["injected_scale"].tolist() == [0] * 5 + [3] * 5
    assert df["error"].tolist() == pytest.approx([0.01] * 5 + [0, 0, 0, 0.01, 0.01])
    with pytest.raises(ValueError, match=r"scale 7 is outside 0\.\.4"):
        perturbation_curve(run, 7, 0.1)


def test_per_scale_psnr_closed_form():
    gen = torch.Generator().manual_seed(3)
    gt = [torch.rand(2, 3, 16, 16, generator=gen) for _ in range(3)]
    pred = [g + 0.1 for g in gt[:2]] + [gt[2].clone()]  # MSE 0.01 -> 20 dB; identical -> inf
    psnr = per_scale_psnr(pred, gt)
    assert psnr[:2].tolist() == pytest.approx([20.0, 20.0])
    assert math.isinf(float(psnr[2]))
    assert float(per_scale_psnr([gt[0] + 25.5], [gt[0]], data_range=255.0)[0]) == pytest.approx(20.0)


def test_errors_name_the_problem():
    u = ground_truth()
    with pytest.raises(ValueError, match=r"per_scale_latent_error: 4 predicted scales but 5 ground-truth scales"):
        per_scale_latent_error(u[:4], u)
    with pytest.raises(ValueError, match=r"scale 1: prediction \(2, 4, 3, 3\) vs ground truth \(2, 4, 2, 2\)"):
        per_scale_latent_error([u[0], u[2]], u[:2])
    with pytest.raises(ValueError, match="reduction must be 'mse', 'sse' or 'l2'"):
        per_scale_latent_error(u, u, "mae")
    with pytest.raises(ValueError, match="mode='perturbation' needs injected_scale"):
        AccumulationResult(torch.zeros(3), "perturbation")
    with pytest.raises(ValueError, match="mode must be one of"):
        AccumulationResult(torch.zeros(3), "free")


def test_csv_roundtrip_and_bad_mode(tmp_path):
    u = ground_truth()
    results = accumulation_curves(u, toy_model(u, teacher_forced=True)(), toy_model(u)(), model="a")
    results += perturbation_results(toy_model(u), [2], 0.3, model="a")
    df = results_to_frame(results)
    path = write_accumulation_csv(df, tmp_path / "analysis" / "accumulation.csv")
    back = read_accumulation_csv(path)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert back["injected_scale"].isna().sum() == 10
    bad = tmp_path / "bad.csv"
    df.assign(mode="sideways").to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"bad\.csv: unknown mode\(s\) \['sideways'\]"):
        read_accumulation_csv(bad)


# ---------------------------------------------------------------------------------------- CLI on a tiny model
def tiny_experiment(root, methods_yaml: str | None = None):
    """An experiment YAML with a randomly initialised *tiny* AlignVAR (plumbing only: no number from it is
    ever reported) and a 2-image paired dataset (16 px LR, 64 px HR)."""
    pytest.importorskip("methods.alignvar.model")
    from skimage import data

    from harness.core.imageio import save_image
    from methods.alignvar.configs import AlignVARConfig, SCAConfig
    from methods.alignvar.model import AlignVAR

    torch.manual_seed(0)
    AlignVAR.from_config(AlignVARConfig(arch="tiny", sca=SCAConfig(mask_input="laplacian"))).save(
        root / "tiny.safetensors"
    )
    img = torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1).float() / 255
    for i in range(2):
        hr = torch.nn.functional.interpolate(img[None, :, 128 * i : 128 * i + 256, :256], size=(64, 64),
                                             mode="area")[0]  # fmt: skip
        save_image(hr, root / "hr" / f"im{i}.png")
        save_image(
            torch.nn.functional.interpolate(hr[None], size=(16, 16), mode="area")[0],
            root / "lr" / f"im{i}.png",
        )
    methods_yaml = methods_yaml or (
        f"  - type: alignvar\n    checkpoint: {root / 'tiny.safetensors'}\n    use_refiner: false\n"
    )
    path = root / "exp.yaml"
    path.write_text(
        f"name: tiny\noutput_root: {root / 'runs'}\n"
        f"datasets:\n  - type: paired\n    name: toy\n    lr_dir: {root / 'lr'}\n    hr_dir: {root / 'hr'}\n"
        f"methods:\n{methods_yaml}"
    )
    return path


def analyze(*argv: str) -> int:
    import argparse

    from harness.cli import analyze as cli
    from harness.core.logconfig import configure

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    configure(0)  # as harness.cli.main does: errors on stderr
    return cli.run(parser.parse_args(list(argv)))


def test_analyze_accumulation_on_a_tiny_model(tmp_path, capsys):
    exp = tiny_experiment(tmp_path)
    assert analyze("accumulation", str(exp), "--max-images", "1", "--perturb-scales", "2") == 0
    out = tmp_path / "runs" / "tiny" / "analysis"
    df = read_accumulation_csv(out / "accumulation.csv")
    assert {f"accumulation.{s}" for s in ("pdf", "svg", "png")} <= {p.name for p in out.iterdir()}
    tf = df[df["mode"] == "teacher_forced"]["error"].to_numpy()
    fr = df[df["mode"] == "free_running"]["error"].to_numpy()
    pert = df[df["mode"] == "perturbation"]["error"].to_numpy()
    assert df["scale"].tolist()[:4] == ["1x1", "2x2", "3x3", "4x4"]
    # scale 0 has the same (true, empty) prefix in both modes: identical predictions, identical error
    assert tf[0] == pytest.approx(fr[0], rel=1e-6)
    # corrupting scale 2 leaves scales 0 and 1 exactly unchanged and moves scale 2
    assert pert[:2].tolist() == [0.0, 0.0] and pert[2] > 0
    assert "accumulation: 1 image(s) of 'toy' with 'alignvar'" in capsys.readouterr().out
    # plot: the saved analysis of two "runs" side by side
    assert analyze("plot", str(out), str(out), "--names", "HCC off", "HCC on", "--output", str(tmp_path / "f")) == 0
    assert (tmp_path / "f" / "accumulation.pdf").is_file()


def test_analyze_refuses_non_var_methods(tmp_path, capsys):
    exp = tiny_experiment(tmp_path, methods_yaml="  - bicubic\n")
    assert analyze("accumulation", str(exp), "--max-images", "1") == 2
    assert "method 'bicubic' (Bicubic) is not a VAR-style model" in capsys.readouterr().err
    assert analyze("attention", str(exp), "--method", "nope") == 2
    assert "no method named 'nope'; valid: bicubic" in capsys.readouterr().err


# ------------------------------------------------------------------------- the model-facing adapter, pinned
def _oracle(model, hr_m11, schedule, wrong_scale: int | None = None):
    """Replace the transformer's teacher-forced forward by logits that put all mass on the HR tokens (except
    at ``wrong_scale``, shifted by one code): a model with perfect (or known-wrong) logits."""
    tok = model.vqvae.img_to_idx(hr_m11, schedule)
    idx = torch.cat(tok.idx, 1)
    if wrong_scale is not None:
        b, e = schedule.begin_ends[wrong_scale]
        idx = idx.clone()
        idx[:, b:e] = (idx[:, b:e] + 1) % model.vqvae.vocab_size
    logits = torch.nn.functional.one_hot(idx, model.vqvae.vocab_size).float() * 50.0

    def forward(lr, label, x_in, schedule=None, sca_gate=None, return_hidden=False):
        return logits.expand(label.shape[0], -1, -1)

    model.transformer.forward = forward
    return tok


@pytest.mark.parametrize("wrong_scale", [None, 0])
def test_teacher_forced_curve_of_a_model_with_perfect_logits(astronaut, wrong_scale):
    """Perfect logits: a zero teacher-forced curve. Wrong tokens at scale 0 only: error at scale 0 and exactly 0
    after it, since teacher forcing restarts every scale from the ground truth (a curve that fed back its own
    predictions would carry the scale-0 error into every later scale)."""
    from harness.analysis.probes import accumulated_latents, model_inputs
    from tests.tiny_models import make_tiny

    model = make_tiny("laplacian")
    hr = torch.nn.functional.interpolate(astronaut[None], size=(64, 64), mode="area")[0]
    lr = torch.nn.functional.interpolate(hr[None], size=(16, 16), mode="area")[0]
    lr_m11, hr_m11, schedule = model_inputs(model, lr, hr)
    _oracle(model, hr_m11, schedule, wrong_scale)
    free = [torch.zeros(1, n, dtype=torch.long) for n in schedule.tokens_per_scale]
    lat = accumulated_latents(model, lr_m11, hr_m11, schedule, free_tokens=free)
    errors = per_scale_latent_error(lat["teacher_forced"], lat["gt"])
    if wrong_scale is None:
        assert errors.tolist() == [0.0] * schedule.num_scales
    else:
        assert float(errors[0]) > 0 and errors[1:].tolist() == [0.0] * (schedule.num_scales - 1)


def test_random_sca_teacher_forced_pass_uses_the_seeded_map(astronaut):
    """With random SCA the teacher-forced pass draws its structure map from a generator seeded with
    ``config.seed`` (as the free-running run does), never from the global RNG."""
    from harness.analysis.probes import accumulated_latents, model_inputs
    from tests.tiny_models import make_tiny

    model = make_tiny("random")
    hr = torch.nn.functional.interpolate(astronaut[None], size=(64, 64), mode="area")[0]
    lr = torch.nn.functional.interpolate(hr[None], size=(16, 16), mode="area")[0]
    inputs = model_inputs(model, lr, hr)
    free = [torch.zeros(1, n, dtype=torch.long) for n in inputs[2].tokens_per_scale]
    gates = []
    gate_fn = model.sca.gate
    model.sca.gate = lambda tokens, s: gates.append(gate_fn(tokens, s)) or gates[-1]
    torch.manual_seed(1)
    accumulated_latents(model, *inputs, free_tokens=free)
    torch.manual_seed(2)
    accumulated_latents(model, *inputs, free_tokens=free)
    assert torch.equal(gates[0], gates[1])
    model.config.seed = 5  # another seed, another map, other gates: the pass does read the seeded map
    accumulated_latents(model, *inputs, free_tokens=free)
    assert not torch.equal(gates[0], gates[2])
    # and it is the map free_running's generation draws first (a fresh generator seeded with config.seed)
    maps = model.sca.guidance(inputs[0], inputs[2], torch.Generator().manual_seed(5))
    x_in = model.vqvae.quantize.idx_to_var_input(model.vqvae.img_to_idx(inputs[1], inputs[2]).idx, inputs[2])
    torch.testing.assert_close(gates[2], gate_fn(x_in, torch.cat(maps[1:], dim=1)), atol=0, rtol=0)


def test_defaults_passthrough_and_messages_pinned():
    u = ground_truth()
    tf, fr = toy_model(u, teacher_forced=True)(), toy_model(u)()
    curves = accumulation_curves(u, tf, fr, reduction="sse")
    assert curves[0].model == "" and curves[0].metric == "sse"
    assert torch.equal(curves[1].errors, per_scale_latent_error(fr, u, "sse"))  # the reduction is used
    labels = [f"{p}x{p}" for p in PN]
    (res,) = perturbation_results(toy_model(u), [2], 0.3, scales=labels)
    assert res.model == "" and list(res.scales) == labels
    # PSNR is per image, then averaged over the batch (not the PSNR of the batch's mean MSE)
    gt = [torch.zeros(2, 3, 4, 4)]
    pred = [torch.stack([torch.full((3, 4, 4), 0.1), torch.full((3, 4, 4), 0.01)])]  # 20 dB and 40 dB
    assert float(per_scale_psnr(pred, gt)[0]) == pytest.approx(30.0)
    with pytest.raises(ValueError, match=r"^per_scale_psnr: 1 predicted scales but 2 ground-truth scales$"):
        per_scale_psnr(pred, gt * 2)


def test_csv_io_messages_and_missing_model(tmp_path):
    u = ground_truth()
    df = results_to_frame(accumulation_curves(u, u, u))
    with pytest.raises(ValueError, match=r"x\.csv: accumulation table lacks columns \['error'\]"):
        write_accumulation_csv(df.drop(columns="error"), tmp_path / "x.csv")
    path = write_accumulation_csv(df, tmp_path / "a.csv")
    assert path.read_text().splitlines()[0] == ",".join(ACCUMULATION_COLUMNS)  # no index column
    back = read_accumulation_csv(path)
    assert set(back["model"]) == {""}  # an empty model name survives the round trip as ""
    df.drop(columns="scale").to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(ValueError, match=r"b\.csv: not an accumulation table, missing columns \['scale'\]; expected"):
        read_accumulation_csv(tmp_path / "b.csv")
    df.assign(mode="up").to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(ValueError, match=r"unknown mode\(s\) \['up'\]; valid: teacher_forced, free_running, "):
        read_accumulation_csv(tmp_path / "c.csv")


def test_perturbation_bounds_reduction_and_csv_dtypes(tmp_path):
    u = ground_truth()
    with pytest.raises(ValueError, match=r"scale 5 is outside 0\.\.4"):
        perturbation_curve(toy_model(u), 5, 0.1)  # one past the last scale
    sse = perturbation_curve(toy_model(u), 2, 0.3, reduction="sse")
    assert torch.allclose(sse, perturbation_curve(toy_model(u), 2, 0.3) * torch.tensor([C * p * p for p in PN]))
    (res,) = perturbation_results(toy_model(u), [2], 0.3, reduction="sse")
    assert torch.equal(res.errors, sse) and res.metric == "sse"
    df = results_to_frame([res]).assign(model="123")  # a numeric-looking model name stays a string
    back = read_accumulation_csv(write_accumulation_csv(df, tmp_path / "a.csv"))
    assert back["model"].tolist() == ["123"] * 5 and str(back["injected_scale"].dtype) == "Int64"


def test_scale_error_default_is_mse_and_low_rank_inputs_are_one_batch_axis():
    """``scale_error`` on its own: MSE by default; a 2-D (B, N) pair keeps its batch axis; a 1-D pair is one
    sample of N elements (pred - gt, not pred + gt)."""
    from harness.analysis.accumulation import scale_error

    pred = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 2.0]])
    gt = torch.zeros(2, 3)
    # squared errors: sample 0 sums to 14, sample 1 to 4
    assert float(scale_error(pred, gt)) == pytest.approx(18 / 6)  # default reduction: the mean
    assert float(scale_error(pred, gt, "sse")) == pytest.approx((14 + 4) / 2)  # per-sample sums, batch mean
    assert float(scale_error(pred, gt, "l2")) == pytest.approx((math.sqrt(14) + 2) / 2)
    one_d_pred, one_d_gt = torch.tensor([3.0, 1.0]), torch.tensor([1.0, 2.0])  # differences 2, -1
    assert float(scale_error(one_d_pred, one_d_gt)) == pytest.approx(5 / 2)
    assert float(scale_error(one_d_pred, one_d_gt, "sse")) == pytest.approx(5.0)
    assert float(scale_error(one_d_pred, one_d_gt, "l2")) == pytest.approx(math.sqrt(5))


def test_per_scale_psnr_averages_the_squared_error_over_channels_and_pixels():
    """One pixel of one channel off by 0.1 in a 3 x 4 x 4 image: MSE 0.01 / 48 over the image (not a per-pixel
    MSE, which would be 0 at the other 15 pixels)."""
    gt = torch.zeros(1, 3, 4, 4)
    pred = gt.clone()
    pred[0, 1, 2, 3] = 0.1
    assert float(per_scale_psnr([pred], [gt])[0]) == pytest.approx(10 * math.log10(48 / 0.01))


def test_empty_inputs_and_label_count_messages():
    with pytest.raises(ValueError, match=r"^per_scale_latent_error: no scales given$"):
        per_scale_latent_error([], [])
    with pytest.raises(ValueError, match=r"^3 scale labels for 2 errors$"):
        AccumulationResult(torch.zeros(2), "free_running", scales=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"^mode='perturbation' needs injected_scale$"):
        AccumulationResult(torch.zeros(2), "perturbation")
    empty = results_to_frame([])
    assert list(empty.columns) == list(ACCUMULATION_COLUMNS) and len(empty) == 0


def test_curves_without_an_injected_scale_keep_a_nullable_int_column():
    """A teacher-forced curve alone has no injected scale: the column is still pandas' nullable Int64 (all
    missing), not an object column of None."""
    df = AccumulationResult(torch.tensor([0.5, 0.25]), "teacher_forced").to_frame()
    assert str(df["injected_scale"].dtype) == "Int64" and df["injected_scale"].isna().all()
    assert df["scale"].tolist() == ["0", "1"] and df["error"].tolist() == [0.5, 0.25]
