"""SCA (``methods.alignvar.sca``) in exact numbers: the BT.601 luma in [0, 1], the min-max normalisation and its
constant-map rule, the gate MLP's shape and initialisation, the (k, tokens) closure used at inference, the
per-scale statistics of 2-D gates and of a schedule without gated scales, and the exact error messages.

Tolerances: luma of exact colours and min-max of small integers are compared with float32 rounding (1e-7);
everything else is bit for bit."""

from __future__ import annotations

import pytest
import torch

from methods.alignvar.sca import (
    SCAGate,
    gate_statistics,
    luma01,
    minmax_per_image,
    structure_maps,
)
from methods.alignvar.scales import ScaleSchedule


def test_luma_of_exact_colours_in_zero_one():
    colours = torch.tensor([[-1.0, -1, -1], [1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1], [0, 0, 0]])
    img = colours[:, :, None, None].expand(6, 3, 2, 2)  # six 2x2 images, each one colour, in [-1, 1]
    out = luma01(img)
    assert out.shape == (6, 1, 2, 2)
    want = torch.tensor([0.0, 1.0, 0.299, 0.587, 0.114, 0.5])
    torch.testing.assert_close(out[:, 0, 0, 0], want, atol=1e-7, rtol=0)


def test_minmax_per_image_and_the_constant_map_rule():
    x = torch.tensor([[2.0, 4.0, 6.0, 10.0], [3.0, 3.0, 3.0, 3.0], [0.0, 0.0, 0.0, 1e-9]]).view(3, 1, 2, 2)
    out = minmax_per_image(x)
    want = torch.tensor([[0.0, 0.25, 0.5, 1.0], [0, 0, 0, 0], [0, 0, 0, 0]]).view(3, 1, 2, 2)
    torch.testing.assert_close(out, want, atol=1e-7, rtol=0)  # a span <= eps (1e-8) is a constant map: 0
    just_above = minmax_per_image(torch.tensor([0.0, 0.0, 0.0, 2e-8]).view(1, 1, 2, 2))
    torch.testing.assert_close(just_above.flatten(), torch.tensor([0.0, 0.0, 0.0, 1.0]))
    exact = minmax_per_image(torch.tensor([0.0, 0.25, 0.5, 0.5]).view(1, 1, 2, 2), eps=0.5)
    assert torch.equal(exact, torch.zeros(1, 1, 2, 2))  # span == eps is not above it


def test_structure_maps_error_and_random_generator():
    sched = ScaleSchedule.from_sides([1, 2])
    lr = torch.zeros(2, 3, 32, 32)
    with pytest.raises(
        ValueError, match=r"^structure maps need mask_input 'laplacian', 'sobel', 'random', got 'none'$"
    ):
        structure_maps(lr, sched, "none")
    a = structure_maps(lr, sched, "random", torch.Generator().manual_seed(4))
    b = structure_maps(lr, sched, "random", torch.Generator().manual_seed(4))
    assert [m.shape for m in a] == [(2, 1, 1), (2, 4, 1)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    # a non-square LR: the noise has the LR's shape (H x W), area-resized to each grid; no generator: global RNG
    wide = torch.zeros(1, 3, 32, 48)
    rect = ScaleSchedule.from_sides([1, 2])
    torch.manual_seed(9)
    maps = structure_maps(wide, rect, "random")
    torch.manual_seed(9)
    noise = torch.rand(1, 1, 32, 48)
    raw = torch.nn.functional.interpolate(noise, size=(2, 2), mode="area").flatten(1)
    lo, hi = raw.amin(1, keepdim=True), raw.amax(1, keepdim=True)
    torch.testing.assert_close(maps[1][..., 0], (raw - lo) / (hi - lo))


def test_gate_module_shape_and_initialisation():
    torch.manual_seed(0)
    gate = SCAGate(16)
    assert gate.mask_input == "laplacian" and gate.cvae == 16
    first, last = gate.mlp[0], gate.mlp[2]
    assert (first.in_features, first.out_features) == (17, 64)  # [tokens, s] -> 64 hidden
    assert (last.in_features, last.out_features) == (64, 1)
    assert isinstance(gate.mlp[1], torch.nn.GELU)
    assert torch.equal(last.bias, torch.zeros(1))  # init_bias 0: m starts at 1/2
    assert 0.5e-3 < float(last.weight.detach().std()) < 2e-3  # std 1e-3 (64 normal draws)
    biased = SCAGate(8, hidden=4, mask_input="sobel", init_bias=-6.0)
    assert biased.mlp[0].out_features == 4 and biased.mask_input == "sobel"
    assert torch.equal(biased.mlp[2].bias, torch.tensor([-6.0]))
    with pytest.raises(ValueError, match=r"^mask_input 'none' means SCA off: do not build an SCAGate$"):
        SCAGate(16, mask_input="none")
    with pytest.raises(
        ValueError, match=r"^unknown mask_input 'canny'; valid choices: laplacian, sobel, random, none$"
    ):
        SCAGate(16, mask_input="canny")


def test_gate_is_the_sigmoid_of_the_mlp_of_tokens_and_map():
    torch.manual_seed(1)
    gate = SCAGate(3, hidden=5)
    tokens = torch.randn(2, 4, 3)
    s = torch.rand(2, 4, 1, dtype=torch.float64)  # the map is cast to the tokens' dtype
    m = gate.gate(tokens, s)
    with torch.no_grad():
        want = torch.sigmoid(gate.mlp(torch.cat([tokens, s.float()], dim=-1)))
    assert m.dtype == torch.float32 and torch.equal(m, want)
    maps = [torch.rand(2, 1, 1), torch.rand(2, 4, 1)]
    fn = gate.gate_fn(maps)
    assert torch.equal(fn(1, tokens), gate.gate(tokens, maps[1]))  # k selects that scale's map


def test_forward_errors_and_a_one_scale_schedule():
    gate = SCAGate(16)
    sched = ScaleSchedule.for_size(64, 64)  # 30 tokens: 29 gated inputs
    lr = torch.zeros(1, 3, 64, 64)
    with pytest.raises(ValueError, match=r"^x_in has 28 tokens but schedule 1_2_3_4 gives 29 inputs$"):
        gate(lr, torch.zeros(1, 28, 16), sched)
    two = ScaleSchedule.from_sides([1, 2])  # one gated scale: its map alone
    x_in = torch.randn(1, 4, 16, generator=torch.Generator().manual_seed(0))
    lr = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(gate(lr, x_in, two), gate.gate(x_in, gate.guidance(lr, two)[1]))
    one = ScaleSchedule.from_sides([1])
    out = gate(torch.zeros(3, 3, 16, 16), torch.zeros(3, 0, 16), one)
    assert out.shape == (3, 0, 1)


def test_gate_statistics_of_a_2d_gate_with_a_threshold_and_without_gated_scales():
    sched = ScaleSchedule.from_sides([1, 2])  # 4 gated inputs
    gate = torch.tensor([[0.1, 0.3, 0.6, 0.9]])
    st = gate_statistics(gate, sched, threshold=0.2)  # (B, L - 1) is accepted as well as (B, L - 1, 1)
    assert float(st["gate_open_s1"]) == 0.75 and float(st["gate_open"]) == 0.75
    assert float(gate_statistics(gate[..., None], sched)["gate_open"]) == 0.5  # default threshold 1/2
    torch.testing.assert_close(st["gate_mean"], torch.tensor(0.475))
    torch.testing.assert_close(st["gate_std"], gate.std(unbiased=False))  # population std, also overall
    assert set(st) == {"gate_mean_s1", "gate_std_s1", "gate_open_s1", "gate_mean", "gate_std", "gate_open"}
    empty = gate_statistics(torch.zeros(2, 0, 1), ScaleSchedule.from_sides([1]))
    assert empty == {}  # no gated scale, no token: no statistic
