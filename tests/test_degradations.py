"""Real-ESRGAN degradation: kernels (closed forms), ops (measured on real photos), pipeline, presets."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from harness.config.components import parse_component
from harness.core import registry
from harness.core.imageio import quantize_8bit
from harness.core.mapping import ConfigError
from harness.data.degradations import ops
from harness.data.degradations.base import make_generator
from harness.data.degradations.kernels import (
    KernelSpec,
    Sampler,
    draw_blur_kernel,
    draw_final_sinc,
    draw_kernel_size,
    gaussian_kernel,
    generalized_gaussian_kernel,
    pad_kernel,
    plateau_kernel,
    pulse_kernel,
    sinc_kernel,
)
from harness.data.degradations.realesrgan import RealESRGANDegradation
from harness.data.degradations.realesrgan_config import RealESRGANConfig, StableSRMildConfig


def laplacian_variance(img: torch.Tensor) -> float:
    """Variance of the 4-neighbour Laplacian of the luma (interior only): high-frequency energy."""
    y = ops.rgb_to_gray(img if img.dim() == 4 else img[None])[0, 0].double()
    lap = y[1:-1, :-2] + y[1:-1, 2:] + y[:-2, 1:-1] + y[2:, 1:-1] - 4 * y[1:-1, 1:-1]
    return float(lap.var())


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / ((a.double() - b.double()) ** 2).mean()))


@pytest.fixture(scope="module")
def photo(astronaut) -> torch.Tensor:
    """The astronaut, 256x256 (a real photo; area-downsampled so the tests stay fast)."""
    return torch.nn.functional.interpolate(astronaut[None], size=(256, 256), mode="area")


# ----------------------------------------------------------------------------------------------- kernels
def _moments(kernel: torch.Tensor) -> torch.Tensor:
    """The 2x2 covariance [[E x^2, E xy], [E xy, E y^2]] of a centred kernel (x along columns)."""
    k = kernel.shape[-1]
    ax = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    w = kernel.double()
    return torch.tensor(
        [[(w * xx * xx).sum(), (w * xx * yy).sum()], [(w * xx * yy).sum(), (w * yy * yy).sum()]],
        dtype=torch.float64,
    )


def test_gaussian_kernel_covariance_is_sigma_matrix():
    # isotropic: covariance sigma^2 I; anisotropic + rotation: R diag(sx^2, sy^2) R^T (truncation at 5 sigma)
    iso = gaussian_kernel(21, 1.5)
    assert torch.allclose(_moments(iso), torch.eye(2, dtype=torch.float64) * 2.25, atol=1e-6)
    sx, sy, theta = 2.0, 1.0, math.pi / 6
    aniso = gaussian_kernel(21, sx, sy, theta)
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    expected = rot @ torch.diag(torch.tensor([sx**2, sy**2], dtype=torch.float64)) @ rot.T
    assert torch.allclose(_moments(aniso), expected, atol=2e-3)


@pytest.mark.parametrize(
    "kernel",
    [
        gaussian_kernel(21, 2.0),
        generalized_gaussian_kernel(15, 1.2, beta=0.6),
        plateau_kernel(13, 1.7, beta=1.5),
        sinc_kernel(math.pi / 4, 21),
    ],
    ids=["gaussian", "generalized", "plateau", "sinc"],
)
def test_isotropic_kernels_sum_to_one_and_have_all_symmetries(kernel):
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(kernel, kernel.T)
    assert torch.allclose(kernel, kernel.flip(0)) and torch.allclose(kernel, kernel.flip(1))
    centre = kernel.shape[-1] // 2
    assert kernel[centre, centre] == kernel.max()


def test_anisotropic_kernel_is_point_symmetric_and_rotates():
    k = gaussian_kernel(21, 3.0, 1.0, 0.4)
    assert torch.allclose(k, k.flip(0).flip(1))  # any centred quadratic form: k(x) = k(-x)
    assert not torch.allclose(k, k.T, atol=1e-4)
    # a quarter turn swaps the axes: theta = pi/2 is the transpose of theta = 0
    assert torch.allclose(gaussian_kernel(21, 3.0, 1.0, math.pi / 2), gaussian_kernel(21, 3.0, 1.0, 0.0).T)


def test_generalized_and_plateau_closed_forms():
    assert torch.allclose(generalized_gaussian_kernel(21, 2.0, 1.3, 0.7, beta=1.0), gaussian_kernel(21, 2.0, 1.3, 0.7))
    p = plateau_kernel(5, 1.0, beta=1.0)  # 1 / (1 + r^2) normalised
    ax = torch.arange(5, dtype=torch.float64) - 2
    raw = 1 / (1 + ax[:, None] ** 2 + ax[None, :] ** 2)
    assert torch.allclose(p, raw / raw.sum())


def test_sinc_is_a_low_pass_with_the_requested_cutoff():
    k = sinc_kernel(math.pi / 3, 21)
    # frequency response along the x axis: H(w) = sum_x k(x, y) e^{-iwx}
    ax = torch.arange(21, dtype=torch.float64) - 10
    row = k.sum(0)

    def response(w):
        return float((row * torch.cos(w * ax)).sum())

    assert response(0.0) == pytest.approx(1.0)
    assert response(0.1 * math.pi) > 0.9  # pass band
    assert abs(response(0.8 * math.pi)) < 0.1  # stop band
    # the r = 0 value is the limit of wc J1(wc r) / (2 pi r): k(0) / k(1) = wc / (2 J1(wc))
    wc = torch.tensor(math.pi / 3, dtype=torch.float64)
    assert float(k[10, 10] / k[10, 11]) == pytest.approx(float(wc / (2 * torch.special.bessel_j1(wc))), rel=1e-9)


def test_pad_kernel_and_pulse():
    padded = pad_kernel(gaussian_kernel(7, 1.0), 21)
    assert padded.shape == (21, 21) and padded.sum().item() == pytest.approx(1.0)
    assert padded[:7].abs().sum() == 0 and padded[-7:].abs().sum() == 0
    with pytest.raises(ValueError, match="cannot pad a 9x9 kernel to 8x8"):
        pad_kernel(gaussian_kernel(9, 1.0), 8)
    assert pulse_kernel(5).sum() == 1 and pulse_kernel(5)[2, 2] == 1


def test_random_kernels_are_seeded_normalised_and_sized():
    spec = KernelSpec()
    a = [draw_blur_kernel(Sampler(make_generator(7)), spec) for _ in range(2)]
    assert torch.equal(a[0], a[1])
    s = Sampler(make_generator(1))
    for _ in range(40):
        k = draw_blur_kernel(s, spec)
        assert k.shape == (21, 21) and k.sum().item() == pytest.approx(1.0, abs=1e-5)
        assert int((k.abs().sum(1) > 0).sum()) % 2 == 1  # centred support
    assert {draw_kernel_size(s, (7, 21)) for _ in range(200)} == {7, 9, 11, 13, 15, 17, 19, 21}
    pulse = draw_final_sinc(Sampler(make_generator(0)), prob=0.0)
    assert torch.equal(pulse, pulse_kernel(21).float())


def test_sampler_choice_follows_probabilities():
    s = Sampler(make_generator(123))
    draws = [s.choice(("a", "b", "c"), (0.6, 0.3, 0.1)) for _ in range(3000)]
    assert draws.count("a") / 3000 == pytest.approx(0.6, abs=0.03)
    assert draws.count("c") / 3000 == pytest.approx(0.1, abs=0.02)
    assert {s.randint(3, 5) for _ in range(200)} == {3, 4, 5}


# ----------------------------------------------------------------------------------------------- ops
def test_blur_lowers_high_frequency_energy_monotonically(photo):
    energies = [laplacian_variance(photo)]
    for sigma in (0.5, 1.0, 2.0, 3.0):
        energies.append(laplacian_variance(ops.filter2d(photo, gaussian_kernel(21, sigma).float())))
    assert all(a > b for a, b in zip(energies, energies[1:])), energies


def test_filter2d_per_sample_kernels_identity_and_constant():
    x = torch.rand(2, 3, 40, 30, generator=make_generator(0))
    k1, k2 = gaussian_kernel(9, 1.0).float(), plateau_kernel(9, 2.0, 1.0, 0.3, 1.5).float()
    both = ops.filter2d(x, torch.stack([k1, k2]))
    assert torch.allclose(both[0:1], ops.filter2d(x[0:1], k1), atol=1e-6)
    assert torch.allclose(both[1:2], ops.filter2d(x[1:2], k2), atol=1e-6)
    assert torch.allclose(ops.filter2d(x, pulse_kernel(21).float()), x, atol=1e-6)
    flat = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(ops.filter2d(flat, k2), flat, atol=1e-6)  # sums to 1, reflect/replicate borders
    assert torch.allclose(ops.filter_fft(x, k2), ops.filter2d(x, k2), atol=1e-5)


def test_jpeg_size_and_psnr_increase_with_quality(photo):
    qualities = [10, 30, 50, 70, 90]
    batch = photo.expand(len(qualities), -1, -1, -1)
    sizes = [len(f) for f in ops.jpeg_encode(batch, qualities)]
    out = ops.jpeg_compress(batch, qualities)
    psnrs = [psnr(o, photo[0]) for o in out]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), sizes
    assert psnrs == sorted(psnrs) and psnrs[0] > 20, psnrs
    assert torch.equal(out[2:3], ops.jpeg_compress(photo, [50]))  # per-image quality in a batch
    with pytest.raises(ValueError, match=r"quality must be in 1..100, got \[0\]"):
        ops.jpeg_encode(photo, [0])


def test_gaussian_noise_std_matches_request():
    flat = torch.full((2, 3, 256, 256), 0.5)
    noise = ops.gaussian_noise(flat, [10 / 255, 25 / 255], [False, False], make_generator(0))
    assert noise[0].std().item() == pytest.approx(10 / 255, rel=0.02)
    assert noise[1].std().item() == pytest.approx(25 / 255, rel=0.02)
    assert abs(noise[0].mean().item()) < 1e-3
    corr = torch.corrcoef(noise[0].reshape(3, -1))
    assert corr[0, 1].abs() < 0.02  # colour noise: independent channels


def test_gray_noise_has_identical_channels(photo):
    g = ops.gaussian_noise(photo.expand(2, -1, -1, -1), [0.05, 0.05], [True, False], make_generator(1))
    assert torch.equal(g[0, 0], g[0, 1]) and torch.equal(g[0, 1], g[0, 2])
    assert not torch.equal(g[1, 0], g[1, 1])
    p = ops.poisson_noise(photo, [1.0], [True], make_generator(1))
    assert torch.equal(p[0, 0], p[0, 2]) and p.abs().sum() > 0


def test_poisson_noise_variance_scales_with_intensity():
    # 8 horizontal bands of distinct 8-bit levels -> 8 photon levels: Var = scale^2 * I / 8
    levels = torch.tensor([16, 48, 80, 112, 144, 176, 208, 240], dtype=torch.float32) / 255
    img = levels.repeat_interleave(32)[None, None, :, None].expand(1, 3, 256, 256).contiguous()
    scale = 0.5
    noise = ops.poisson_noise(img, [scale], [False], make_generator(2))
    measured = noise[0].reshape(3, 8, 32, 256).permute(1, 0, 2, 3).reshape(8, -1).var(dim=1)
    expected = scale**2 * levels.double() / 8
    assert torch.allclose(measured.double(), expected, rtol=0.06), (measured, expected)
    assert all(a < b for a, b in zip(measured, measured[1:]))


def test_usm_sharpens_edges_and_keeps_flat_regions(photo):
    sharp = ops.usm_sharpen(photo)
    assert laplacian_variance(sharp) > 1.2 * laplacian_variance(photo)
    assert 0 <= sharp.min() and sharp.max() <= 1
    flat = torch.full((1, 3, 120, 120), 0.4)
    assert torch.allclose(ops.usm_sharpen(flat), flat, atol=1e-6)
    taps = ops.opencv_gaussian_1d(101)  # OpenCV's sigma for ksize 101: 0.3 * 49 + 0.8 = 15.5
    assert float(taps[51] / taps[50]) == pytest.approx(math.exp(-1 / (2 * 15.5**2)), rel=1e-6)


def test_resize_sizes_and_modes():
    x = torch.rand(1, 3, 30, 40, generator=make_generator(0))
    for mode in ops.RESIZE_MODES:
        assert ops.resize(x, mode, size=(15, 20)).shape == (1, 3, 15, 20)
        assert ops.resize(x, mode, scale=0.5).shape == (1, 3, 15, 20)
        assert torch.equal(ops.resize(x, mode, size=(30, 40)), x)
    with pytest.raises(ValueError, match="unknown resize mode 'nearest'; valid choices: area, bilinear, bicubic"):
        ops.resize(x, "nearest", scale=2)


# ----------------------------------------------------------------------------------------------- pipeline
def test_same_seed_same_output_different_seed_differs(photo):
    deg = RealESRGANDegradation(StableSRMildConfig())
    torch.manual_seed(1)
    a = deg.degrade_batch(photo, make_generator(5))
    torch.manual_seed(2)  # the global RNG plays no part
    b = deg.degrade_batch(photo, make_generator(5))
    c = deg.degrade_batch(photo, make_generator(6))
    assert torch.equal(a.lr, b.lr)
    assert not torch.equal(a.lr, c.lr)


@pytest.mark.parametrize("hw,lr_hw", [((256, 256), (64, 64)), ((256, 192), (64, 48)), ((32, 48), (8, 12))])
def test_output_sizes_are_exact_and_8bit(photo, hw, lr_hw):
    hr = photo[..., : hw[0], : hw[1]]
    lr = RealESRGANDegradation(RealESRGANConfig())(hr, make_generator(0))
    assert lr.shape == (1, 3, *lr_hw)
    assert torch.equal(lr * 255, (lr * 255).round()) and 0 <= lr.min() and lr.max() <= 1


def test_512_to_128(astronaut):
    lr = RealESRGANDegradation(StableSRMildConfig())(astronaut[None], make_generator(0))
    assert lr.shape == (1, 3, 128, 128)
    assert psnr(torch.nn.functional.interpolate(astronaut[None], size=(128, 128), mode="area"), lr) > 15


def test_resize_back_gives_hr_size(photo):
    deg = RealESRGANDegradation(StableSRMildConfig(resize_back=True))
    out = deg.degrade_batch(photo, make_generator(0))
    assert out.lr.shape == (1, 3, 64, 64) and out.lr_up.shape == photo.shape
    assert torch.equal(deg(photo, make_generator(0)), out.lr_up)
    assert torch.equal(out.lr_up * 255, (out.lr_up * 255).round())


def test_usm_gt_only_for_x4plus(photo):
    x4 = RealESRGANDegradation(RealESRGANConfig()).degrade_batch(photo, make_generator(0))
    assert torch.allclose(x4.gt, ops.usm_sharpen(photo)) and not torch.equal(x4.gt, photo)
    mild = RealESRGANDegradation(StableSRMildConfig()).degrade_batch(photo, make_generator(0))
    assert torch.equal(mild.gt, photo)


def test_batch_draws_per_image_parameters_and_is_reproducible(photo):
    batch = photo[..., :128, :128].expand(4, -1, -1, -1)
    deg = RealESRGANDegradation(StableSRMildConfig())
    draws = deg.draw(4, make_generator(3))
    assert len({round(d.first.resize_scale, 6) for d in draws}) > 1
    assert len({d.second.jpeg_quality for d in draws} | {d.first.jpeg_quality for d in draws}) > 2
    assert all(not torch.equal(draws[0].first.kernel, d.first.kernel) for d in draws[1:])
    lr = deg(batch, make_generator(3))
    assert all(not torch.equal(lr[0], lr[i]) for i in range(1, 4))  # same photo, different degradations
    assert torch.equal(lr, deg(batch, make_generator(3)))


def test_batch_shared_shares_only_batch_level_choices(photo):
    batch = photo[..., :128, :128].expand(3, -1, -1, -1)
    deg = RealESRGANDegradation(StableSRMildConfig(batch_shared=True))
    draws = deg.draw(3, make_generator(4))
    for stage in ("first", "second"):
        assert len({(getattr(d, stage).resize_scale, getattr(d, stage).resize_mode) for d in draws}) == 1
    assert len({d.sinc_then_jpeg for d in draws}) == 1
    assert not torch.equal(draws[0].first.kernel, draws[1].first.kernel)  # kernels stay per image
    lr = deg(batch, make_generator(4))
    assert lr.shape == (3, 3, 32, 32) and torch.equal(lr, deg(batch, make_generator(4)))


def test_rejects_hr_not_divisible_by_scale(photo):
    with pytest.raises(ValueError, match="HR size 30x32 is not divisible by scale 4"):
        RealESRGANDegradation().degrade_batch(photo[..., :30, :32], make_generator(0))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_with_a_cuda_generator(photo):
    deg = RealESRGANDegradation(RealESRGANConfig(resize_back=True))
    hr = photo.expand(2, -1, -1, -1).cuda()
    a = deg.degrade_batch(hr, make_generator(0, "cuda"))
    b = deg.degrade_batch(hr, make_generator(0, "cuda"))
    assert a.lr.is_cuda and a.lr.shape == (2, 3, 64, 64) and a.lr_up.shape == hr.shape
    # same draws; GPU kernels may round differently between runs, so allow one 8-bit level
    assert (a.lr - b.lr).abs().max() <= 1 / 255 + 1e-6 and (a.lr != b.lr).float().mean() < 1e-3


# ------------------------------------------------------------------------------------------- presets, YAML
MILD_KEYS = {
    "resize_range": (0.3, 1.5),
    "noise_range": (1.0, 15.0),
    "poisson_scale_range": (0.05, 2.0),
    "jpeg_range": (60.0, 95.0),
    "second_blur_prob": 0.5,
    "resize_range2": (0.6, 1.2),
    "noise_range2": (1.0, 12.0),
    "poisson_scale_range2": (0.05, 1.0),
    "jpeg_range2": (60.0, 100.0),
    "use_usm": False,
}


def test_presets_differ_exactly_in_the_documented_keys():
    x4, mild = dataclasses.asdict(RealESRGANConfig()), dataclasses.asdict(StableSRMildConfig())
    assert {k for k in x4 if x4[k] != mild[k]} == set(MILD_KEYS)
    assert {k: mild[k] for k in MILD_KEYS} == MILD_KEYS
    assert (x4["resize_range"], x4["noise_range"], x4["jpeg_range2"], x4["use_usm"]) == (
        (0.15, 1.5),
        (1.0, 30.0),
        (30.0, 95.0),
        True,
    )
    entries = registry.list_entries("degradations")
    assert entries["realesrgan_x4plus"].config is RealESRGANConfig
    assert entries["stablesr_mild"].config is StableSRMildConfig


KERNELS = "['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso', 'plateau_aniso']"


def test_varsr_params_file_is_the_mild_preset(tmp_path):
    # qyp2000/VARSR dataloader/params_realesrgan.yml (= PASD's), values from the reference notes
    (tmp_path / "params.yml").write_text(
        "scale: 4\ncolor_jitter_prob: 0.0\ngray_prob: 0.0\n"
        "resize_prob: [0.2, 0.7, 0.1]\nresize_range: [0.3, 1.5]\ngaussian_noise_prob: 0.5\n"
        "noise_range: [1, 15]\npoisson_scale_range: [0.05, 2.0]\ngray_noise_prob: 0.4\njpeg_range: [60, 95]\n"
        "second_blur_prob: 0.5\nresize_prob2: [0.3, 0.4, 0.3]\nresize_range2: [0.6, 1.2]\n"
        "gaussian_noise_prob2: 0.5\nnoise_range2: [1, 12]\npoisson_scale_range2: [0.05, 1.0]\n"
        "gray_noise_prob2: 0.4\njpeg_range2: [60, 100]\n"
        "kernel_info:\n"
        f"  kernel_list: {KERNELS}\n"
        "  kernel_prob: [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]\n  sinc_prob: 0.1\n  blur_sigma: [0.2, 3]\n"
        "  betag_range: [0.5, 4]\n  betap_range: [1, 2]\n"
        f"  kernel_list2: {KERNELS}\n"
        "  kernel_prob2: [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]\n  sinc_prob2: 0.1\n  blur_sigma2: [0.2, 1.5]\n"
        "  betag_range2: [0.5, 4]\n  betap_range2: [1, 2]\n  final_sinc_prob: 0.8\n"
    )
    loaded = RealESRGANConfig.from_params_yaml(tmp_path / "params.yml", use_usm=False)
    assert dataclasses.asdict(loaded) == dataclasses.asdict(StableSRMildConfig())
    (tmp_path / "bad.yml").write_text("gray_prob: 0.1\n")
    with pytest.raises(ConfigError, match="bad.yml: gray_prob: GT colour augmentation is not supported"):
        RealESRGANConfig.from_params_yaml(tmp_path / "bad.yml")


def test_yaml_override_takes_effect(photo):
    spec = parse_component(
        "degradations",
        {"type": "stablesr_mild", "jpeg_range": [42, 42], "jpeg_range2": [77, 77]},
        "d",
        "exp.yaml",
    )
    assert spec.options.jpeg_range == (42.0, 42.0) and spec.options.noise_range == (1.0, 15.0)
    deg = spec.create()
    draws = deg.draw(5, make_generator(0))
    assert {d.first.jpeg_quality for d in draws} == {42} and {d.second.jpeg_quality for d in draws} == {77}
    assert all(1 / 255 <= d.first.sigma <= 15 / 255 and 1 / 255 <= d.second.sigma <= 12 / 255 for d in draws)
    assert all(0.05 <= d.first.poisson_scale <= 2.0 and 0.6 <= d.second.resize_scale <= 1.2 for d in draws)
    default = registry.create("degradations", "stablesr_mild")
    assert not torch.equal(deg(photo, make_generator(0)), default(photo, make_generator(0)))
    assert spec.to_dict()["jpeg_range2"] == [77.0, 77.0]


@pytest.mark.parametrize(
    "options,message",
    [
        ({"jpeg_rang": [1, 2]}, "d.jpeg_rang: unknown key; valid keys: scale, blur_kernel_size"),
        (
            {"kernel_list": ["iso", "box"], "kernel_prob": [0.5, 0.5]},
            "unknown kernel 'box'; valid choices: iso",
        ),
        ({"kernel_prob": [0.5, 0.5]}, "kernel_prob: 2 probabilities for 6 kernels in kernel_list"),
        ({"jpeg_range2": [95, 60]}, r"jpeg_range2: expected \[low, high\] with 0 <= low <= high"),
        (
            {"resize_modes": ["nearest"]},
            "resize_modes: expected a non-empty subset of area, bilinear, bicubic",
        ),
        ({"kernel_range": [7, 25]}, r"blur_kernel_size: must be odd and >= kernel_range\[1\] \(25\)"),
        ({"noise_range": 5}, r"d.noise_range: expected tuple\[float, float\], got 5"),
    ],
)
def test_invalid_options_name_the_key(options, message):
    with pytest.raises(ConfigError, match=message):
        parse_component("degradations", {"type": "realesrgan_x4plus", **options}, "d", "exp.yaml")


# ------------------------------------------------------------------------- the pipeline as a composition
def _forced_config(**extra) -> RealESRGANConfig:
    """Every probability 0 or 1, every range a point: the only random choices left are the noise fields and the
    final-stage order (a fair coin in Real-ESRGAN, not configurable)."""
    one = {"kernel_list": ("iso",), "kernel_prob": (1.0,), "sinc_prob": 0.0, "kernel_range": (9, 9)}
    return RealESRGANConfig(
        **one,
        blur_kernel_size=9,
        blur_sigma=(1.5, 1.5),
        resize_prob=(0.0, 0.0, 1.0),  # keep
        gaussian_noise_prob=1.0,
        noise_range=(8.0, 8.0),
        gray_noise_prob=0.0,
        jpeg_range=(70.0, 70.0),
        second_blur_prob=1.0,
        kernel_list2=("iso",),
        kernel_prob2=(1.0,),
        sinc_prob2=0.0,
        blur_kernel_size2=9,
        blur_sigma2=(0.8, 0.8),
        resize_prob2=(0.0, 0.0, 1.0),
        gaussian_noise_prob2=0.0,  # Poisson in the second stage
        poisson_scale_range2=(0.5, 0.5),
        gray_noise_prob2=1.0,
        jpeg_range2=(85.0, 85.0),
        final_sinc_prob=0.0,
        resize_modes=("bilinear",),
        resize_back=True,
        **extra,
    )


@pytest.mark.parametrize("use_usm", [False, True])
def test_forced_pipeline_equals_the_hand_composition_of_its_stages(photo, use_usm):
    hr = photo[..., :128, :128]
    deg = RealESRGANDegradation(_forced_config(use_usm=use_usm))
    orders = set()
    for seed in range(6):
        out = deg.degrade_batch(hr, make_generator(seed))
        g = make_generator(seed)
        (d,) = deg.draw(1, g)  # the same draws, in the same order, from the same seed
        assert (d.first.resize_scale, d.second.resize_scale, d.first.jpeg_quality, d.second.jpeg_quality) == (
            1.0,
            1.0,
            70,
            85,
        )
        gt = ops.usm_sharpen(hr) if use_usm else hr
        x = ops.filter2d(gt, gaussian_kernel(9, 1.5).float())
        x = (x + ops.gaussian_noise(x, [8 / 255], [False], g)).clamp(0, 1)
        x = ops.jpeg_compress(x, [70])
        x = ops.filter2d(x, gaussian_kernel(9, 0.8).float())
        x = ops.resize(x, "bilinear", size=(32, 32))
        x = (x + ops.poisson_noise(x, [0.5], [True], g)).clamp(0, 1)
        if d.sinc_then_jpeg:  # the final filter is the identity (final_sinc_prob 0)
            x = ops.jpeg_compress(ops.resize(x, "bilinear", size=(32, 32)), [85])
        else:
            x = ops.resize(ops.jpeg_compress(x, [85]), "bilinear", size=(32, 32))
        orders.add(d.sinc_then_jpeg)
        lr = quantize_8bit(x)
        assert torch.equal(out.lr, lr), seed
        assert torch.equal(out.gt, gt)
        assert torch.equal(out.lr_up, quantize_8bit(ops.resize(lr, "bilinear", size=(128, 128))))
    assert orders == {True, False}  # both final orders were exercised
