"""The Real-ESRGAN pipeline's random choices and image operations in exact numbers: a scripted ``Sampler``
(every uniform draw given) makes each draw a closed form (which kernel, which size, which range, which stage's
options), the noise fields are the documented draws of the generator, and the operations' boundary rules
(padding mode, identity resize, quality range, 8-bit rounding) and error messages are pinned.

Tolerances: kernels built from the same closed form are compared bit for bit; the OpenCV sigma rule and the
noise fields with float32 rounding (1e-6)."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from harness.data.degradations import ops
from harness.data.degradations.base import make_generator
from harness.data.degradations.kernels import (
    KERNEL_TYPES,
    KernelSpec,
    Sampler,
    _draw_beta,
    draw_blur_kernel,
    draw_final_sinc,
    draw_kernel_size,
    draw_mixed_kernel,
    gaussian_kernel,
    generalized_gaussian_kernel,
    pad_kernel,
    plateau_kernel,
    pulse_kernel,
    sinc_cutoff_range,
    sinc_kernel,
)
from harness.data.degradations.realesrgan import RealESRGANDegradation, _draw_stage, _share, draw_sample
from harness.data.degradations.realesrgan_config import RealESRGANConfig


class Scripted(Sampler):
    """A Sampler whose uniform draws are given in advance (fails loudly when the script runs out)."""

    def __init__(self, *values: float) -> None:
        super().__init__(torch.Generator())
        self.values = list(values)

    def rand(self) -> float:
        if not self.values:
            raise AssertionError("the scripted sampler ran out of draws")
        return self.values.pop(0)


# ---------------------------------------------------------------------------------------------- sampler
def test_sampler_draws_are_closed_forms_of_the_uniform():
    g = torch.Generator().manual_seed(3)
    want = torch.rand((), generator=torch.Generator().manual_seed(3), dtype=torch.float64).item()
    assert Sampler(g).rand() == want
    assert Scripted(0.25).uniform(2.0, 6.0) == 3.0
    assert Scripted(0.3).bernoulli(0.4) is True and Scripted(0.4).bernoulli(0.4) is False  # u < p
    items = ("a", "b", "c", "d")
    assert [Scripted(u).choice(items) for u in (0.0, 0.25, 0.49, 0.5, 0.999)] == ["a", "b", "b", "c", "d"]
    assert Scripted(1.0).choice(items) == "d"  # u = 1 is clipped to the last item
    probs = (2.0, 3.0, 5.0)  # unnormalised: boundaries at 0.2 and 0.5 of the total
    assert [Scripted(u).choice("xyz", probs) for u in (0.0, 0.19, 0.2, 0.49, 0.5, 0.99)] == list("xxyyzz")
    assert Scripted(1.0).choice("xyz", probs) == "z"  # nothing left below u: the last item
    assert [Scripted(u).randint(3, 5) for u in (0.0, 0.34, 0.67, 0.99)] == [3, 4, 5, 5]  # both ends inclusive


# ---------------------------------------------------------------------------------------------- kernels
def test_kernel_size_and_beta_and_cutoff_draws():
    assert [draw_kernel_size(Scripted(u), (7, 13)) for u in (0.0, 0.26, 0.99)] == [7, 9, 13]  # odd sizes
    assert _draw_beta(Scripted(0.4, 0.5), (0.5, 4.0)) == 0.75  # u < 1/2: U(lo, 1)
    assert _draw_beta(Scripted(0.5, 0.5), (0.5, 4.0)) == 2.5  # else U(1, hi)
    assert sinc_cutoff_range(11) == (math.pi / 3, math.pi) and sinc_cutoff_range(12) == (math.pi / 3, math.pi)
    assert sinc_cutoff_range(13) == (math.pi / 5, math.pi)


SPEC = KernelSpec(blur_sigma=(1.0, 3.0), betag_range=(0.5, 4.0), betap_range=(1.0, 2.0), kernel_range=(7, 9))


@pytest.mark.parametrize(
    ("kind_u", "draws", "want"),
    [
        (0.0, (0.5,), lambda: gaussian_kernel(7, 2.0, 2.0, 0.0)),  # iso: sigma_y = sigma_x, no rotation
        (0.5, (0.5, 0.25, 0.75), lambda: gaussian_kernel(7, 2.0, 1.5, math.pi / 2)),  # aniso
        (0.71, (0.5, 0.0, 0.5), lambda: generalized_gaussian_kernel(7, 2.0, 2.0, 0.0, 0.75)),  # generalized_iso
        (0.84, (0.5, 0.25, 0.5, 0.9, 0.5), lambda: generalized_gaussian_kernel(7, 2.0, 1.5, 0.0, 2.5)),
        (0.9, (0.5, 0.9, 0.5), lambda: plateau_kernel(7, 2.0, 2.0, 0.0, 1.5)),  # plateau_iso (betap U(1, 2))
        (0.99, (0.5, 0.25, 0.75, 0.9, 0.25), lambda: plateau_kernel(7, 2.0, 1.5, math.pi / 2, 1.25)),
    ],
)
def test_mixed_kernel_of_each_type(kind_u, draws, want):
    # kernel_prob (0.45, 0.25, 0.12, 0.03, 0.12, 0.03): cumulative 0.45, 0.70, 0.82, 0.85, 0.97, 1.00
    s = Scripted(kind_u, *draws)
    out = draw_mixed_kernel(s, SPEC, 7)
    assert torch.equal(out, want()) and s.values == []


def test_blur_kernel_sinc_or_mixed_padded_to_the_spec():
    s = Scripted(0.0, 0.05, 0.5)  # size 7, sinc (u < 0.1), cutoff U(pi/3, pi) at 1/2 = 2 pi / 3
    out = draw_blur_kernel(s, SPEC)
    assert out.dtype == torch.float32 and out.shape == (21, 21)
    assert torch.equal(out, pad_kernel(sinc_kernel(2 * math.pi / 3, 7), 21).float())
    out = draw_blur_kernel(Scripted(0.99, 0.1, 0.0, 0.5), SPEC)  # size 9, no sinc (u = 0.1), iso sigma 2
    assert torch.equal(out, pad_kernel(gaussian_kernel(9, 2.0), 21).float())


def test_final_sinc_or_pulse():
    out = draw_final_sinc(Scripted(0.5, 0.99, 0.0), 0.6, kernel_range=(7, 11), pad_to=13)  # sinc, size 11
    assert torch.equal(out, pad_kernel(sinc_kernel(math.pi / 3, 11), 13).float())
    pulse = draw_final_sinc(Scripted(0.6), 0.6, pad_to=5)
    assert torch.equal(pulse, pulse_kernel(5).float()) and float(pulse[2, 2]) == 1.0 and float(pulse.sum()) == 1.0
    assert torch.equal(draw_final_sinc(Scripted(0.9), 0.8), pulse_kernel(21).float())  # default pad 21


def test_kernel_errors_and_closed_forms():
    with pytest.raises(ValueError, match=r"^sinc kernel size must be odd, got 8$"):
        sinc_kernel(1.0, 8)
    with pytest.raises(ValueError, match=r"^cannot pad a 7x7 kernel to 5x5 \(need an odd size <= 5\)$"):
        pad_kernel(torch.ones(7, 7), 5)
    with pytest.raises(ValueError, match=r"^cannot pad a 3x3 kernel to 6x6 \(need an odd size <= 6\)$"):
        pad_kernel(torch.ones(3, 3), 6)
    padded = pad_kernel(torch.ones(3, 3), 7)
    assert padded.shape == (7, 7) and float(padded[2:5, 2:5].sum()) == 9 and float(padded.sum()) == 9
    # the sinc's centre value wc^2 / (4 pi) before normalisation: ratio centre / neighbour
    wc = 2.0
    k = sinc_kernel(wc, 3)
    neighbour = wc * torch.special.bessel_j1(torch.tensor(wc, dtype=torch.float64)) / (2 * math.pi)
    torch.testing.assert_close(k[1, 1] / k[1, 2], (wc**2 / (4 * math.pi)) / neighbour)


# ---------------------------------------------------------------------------------------------- stages
CFG = RealESRGANConfig(
    kernel_range=(7, 7),
    sinc_prob=0.0,
    sinc_prob2=0.0,
    blur_sigma=(1.0, 3.0),
    blur_sigma2=(0.5, 1.0),
    kernel_list=("iso",),
    kernel_prob=(1.0,),
    kernel_list2=("iso",),
    kernel_prob2=(1.0,),
    resize_prob=(0.2, 0.7, 0.1),
    resize_prob2=(0.5, 0.25, 0.25),
    resize_range=(0.25, 1.5),
    resize_range2=(0.5, 1.25),
    gaussian_noise_prob=0.5,
    gaussian_noise_prob2=0.25,
    noise_range=(1.0, 31.0),
    noise_range2=(5.0, 15.0),
    poisson_scale_range=(0.5, 2.5),
    poisson_scale_range2=(1.0, 2.0),
    gray_noise_prob=0.4,
    gray_noise_prob2=0.6,
    jpeg_range=(30.0, 90.0),
    jpeg_range2=(60.5, 70.5),  # ceil / floor: qualities 61..70
    second_blur_prob=0.8,
    blur_kernel_size2=9,
)


def test_stage_one_draws_in_order_from_its_own_options():
    # size(1 choice) sinc? iso: kind, sigma | direction, scale, mode, gaussian?, sigma, poisson, gray?, quality
    s = Scripted(0.0, 0.5, 0.0, 0.5, 0.1, 0.5, 0.5, 0.3, 0.5, 0.25, 0.3, 0.5)
    d = _draw_stage(s, CFG, 1)
    assert s.values == []
    assert d.blur is True and torch.equal(d.kernel, pad_kernel(gaussian_kernel(7, 2.0), 21).float())
    assert d.resize_scale == 1.25  # "up" (u 0.1 < 0.2): U(1, 1.5) at 1/2
    assert d.resize_mode == "bilinear" and d.gaussian is True  # modes (area, bilinear, bicubic) at 1/2
    assert d.sigma == 16.0 / 255.0 and d.poisson_scale == 1.0 and d.gray_noise is True
    assert d.jpeg_quality == 60  # randint(30, 90) at 1/2: the 31st of 61 values
    down = _draw_stage(Scripted(0.0, 0.5, 0.0, 0.5, 0.5, 0.5, 0.0, 0.9, 0.0, 0.0, 0.9, 0.0), CFG, 1)
    assert down.resize_scale == 0.625 and down.resize_mode == "area"  # "down": U(0.25, 1) at 1/2
    assert down.gaussian is False and down.gray_noise is False and down.jpeg_quality == 30
    keep = _draw_stage(Scripted(0.0, 0.5, 0.0, 0.5, 0.95, 0.99, 0.0, 0.0, 0.0, 0.0, 0.99), CFG, 1)
    assert keep.resize_scale == 1.0 and keep.resize_mode == "bicubic" and keep.jpeg_quality == 90  # no draw


def test_stage_two_draws_from_the_stage_two_options():
    # blur? | size, sinc?, kind, sigma | direction, scale, mode, gaussian?, sigma, poisson, gray?, quality
    s = Scripted(0.8, 0.0, 0.5, 0.0, 0.5, 0.1, 0.5, 0.5, 0.2, 0.5, 0.5, 0.5, 0.0)
    d = _draw_stage(s, CFG, 2)
    assert s.values == []
    assert d.blur is False  # u = second_blur_prob: no second blur
    assert torch.equal(d.kernel, pad_kernel(gaussian_kernel(7, 0.75), 9).float())  # blur_sigma2, size 9
    assert d.resize_scale == 1.125  # "up" (u 0.1 < 0.5): U(1, 1.25) at 1/2
    assert d.gaussian is True and d.sigma == 10.0 / 255.0 and d.poisson_scale == 1.5
    assert d.gray_noise is True and d.jpeg_quality == 61
    down = _draw_stage(Scripted(0.1, 0.0, 0.5, 0.0, 0.5, 0.6, 0.5, 0.5, 0.3, 0.5, 0.5, 0.7, 0.99), CFG, 2)
    assert down.blur is True and down.resize_scale == 0.75 and down.gaussian is False
    assert down.gray_noise is False and down.jpeg_quality == 70


def test_sample_draw_order_and_final_stage():
    stage1 = (0.0, 0.5, 0.0, 0.5, 0.1, 0.5, 0.5, 0.3, 0.5, 0.25, 0.3, 0.5)
    stage2 = (0.8, 0.0, 0.5, 0.0, 0.5, 0.1, 0.5, 0.5, 0.2, 0.5, 0.5, 0.5, 0.0)
    final = (0.5, 0.0, 0.5, 0.99, 0.4, 0.0)  # sinc (0.5 < 0.8), size 7, cutoff 2pi/3 | mode, order, back mode
    s = Scripted(*stage1, *stage2, *final)
    d = draw_sample(s, CFG)
    assert s.values == []
    assert torch.equal(d.final_kernel, pad_kernel(sinc_kernel(2 * math.pi / 3, 7), 7).float())
    assert (d.final_mode, d.sinc_then_jpeg, d.back_mode) == ("bicubic", True, "area")
    assert d.first.jpeg_quality == 60 and d.second.jpeg_quality == 61


def test_batch_sharing_copies_only_the_batch_level_choices():
    deg = RealESRGANDegradation(RealESRGANConfig())
    a, b = deg.draw(2, make_generator(0))
    shared = _share([a, b])
    s0 = shared[0]
    assert (s0.final_mode, s0.sinc_then_jpeg, s0.back_mode) == (a.final_mode, a.sinc_then_jpeg, a.back_mode)
    assert s0.first.jpeg_quality == a.first.jpeg_quality and s0.second.sigma == a.second.sigma  # image 0 as is
    s1 = shared[1]
    for stage in ("first", "second"):
        for field in ("blur", "resize_scale", "resize_mode", "gaussian"):
            assert getattr(getattr(s1, stage), field) == getattr(getattr(a, stage), field)
        for field in ("sigma", "poisson_scale", "gray_noise", "jpeg_quality"):
            assert getattr(getattr(s1, stage), field) == getattr(getattr(b, stage), field)
        assert torch.equal(getattr(s1, stage).kernel, getattr(b, stage).kernel)
    assert (s1.final_mode, s1.sinc_then_jpeg, s1.back_mode) == (a.final_mode, a.sinc_then_jpeg, a.back_mode)
    assert torch.equal(s1.final_kernel, b.final_kernel)
    per_image = deg.draw(2, make_generator(0))
    assert per_image[1].first.resize_scale == b.first.resize_scale  # batch_shared off: image 1 keeps its own


# ------------------------------------------------------------------------------------------------- ops
def test_padding_mode_filter_errors_and_shared_kernel():
    img = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    assert ops._pad(img, 0) is img
    assert torch.equal(ops._pad(img, 3), F.pad(img, (3, 3, 3, 3), mode="reflect"))  # 3 < min(4, 5)
    assert torch.equal(ops._pad(img, 4), F.pad(img, (4, 4, 4, 4), mode="replicate"))  # too small to reflect
    box = torch.ones(3, 3) / 9
    shared = ops.filter2d(img, box)
    assert torch.equal(shared, ops.filter2d(img, box.expand(2, 3, 3)))
    torch.testing.assert_close(shared[0, 0, 1, 1], img[0, 0, :3, :3].mean())
    for bad in (torch.ones(3, 3, 3), torch.ones(2, 4, 4), torch.ones(2, 3, 5)):
        msg = rf"^filter2d: kernel {re_shape(bad)} does not fit images \(2, 3, 4, 5\)$"
        with pytest.raises(ValueError, match=msg):
            ops.filter2d(img, bad)


def re_shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape)).replace("(", r"\(").replace(")", r"\)")


def test_resize_rules():
    img = torch.rand(1, 3, 8, 6, generator=torch.Generator().manual_seed(0))
    assert ops.resize(img, "bicubic", size=(8, 6)) is img  # identity at the same size
    assert ops.resize(img, "area", scale=0.5).shape == (1, 3, 4, 3)
    assert ops.resize(img, "bilinear", scale=0.01).shape == (1, 3, 1, 1)  # at least one pixel
    assert ops.resize(img, "bilinear", size=(0, 0)).shape == (1, 3, 1, 1)
    assert torch.equal(ops.resize(img, "area", size=(4, 3)), F.interpolate(img, size=(4, 3), mode="area"))
    up = F.interpolate(img, size=(16, 12), mode="bicubic", align_corners=False)
    assert torch.equal(ops.resize(img, "bicubic", scale=2.0), up)
    with pytest.raises(ValueError, match=r"^unknown resize mode 'nearest'; valid choices: area, bilinear, bicubic$"):
        ops.resize(img, "nearest", size=(2, 2))
    with pytest.raises(ValueError, match=r"^resize: give size or scale$"):
        ops.resize(img, "area")


def test_gray_and_8bit_rounding():
    img = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]).view(3, 3, 1, 1)  # R, G, B images
    torch.testing.assert_close(ops.rgb_to_gray(img).flatten(), torch.tensor([0.299, 0.587, 0.114]))
    levels = torch.tensor([-0.1, 0.5 / 255, 0.49 / 255, 1.5 / 255, 1.2]).view(1, 1, 1, 5)
    assert ops.to_uint8(levels).flatten().tolist() == [0, 1, 0, 2, 255]  # round half up, clipped


def test_gaussian_noise_is_the_documented_draw():
    img = torch.zeros(3, 3, 4, 4)
    sigma = [0.1, 0.2, 0.3]
    gray = [False, True, False]
    noise = ops.gaussian_noise(img, sigma, gray, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    colour = torch.randn((3, 3, 4, 4), generator=g)  # colour noise first (not every image is gray) ...
    mono = torch.randn((3, 1, 4, 4), generator=g)  # ... then one luminance field
    want = torch.where(torch.tensor(gray).view(-1, 1, 1, 1), mono.expand(3, 3, 4, 4), colour)
    torch.testing.assert_close(noise, want * torch.tensor(sigma).view(-1, 1, 1, 1), atol=1e-6, rtol=0)
    only_gray = ops.gaussian_noise(img[:1], [1.0], [True], torch.Generator().manual_seed(7))
    first = torch.randn((1, 1, 4, 4), generator=torch.Generator().manual_seed(7))
    assert torch.equal(only_gray, first.expand(1, 3, 4, 4))  # no colour draw when every image is gray


def test_poisson_noise_levels_and_draw():
    img = torch.tensor([0.0, 0.2, 0.4, 0.4]).view(1, 1, 2, 2).expand(1, 3, 2, 2).contiguous()
    noise = ops.poisson_noise(img, [2.0], [False], torch.Generator().manual_seed(1))
    quant = img.mul(255).round().div(255)
    levels = 4.0  # 3 distinct 8-bit values -> 2 ** ceil(log2 3) = 4 photon levels
    counts = torch.poisson(quant * levels, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(noise, 2.0 * (counts / levels - quant), atol=1e-6, rtol=0)
    gray = ops.poisson_noise(img, [1.0], [True], torch.Generator().manual_seed(1))
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])  # luma noise on all


def test_jpeg_quality_checks_and_round_trip():
    img = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"^jpeg_encode: 1 qualities for a batch of 2$"):
        ops.jpeg_encode(img, [90])
    with pytest.raises(ValueError, match=r"^jpeg_encode: quality must be in 1\.\.100, got \[0, 101\]$"):
        ops.jpeg_encode(img[:1].expand(3, 3, 16, 16), [0, 50, 101])
    files = ops.jpeg_encode(img, [1, 100])
    assert len(files[0]) < len(files[1])  # both ends are valid; quality 1 is smaller
    out = ops.jpeg_compress(img.double(), [95, 95])
    assert out.dtype == torch.float64 and out.shape == img.shape
    assert torch.equal(out.float(), ops.jpeg_decode(ops.jpeg_encode(img, [95, 95])))


def test_opencv_sigma_rule_and_usm_defaults():
    taps = ops.opencv_gaussian_1d(5)  # sigma = 0.3 * ((5 - 1) / 2 - 1) + 0.8 = 1.1
    x = torch.arange(5, dtype=torch.float64) - 2
    want = torch.exp(-(x**2) / (2 * 1.1**2))
    torch.testing.assert_close(taps, (want / want.sum()).float(), atol=1e-7, rtol=0)
    assert torch.equal(ops.opencv_gaussian_1d(5, 1.1), taps)
    assert taps.dtype == torch.float32
    img = torch.zeros(1, 3, 24, 24)
    img[..., 8:16, 8:16] = 0.6
    k = ops.opencv_gaussian_1d(2 * 50 + 1)
    kernel = torch.outer(k, k)
    blur = ops.filter_fft(img, kernel)
    mask = ((img - blur).abs() * 255 > 10.0).float()
    soft = ops.filter_fft(mask, kernel)
    sharp = (img + 0.5 * (img - blur)).clamp(0, 1)
    assert torch.equal(ops.usm_sharpen(img), soft * sharp + (1 - soft) * img)  # weight 0.5, radius 50, thr 10


# ---------------------------------------------------------------------------------------------- bicubic
def test_resampling_kernels_closed_forms():
    from harness.data.degradations.bicubic import cubic, lanczos3

    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -0.5, -1.5], dtype=torch.float64)
    want = torch.tensor([1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0, 0.5625, -0.0625], dtype=torch.float64)
    assert torch.equal(cubic(x), want)  # Keys a = -0.5: 1.5|x|^3 - 2.5|x|^2 + 1, then -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2
    y = torch.tensor([0.0, 1.5, 3.0, -1.5, 2.9], dtype=torch.float64)
    out = lanczos3(y)
    assert out[0] == 1.0 and out[2] == 0.0  # support (-3, 3)
    torch.testing.assert_close(out[1], torch.tensor(-1 / (0.75 * math.pi**2), dtype=torch.float64))
    assert out[3] == out[1] and out[4] != 0


def test_resize_matrix_mirror_padding_and_errors():
    from harness.data.degradations.bicubic import cubic, imresize, resize_matrix

    assert torch.equal(resize_matrix(5, 5), torch.eye(5, dtype=torch.float64))  # same size: the identity
    mat = resize_matrix(4, 2)  # x 0.5, antialiased: the cubic stretched to width 8
    # output pixel 1 sits at u = 1.5; taps at 1-based positions -3..6, weights 0.5 cubic((u - i) / 2), and the
    # positions outside 1..4 mirrored back in ([1..n, n..1]): -3, -2, -1, 0 -> 4, 3, 2, 1; 5, 6 -> 4, 3
    idx = torch.arange(-3, 7, dtype=torch.float64)
    w = 0.5 * cubic((1.5 - idx) * 0.5)
    w = w / w.sum()
    target = [3, 2, 1, 0, 0, 1, 2, 3, 3, 2]
    row = torch.zeros(4, dtype=torch.float64).index_add_(0, torch.tensor(target), w)
    torch.testing.assert_close(mat[0], row, rtol=0, atol=1e-15)
    torch.testing.assert_close(mat[1], row.flip(0), rtol=0, atol=1e-15)  # the mirror image at the other end
    # no antialiasing: the plain cubic at u - i = 2.5 .. -2.5 for i = -1..4, i.e. 0, -1/16, 9/16, 9/16, -1/16, 0;
    # position 0 mirrors to 1 and -1 to 2: pixel 1 gets -1/16 + 9/16
    aliased = resize_matrix(4, 2, antialias=False)
    assert torch.equal(aliased[0], torch.tensor([0.5, 0.5625, -0.0625, 0.0], dtype=torch.float64))
    lz = resize_matrix(6, 3, kernel="lanczos3")
    torch.testing.assert_close(lz.sum(1), torch.ones(3, dtype=torch.float64))
    assert not torch.allclose(lz, resize_matrix(6, 3))
    with pytest.raises(ValueError, match=r"^unknown resampling kernel 'box'; valid choices: cubic, lanczos3$"):
        resize_matrix(4, 2, kernel="box")
    with pytest.raises(ValueError, match=r"^resize lengths must be positive, got 0 -> 2$"):
        resize_matrix(0, 2)
    with pytest.raises(ValueError, match=r"^resize lengths must be positive, got 3 -> 0$"):
        resize_matrix(3, 0)
    img = torch.rand(1, 2, 4, 6, generator=torch.Generator().manual_seed(0))
    out = imresize(img, (2, 3))
    want = resize_matrix(4, 2) @ img.double() @ resize_matrix(6, 3).T
    assert out.dtype == torch.float32 and torch.equal(out, want.float())


def test_bicubic_downsampling_options():
    from harness.data.degradations.bicubic import BicubicConfig, BicubicDegradation, downsample_bicubic, imresize

    img = torch.rand(1, 3, 8, 12, generator=torch.Generator().manual_seed(1))
    assert torch.equal(downsample_bicubic(img, 2), imresize(img, (4, 6)))
    assert torch.equal(downsample_bicubic(img, 2, antialias=False), imresize(img, (4, 6), antialias=False))
    torch_ds = F.interpolate(img, size=(4, 6), mode="bicubic", align_corners=False, antialias=True)
    assert torch.equal(downsample_bicubic(img, 2, "torch"), torch_ds)
    with pytest.raises(ValueError, match=r"^unknown bicubic kernel 'pil'; valid choices: matlab, torch$"):
        downsample_bicubic(img, 2, "pil")
    with pytest.raises(ValueError, match=r"^scale must be >= 1, got 0$"):
        BicubicConfig(scale=0)
    deg = BicubicDegradation(BicubicConfig(scale=2, quantize=False, kernel="torch", antialias=False))
    assert deg.scale == 2 and deg.quantize is False
    raw = F.interpolate(img, size=(4, 6), mode="bicubic", align_corners=False, antialias=False)
    assert torch.equal(deg(img), raw.clamp(0, 1))  # not quantised, clamped to [0, 1]
    default = BicubicDegradation()
    assert (default.scale, default.quantize, default.cfg.kernel, default.cfg.antialias) == (4, True, "matlab", True)


def test_degradation_base_checks_and_generator():
    from harness.core.imageio import quantize_8bit
    from harness.data.degradations.base import Degradation

    class Noise(Degradation):
        scale = 2

        def degrade(self, hr, generator):
            return hr[..., ::2, ::2] + torch.rand(hr[..., ::2, ::2].shape, generator=generator) - 0.5

    hr = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = Noise()(hr)  # no generator: seed 0; float64 in -> float32 degradation, clamped, 8-bit levels
    noise = torch.rand((1, 3, 2, 2), generator=make_generator(0)) - 0.5
    assert torch.equal(out, quantize_8bit((hr.float()[..., ::2, ::2] + noise).clamp(0, 1)))
    assert torch.equal(make_generator(3).get_state(), torch.Generator().manual_seed(3).get_state())
    with pytest.raises(ValueError, match=r"^Noise: expected HR of shape \(B, 3, H, W\), got \(3, 4, 4\)$"):
        Noise()(hr[0])
    with pytest.raises(ValueError, match=r"^Noise: expected HR of shape \(B, 3, H, W\), got \(1, 1, 4, 4\)$"):
        Noise()(hr[:, :1])
    msg = r"^Noise: HR size 4x5 is not divisible by scale 2; crop it to a multiple of 2 first$"
    with pytest.raises(ValueError, match=msg):
        Noise()(torch.rand(1, 3, 4, 5))
    with pytest.raises(ValueError, match=r"^Noise: HR size 5x4 is not divisible by scale 2"):
        Noise()(torch.rand(1, 3, 5, 4))
    with pytest.raises(NotImplementedError):
        Degradation().degrade(hr, make_generator(0))


# ------------------------------------------------------------------------------- boundary rules, continued
def test_lr_is_clamped_to_one_before_quantisation():
    from harness.data.degradations.base import Degradation

    class Bright(Degradation):
        scale, quantize = 1, False

        def degrade(self, hr, generator):
            return hr * 3 - 1  # values outside [0, 1] on both sides

    hr = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    assert torch.equal(Bright()(hr), (hr * 3 - 1).clamp(0, 1))


def test_single_pixel_resize_matrices():
    from harness.data.degradations.bicubic import resize_matrix

    assert torch.equal(resize_matrix(1, 3), torch.ones(3, 1, dtype=torch.float64))  # one pixel, mirrored
    torch.testing.assert_close(resize_matrix(4, 1).sum(), torch.tensor(1.0, dtype=torch.float64))
    assert resize_matrix(4, 1).shape == (1, 4)


def test_kernel_shape_defaults():
    q = torch.tensor([[2.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 2.0]], dtype=torch.float64)  # x^2 + y^2
    assert torch.equal(generalized_gaussian_kernel(3, 1.0), gaussian_kernel(3, 1.0))  # beta 1: the Gaussian
    plateau = 1.0 / (1.0 + q)  # beta 1
    torch.testing.assert_close(plateau_kernel(3, 1.0), plateau / plateau.sum(), rtol=0, atol=1e-15)


def test_noise_fields_in_float64_and_per_image_levels():
    img64 = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    noise = ops.gaussian_noise(img64, [0.1], [False], torch.Generator().manual_seed(2))
    draw = torch.randn((1, 3, 2, 2), generator=torch.Generator().manual_seed(2)).double()
    assert noise.dtype == torch.float64 and torch.equal(noise, draw * 0.1)  # sigma kept in float64
    # two images: 3 distinct levels (4 photon levels) and 5 (8), values outside [0, 1] clipped first
    a = torch.tensor([-0.2, 0.2, 0.4, 0.4])
    b = torch.tensor([0.0, 0.2, 0.6, 1.3])
    imgs = torch.stack([a, b]).view(2, 1, 2, 2).expand(2, 3, 2, 2).contiguous()
    field = ops._poisson_field(imgs, torch.Generator().manual_seed(4))
    quant = imgs.clamp(0, 1).mul(255).round().div(255)
    levels = torch.tensor([4.0, 4.0]).view(2, 1, 1, 1)  # a: {0, .2, .4}; b: {0, .2, .6, 1}
    counts = torch.poisson(quant * levels, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(field, counts / levels - quant, atol=1e-6, rtol=0)
    five = torch.tensor([0.0, 0.2, 0.4, 0.6, 0.8, 0.8]).view(1, 1, 2, 3).expand(1, 3, 2, 3).contiguous()
    mixed = torch.cat([five, torch.zeros(1, 3, 2, 3)])  # 5 distinct levels -> 8; 1 distinct -> 1
    f2 = ops._poisson_field(mixed, torch.Generator().manual_seed(4))
    q2 = mixed.mul(255).round().div(255)
    lv = torch.tensor([8.0, 1.0]).view(2, 1, 1, 1)
    c2 = torch.poisson(q2 * lv, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(f2, c2 / lv - q2, atol=1e-6, rtol=0)
    gray_mix = ops.poisson_noise(mixed, [1.0, 2.0], [False, True], torch.Generator().manual_seed(4))
    assert gray_mix.shape == (2, 3, 2, 3) and torch.equal(gray_mix[1, 0], gray_mix[1, 2])


def test_filter_casts_the_kernel_and_jpeg_keeps_white():
    img = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    k64 = gaussian_kernel(3, 1.0)
    out = ops.filter2d(img, k64)
    assert out.dtype == torch.float32 and torch.equal(out, ops.filter2d(img, k64.float()))
    white = torch.ones(1, 3, 16, 16)
    assert torch.equal(ops.jpeg_compress(white, [90]), white)  # 255 / 255 exactly


def test_degrade_batch_shape_message():
    deg = RealESRGANDegradation(RealESRGANConfig())
    with pytest.raises(
        ValueError, match=r"^RealESRGANDegradation: expected HR of shape \(B, 3, H, W\), got \(3, 8, 8\)$"
    ):
        deg.degrade_batch(torch.zeros(3, 8, 8), make_generator(0))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"resize_prob": (0.2, 0.7, 0.2)}, r"^resize_prob: \(up, down, keep\) probabilities must sum to 1$"),
        ({"jpeg_range": (0.5, 95.0)}, r"^jpeg_range: JPEG qualities must lie in \[1, 100\], got \[0\.5, 95\.0\]$"),
        (
            {"jpeg_range2": (30.0, 101.0)},
            r"^jpeg_range2: JPEG qualities must lie in \[1, 100\], got \[30\.0, 101\.0\]$",
        ),
        ({"gaussian_noise_prob2": 1.5}, r"^gaussian_noise_prob2: probabilities must lie in \[0, 1\], got 1\.5$"),
        ({"blur_sigma2": (0.0, 1.0)}, r"^blur_sigma2: sigmas must be > 0, got \[0\.0, 1\.0\]$"),
    ],
)
def test_config_checks_name_the_key(options, message):
    with pytest.raises(ValueError, match=message):
        RealESRGANConfig(**options)


def test_config_accepts_zero_low_ends_and_reads_kernel_info(tmp_path):
    RealESRGANConfig(noise_range=(0.0, 10.0), poisson_scale_range=(0.0, 1.0))  # 0 is a valid low end
    cfg = RealESRGANConfig(kernel_list2=("iso", "plateau_iso"), kernel_prob2=(0.5, 0.5), betap_range2=(1.5, 2.0))
    spec = cfg.kernel_spec(2)
    assert spec.kernel_list == ("iso", "plateau_iso") and spec.kernel_prob == (0.5, 0.5)
    assert spec.betap_range == (1.5, 2.0) and spec.pad_to == 21
    (tmp_path / "p.yml").write_text("kernel_info:\n  sinc_prob: 0.3\n  betap_range: [1.2, 2.0]\n")
    loaded = RealESRGANConfig.from_params_yaml(tmp_path / "p.yml")
    assert loaded.sinc_prob == 0.3 and loaded.betap_range == (1.2, 2.0)
    from harness.core.mapping import ConfigError

    missing = tmp_path / "none.yml"
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(missing))}: params file not found$"):
        RealESRGANConfig.from_params_yaml(missing)
    (tmp_path / "list.yml").write_text("- 1\n- 2\n")
    msg = rf"^{re.escape(str(tmp_path / 'list.yml'))}: expected a mapping at the top level$"
    with pytest.raises(ConfigError, match=msg):
        RealESRGANConfig.from_params_yaml(tmp_path / "list.yml")


def _matlab_matrix(n_in: int, n_out: int, antialias: bool = True) -> torch.Tensor:
    """MATLAB imresize's cubic weights written out with Python floats: output x at u = x / s + (1 - 1 / s) / 2,
    taps within half the (stretched) width, mirrored into 1..n, normalised per row."""
    from harness.data.degradations.bicubic import cubic

    s = n_out / n_in
    shrink = antialias and s < 1
    width = 4.0 / s if shrink else 4.0
    mat = torch.zeros(n_out, n_in, dtype=torch.float64)
    for x in range(1, n_out + 1):
        u = x / s + 0.5 * (1 - 1 / s)
        first = math.floor(u - width / 2)
        taps = [(i, u - i) for i in range(first, first + math.ceil(width) + 2)]
        w = [
            float(
                s * cubic(torch.tensor(d * s, dtype=torch.float64))
                if shrink
                else cubic(torch.tensor(d, dtype=torch.float64))
            )
            for _, d in taps
        ]
        total = sum(w)
        for (i, _), wi in zip(taps, w):
            j = (i - 1) % (2 * n_in)
            j = 2 * n_in - 1 - j if j >= n_in else j
            mat[x - 1, j] += wi / total
    return mat


@pytest.mark.parametrize(("n_in", "n_out", "antialias"), [(7, 3, True), (7, 3, False), (4, 6, True), (5, 13, True)])
def test_resize_matrix_is_matlabs_formula(n_in, n_out, antialias):
    from harness.data.degradations.bicubic import imresize, resize_matrix

    mat = resize_matrix(n_in, n_out, antialias=antialias)
    torch.testing.assert_close(mat, _matlab_matrix(n_in, n_out, antialias), rtol=0, atol=1e-12)
    img = torch.rand(1, 1, n_in, n_in, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(imresize(img, (n_out, n_out), antialias=antialias), mat @ img @ mat.T)


def test_bicubic_degradation_defaults_to_antialiased_matlab():
    from harness.core.imageio import quantize_8bit
    from harness.data.degradations.bicubic import BicubicConfig, BicubicDegradation, downsample_bicubic

    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    want = quantize_8bit(downsample_bicubic(img, 4, "matlab", True).clamp(0, 1))
    assert torch.equal(BicubicDegradation()(img), want)
    assert not torch.equal(want, quantize_8bit(downsample_bicubic(img, 4, "matlab", False).clamp(0, 1)))
    assert BicubicConfig(scale=1).scale == 1  # 1 is the smallest scale


# --------------------------------------------------------------------------------- pipeline (mutation tests)
def _photo(astronaut: torch.Tensor, size: int, batch: int = 1) -> torch.Tensor:
    return F.interpolate(astronaut[None], size=(size, size), mode="area").expand(batch, -1, -1, -1)


def test_pipeline_repr_and_messages_name_the_class(astronaut):
    cfg = RealESRGANConfig(resize_back=True)
    deg = RealESRGANDegradation(cfg)
    assert repr(deg) == f"RealESRGANDegradation({cfg!r})"
    with pytest.raises(
        ValueError, match=r"^RealESRGANDegradation: expected HR of shape \(B, 3, H, W\), got \(1, 1, 8, 8\)$"
    ):
        deg.degrade_batch(torch.zeros(1, 1, 8, 8), make_generator(0))
    msg = r"^RealESRGANDegradation: HR size 30x32 is not divisible by scale 4; crop it to a multiple of 4 first$"
    with pytest.raises(ValueError, match=msg):
        deg.degrade_batch(_photo(astronaut, 32)[..., :30, :], make_generator(0))


def test_batches_of_two_per_image_and_shared(astronaut):
    hr = _photo(astronaut, 32, batch=2)
    for shared in (False, True):
        out = RealESRGANDegradation(RealESRGANConfig(batch_shared=shared, resize_back=True)).degrade_batch(
            hr, make_generator(0)
        )
        assert out.lr.shape == (2, 3, 8, 8) and out.lr_up.shape == (2, 3, 32, 32), shared
        assert not torch.equal(out.lr[0], out.lr[1])  # the same photo, degraded twice (own kernels and noise)


def test_gt_sharpening_uses_the_configured_threshold(astronaut):
    hr = _photo(astronaut, 32)
    gt = RealESRGANDegradation(RealESRGANConfig(usm_threshold=40.0)).degrade_batch(hr, make_generator(0)).gt
    assert torch.equal(gt, ops.usm_sharpen(hr, 0.5, 50, 40.0))
    assert not torch.equal(gt, ops.usm_sharpen(hr))  # the default threshold 10 gives another target


def test_batch_sharing_also_shares_the_final_order():
    draws = RealESRGANDegradation(RealESRGANConfig()).draw(8, make_generator(0))
    assert {d.sinc_then_jpeg for d in draws} == {True, False}  # per image, both orders occur
    assert {d.sinc_then_jpeg for d in _share(draws)} == {draws[0].sinc_then_jpeg}


def test_second_stage_resizes_relative_to_the_lr_size_and_clips_the_noise(astronaut):
    """One image through ``_degrade_group`` with given draws: identity kernels, noise strong enough to leave
    [0, 1] (clipped before the final resize), stage 2 resized to 1.5 x (H / 4), then [resize + sinc] -> JPEG."""
    import dataclasses

    from harness.core.imageio import quantize_8bit

    deg = RealESRGANDegradation(RealESRGANConfig())
    (d,) = deg.draw(1, make_generator(0))
    pulse = pulse_kernel(21).float()
    noise = {"gaussian": True, "gray_noise": False, "jpeg_quality": 90, "resize_mode": "bilinear"}
    first = dataclasses.replace(d.first, kernel=pulse, resize_scale=1.0, sigma=0.1, **noise)
    second = dataclasses.replace(d.second, blur=False, resize_scale=1.5, sigma=0.2, **noise)
    d = dataclasses.replace(d, first=first, second=second, final_kernel=pulse, final_mode="bilinear")
    d = dataclasses.replace(d, sinc_then_jpeg=True)
    hr = _photo(astronaut, 64)
    out = deg._degrade_group(hr, [d], torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    x = (hr + ops.gaussian_noise(hr, [0.1], [False], g)).clamp(0, 1)
    x = ops.resize(ops.jpeg_compress(x, [90]), "bilinear", size=(24, 24))  # 64 / 4 * 1.5
    x = x + ops.gaussian_noise(x, [0.2], [False], g)
    assert float(x.min()) < 0 and float(x.max()) > 1  # the clip matters
    x = ops.jpeg_compress(ops.resize(x.clamp(0, 1), "bilinear", size=(16, 16)), [90])
    assert out.shape == (1, 3, 16, 16) and torch.equal(out, quantize_8bit(x))


def test_kernel_default_rotation_is_none_and_kernels_are_float64():
    """Anisotropic kernels without ``theta`` are axis-aligned closed forms (q = x^2 / sx^2 + y^2 / sy^2,
    x along columns); every kernel constructor returns float64 (the blur draws cast after padding)."""
    ax = torch.arange(5, dtype=torch.float64) - 2
    q = ax[None, :] ** 2 / 1.0**2 + ax[:, None] ** 2 / 2.0**2  # sx = 1, sy = 2

    def norm(k):
        return k / k.sum()

    exact = {"rtol": 0, "atol": 1e-15}
    torch.testing.assert_close(gaussian_kernel(5, 1.0, 2.0), norm(torch.exp(-0.5 * q)), **exact)
    torch.testing.assert_close(
        generalized_gaussian_kernel(5, 1.0, 2.0, beta=0.5), norm(torch.exp(-0.5 * q**0.5)), **exact
    )
    torch.testing.assert_close(plateau_kernel(5, 1.0, 2.0, beta=1.5), norm(1 / (1 + q**1.5)), **exact)
    kernels = (gaussian_kernel(3, 1.0), plateau_kernel(3, 1.0), sinc_kernel(2.0, 3), pulse_kernel(3))
    assert [k.dtype for k in kernels] == [torch.float64] * 4


def test_fft_filter_in_float64_and_at_odd_widths():
    """``filter_fft`` equals the direct correlation for float64 images (no float32 kernel on the way) and
    for odd widths (the inverse FFT is taken at the padded size, not at rfft's default even length)."""
    g = torch.Generator().manual_seed(0)
    k = gaussian_kernel(3, 0.8)
    img64 = torch.rand(1, 3, 9, 7, generator=g, dtype=torch.float64)
    out = ops.filter_fft(img64, k)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ops.filter2d(img64, k), rtol=0, atol=1e-12)
    img = torch.rand(2, 3, 6, 5, generator=g)
    torch.testing.assert_close(ops.filter_fft(img, k), ops.filter2d(img, k), rtol=0, atol=1e-6)


def test_gaussian_noise_keeps_a_half_image_dtype():
    img = torch.zeros(1, 3, 2, 2, dtype=torch.float16)
    sigma = torch.tensor(0.1, dtype=torch.float16)
    colour = ops.gaussian_noise(img, [0.1], [False], torch.Generator().manual_seed(2))
    draw = torch.randn((1, 3, 2, 2), generator=torch.Generator().manual_seed(2))
    assert colour.dtype == torch.float16 and torch.equal(colour, draw.half() * sigma)
    gray = ops.gaussian_noise(img, [0.1], [True], torch.Generator().manual_seed(2))
    mono = torch.randn((1, 1, 2, 2), generator=torch.Generator().manual_seed(2))
    assert gray.dtype == torch.float16 and torch.equal(gray, mono.half().expand(1, 3, 2, 2) * sigma)


def test_poisson_levels_count_values_seen_once_and_gray_draws_the_luma_only():
    img = torch.tensor([0.0, 0.2, 0.4, 0.6, 0.8, 1.0]).view(1, 3, 1, 2)  # 6 distinct values, each once -> 8
    field = ops._poisson_field(img, torch.Generator().manual_seed(4))
    counts = torch.poisson(img * 8.0, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(field, counts / 8.0 - img, atol=1e-6, rtol=0)
    rgb = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    noise = ops.poisson_noise(rgb, [2.0], [True], torch.Generator().manual_seed(5))
    luma = ops._poisson_field(ops.rgb_to_gray(rgb), torch.Generator().manual_seed(5))
    assert torch.equal(noise, luma.expand(1, 3, 4, 4) * 2.0)  # no colour field drawn before it


def test_opencv_taps_are_float64_closed_forms_and_small_sigmas_are_kept():
    def taps(size, sigma):
        x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
        t = torch.exp(-(x**2) / (2 * sigma**2))
        return (t / t.sum()).float()

    assert torch.equal(ops.opencv_gaussian_1d(7, 1.3), taps(7, 1.3))
    assert torch.equal(ops.opencv_gaussian_1d(5, 0.5), taps(5, 0.5))  # an explicit sigma <= 1 is used as given
    assert torch.equal(ops.opencv_gaussian_1d(5, 1.0), taps(5, 1.0))


def test_usm_mask_is_strictly_above_the_threshold_on_the_255_scale():
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    k = ops.opencv_gaussian_1d(5)
    residual = img - ops.filter_fft(img, torch.outer(k, k))
    top = float((residual.abs() * 255.0).max())
    assert torch.equal(ops.usm_sharpen(img, 0.5, 2, top), img)  # no pixel above the threshold: unchanged
    assert not torch.equal(ops.usm_sharpen(img, 0.5, 2, top * 0.999), img)


def test_config_bounds_are_inclusive_and_each_violation_names_its_key() -> None:
    """``RealESRGANConfig``'s checks: the documented lower bounds are accepted as they are (scale 1, JPEG
    quality 1, kernel size 1, USM radius 1) and every violation raises its exact message."""
    RealESRGANConfig(scale=1, jpeg_range=(1.0, 100.0), jpeg_range2=(1.0, 100.0), kernel_range=(1, 21), usm_radius=1)
    cases = [
        (dict(scale=0), "scale must be >= 1, got 0"),
        (dict(sinc_prob=1.5), "sinc_prob: probabilities must lie in [0, 1], got 1.5"),
        (dict(blur_sigma=(3.0, 0.2)), "blur_sigma: expected [low, high] with 0 <= low <= high, got [3.0, 0.2]"),
        (
            dict(kernel_list=("iso", "bogus")),
            "kernel_list: unknown kernel 'bogus'; valid choices: " + ", ".join(KERNEL_TYPES),
        ),
        (dict(kernel_prob=(0.25, 0.25, 0.0, 0.0, 0.0, 0.0)), "kernel_prob: probabilities must sum to 1, got 0.5000"),
        (dict(blur_kernel_size=22), "blur_kernel_size: must be odd and >= kernel_range[1] (21), got 22;"),
        (dict(kernel_range=(3, 20)), "kernel_range: expected two odd sizes 1 <= low <= high, got [3, 20]"),
        (dict(kernel_range=(4, 21)), "kernel_range: expected two odd sizes 1 <= low <= high, got [4, 21]"),
        (dict(usm_radius=0), "usm_radius: must be >= 1, got 0"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match="^" + re.escape(msg)):
            RealESRGANConfig(**kw)


def test_config_betag_range_reaches_the_kernel_spec_and_params_errors_name_the_file(tmp_path):
    """``kernel_spec`` passes each stage's ``betag_range`` on; a non-mapping ``kernel_info`` and an unknown key
    of a params file raise a ``ConfigError`` that names the file."""
    from harness.core.mapping import ConfigError

    cfg = RealESRGANConfig(betag_range=(1.0, 2.0), betag_range2=(0.7, 3.0))
    assert cfg.kernel_spec(1).betag_range == (1.0, 2.0) and cfg.kernel_spec(2).betag_range == (0.7, 3.0)
    bad_info = tmp_path / "info.yml"
    bad_info.write_text("kernel_info: [1, 2]\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(bad_info))}: kernel_info: expected a mapping$"):
        RealESRGANConfig.from_params_yaml(bad_info)
    unknown = tmp_path / "unknown.yml"
    unknown.write_text("bogus_key: 1\n")
    with pytest.raises(ConfigError, match=re.escape(str(unknown))) as err:
        RealESRGANConfig.from_params_yaml(unknown)
    assert "bogus_key" in str(err.value)
