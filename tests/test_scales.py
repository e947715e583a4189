"""ScaleSchedule: the official VARSR token grid, the rule for other sizes, and VAR's phi selection."""

from __future__ import annotations

import numpy as np
import pytest

from methods.alignvar.scales import OFFICIAL_PATCH_NUMS, ScaleSchedule, phi_ticks


def test_official_schedule_numbers():
    s = ScaleSchedule.official()
    assert s.patch_nums == tuple((p, p) for p in (1, 2, 3, 4, 6, 9, 13, 18, 24, 32))
    assert s.num_scales == 10
    assert s.total_tokens == 2240
    assert s.latent_hw == (32, 32)
    assert s.image_hw == (512, 512)
    # offsets from the golden README: [0,1,5,14,30,66,147,316,640,1216,2240]
    assert [b for b, _ in s.begin_ends] + [s.begin_ends[-1][1]] == [
        0,
        1,
        5,
        14,
        30,
        66,
        147,
        316,
        640,
        1216,
        2240,
    ]
    assert str(s) == "1_2_3_4_6_9_13_18_24_32"


def test_for_size_512_is_exactly_official():
    assert ScaleSchedule.for_size(512, 512) == ScaleSchedule.official()


def test_phi_selection_matches_varsr():
    s = ScaleSchedule.official()
    assert [s.phi_index(k) for k in range(10)] == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert phi_ticks(4) == pytest.approx([1 / 12, 13 / 36, 23 / 36, 11 / 12])
    # Same rule as VAR's PhiPartiallyShared for other scale counts (np.argmin over float64 linspace ticks).
    ticks = np.linspace(1 / 12, 11 / 12, 4)
    for k_total in (2, 4, 7, 13):
        sched = ScaleSchedule.from_sides(list(range(1, k_total + 1)))
        expect = [int(np.argmin(np.abs(ticks - k / (k_total - 1)))) for k in range(k_total)]
        assert [sched.phi_index(k) for k in range(k_total)] == expect
    with pytest.raises(IndexError, match="scale index 10 out of range"):
        s.phi_index(10)


def test_non_square_256x384():
    s = ScaleSchedule.for_size(256, 384)
    assert s.patch_nums == (
        (1, 1), (1, 2), (2, 2), (2, 3), (3, 5), (5, 7), (7, 10), (9, 14), (12, 18), (16, 24),
    )  # fmt: skip
    counts = s.tokens_per_scale
    assert all(b > a for a, b in zip(counts, counts[1:])), counts
    for (h0, w0), (h1, w1) in zip(s.patch_nums, s.patch_nums[1:]):
        assert h1 >= h0 and w1 >= w0
    assert s.latent_hw == (16, 24) and s.image_hw == (256, 384)
    assert s.total_tokens == sum(h * w for h, w in s.patch_nums) == s.begin_ends[-1][1]


def test_small_and_large_sizes():
    # 64 px: latent 4x4, duplicates dropped -> fewer scales
    assert ScaleSchedule.for_size(64, 64).patch_nums == ((1, 1), (2, 2), (3, 3), (4, 4))
    assert ScaleSchedule.for_size(16, 16).patch_nums == ((1, 1),)
    big = ScaleSchedule.for_size(1024, 1024)
    assert [h for h, _ in big.patch_nums] == [1, 4, 6, 8, 12, 18, 26, 36, 48, 64]
    assert big.num_scales == len(OFFICIAL_PATCH_NUMS)


@pytest.mark.parametrize("size", [(500, 512), (512, 500), (0, 512)])
def test_for_size_rejects_non_multiples(size):
    with pytest.raises(ValueError, match=rf"image size {size[0]}x{size[1]} is not supported: .* multiple of 16"):
        ScaleSchedule.for_size(*size)


def test_invalid_schedules_are_rejected():
    with pytest.raises(ValueError, match="scale 1 grid 1x1 does not grow from scale 0"):
        ScaleSchedule(((2, 2), (1, 1)))
    with pytest.raises(ValueError, match="scale 1 grid 2x2 does not grow"):
        ScaleSchedule(((2, 2), (2, 2)))
    with pytest.raises(ValueError, match="sides must be >= 1"):
        ScaleSchedule(((0, 1),))
    with pytest.raises(ValueError, match="cannot parse scale sides"):
        ScaleSchedule.from_sides("1_two_3")
    assert ScaleSchedule.from_sides("1_2_3").patch_nums == ((1, 1), (2, 2), (3, 3))
