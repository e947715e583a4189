"""Efficiency helpers: closed-form parameter counts, latency-stat structure, CPU peak memory, the table."""

from __future__ import annotations

import time

import pytest
import torch

from harness.bench.efficiency import (
    TABLE_COLUMNS,
    LatencyStats,
    count_parameters,
    efficiency_table,
    measure_latency,
    peak_memory,
    throughput_vs_batch,
)
from harness.core.imageio import save_image
from harness.core.registry import create
from methods.base import SRMethod

MIB = 2**20


class TinyNet(SRMethod):
    """conv 3->8 (3x3, bias): 3*8*9 + 8 = 224 params; linear 8->4: 8*4 + 4 = 36; nearest upscale output."""

    inference_steps = 1

    def __init__(self, tied: bool = False) -> None:
        super().__init__()
        self.encoder = torch.nn.Conv2d(3, 8, 3)
        self.head = torch.nn.Linear(8, 4)
        self.tied = tied
        self.calls = 0

    def modules(self) -> dict[str, torch.nn.Module]:
        mods = {"encoder": self.encoder, "head": self.head}
        if self.tied:
            mods["encoder_again"] = self.encoder  # shared weights: counted once in the total
        return mods

    def upscale(self, lr, keys):
        self.calls += 1
        return torch.nn.functional.interpolate(lr, scale_factor=self.scale)


class Sleeper(SRMethod):
    """Sleeps ``seconds`` per image: every timed call takes at least that long."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.calls = 0

    def upscale(self, lr, keys):
        self.calls += 1
        time.sleep(self.seconds * lr.shape[0])
        return torch.zeros(lr.shape[0], 3, lr.shape[2] * 4, lr.shape[3] * 4)


class Allocator(SRMethod):
    """Holds ``nbytes`` of freshly written memory during the call, then frees it."""

    def __init__(self, nbytes: int) -> None:
        super().__init__()
        self.nbytes = nbytes

    def upscale(self, lr, keys):
        if self.nbytes:
            buf = torch.ones(self.nbytes // 4, dtype=torch.float32)  # written: resident
            del buf
        return torch.zeros(lr.shape[0], 3, lr.shape[2] * 4, lr.shape[3] * 4)


@pytest.fixture
def output_folder(tmp_path):
    folder = tmp_path / "sr"
    folder.mkdir()
    for key in ("a", "b", "c"):
        save_image(torch.zeros(3, 16, 16), folder / f"{key}.png")
    csv = tmp_path / "timings.csv"
    csv.write_text("image,seconds\na.png,2.0\nb.png,4.0\nc.png,9.0\n")
    return create("methods", "output_folder", {"path": str(folder), "timings_csv": str(csv), "inference_steps": 1})


def test_count_parameters_closed_form():
    assert count_parameters(TinyNet()) == {"total": 260, "encoder": 224, "head": 36}
    assert count_parameters(TinyNet(tied=True)) == {
        "total": 260,
        "encoder": 224,
        "head": 36,
        "encoder_again": 224,
    }
    assert count_parameters(Sleeper(0)) == {"total": 0}  # no learned parameters: genuinely zero


def test_count_parameters_unknown_for_precomputed_and_external(output_folder):
    assert count_parameters(output_folder) == {"total": None}
    command = create("methods", "command", {"command": "tool {input} {output}"})
    assert count_parameters(command) == {"total": None}
    command.close()


def test_latency_stats_closed_form():
    stats = LatencyStats.from_samples([3.0, 1.0, 10.0, 2.0, 4.0], batch_size=2)
    assert (stats.median, stats.mean, stats.iqr) == (3.0, 4.0, 2.0)  # numpy linear percentiles: 4 - 2
    assert (stats.min, stats.max, stats.per_image, stats.all) == (1.0, 10.0, 1.5, (3.0, 1.0, 10.0, 2.0, 4.0))
    with pytest.raises(ValueError, match="no timing samples"):
        LatencyStats.from_samples([])


def test_measure_latency_structure():
    method = Sleeper(0.01)
    stats = measure_latency(method, torch.zeros(2, 3, 4, 4), repeats=4, warmup=3)
    assert method.calls == 7 and len(stats.all) == 4 and stats.batch_size == 2 and stats.device == "cpu"
    assert stats.min <= stats.median <= stats.max and stats.min <= stats.mean <= stats.max and stats.iqr >= 0
    assert stats.min >= 0.02  # time.sleep never returns early: 2 images x 10 ms


def test_measure_latency_refuses_precomputed(output_folder):
    with pytest.raises(ValueError) as err:
        measure_latency(output_folder, torch.zeros(1, 3, 4, 4), keys=["a"])
    assert str(err.value) == (
        "cannot measure latency of a precomputed method (OutputFolderMethod): its outputs were made "
        "elsewhere; use its reported_latency() instead"
    )
    with pytest.raises(ValueError, match="need repeats >= 1"):
        measure_latency(Sleeper(0), torch.zeros(1, 3, 4, 4), repeats=0)


def test_cpu_peak_memory_sees_a_known_allocation():
    lr = torch.zeros(1, 3, 4, 4)
    big = peak_memory(Allocator(256 * MIB), lr)
    small = peak_memory(Allocator(0), lr)
    assert 0.95 * 256 * MIB <= big <= 256 * MIB + 64 * MIB
    assert small < 32 * MIB


def test_throughput_vs_batch_rows():
    rows = throughput_vs_batch(Sleeper(0.005), 4, [1, 2, 4], repeats=2, warmup=0)
    assert [r["batch_size"] for r in rows] == [1, 2, 4]
    for r in rows:
        assert r["error"] is None and r["seconds_per_batch"] >= 0.005 * r["batch_size"]
        assert r["images_per_second"] == pytest.approx(r["batch_size"] / r["seconds_per_batch"])
        assert r["seconds_per_image"] == pytest.approx(r["seconds_per_batch"] / r["batch_size"])


def test_efficiency_table_columns_and_rows(output_folder):
    table = efficiency_table({"tiny": TinyNet(), "osediff": output_folder}, 16, repeats=2, warmup=1)
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert list(table.columns[:4]) == ["Method", "Params (M)", "Inference steps", "Inference time (s)"]
    tiny, folder = table.iloc[0], table.iloc[1]
    assert tiny["Method"] == "tiny" and tiny["Params (M)"] == pytest.approx(260e-6)
    assert tiny["Inference steps"] == 1 and tiny["Device"] == "cpu" and tiny["LR size"] == "16x16"
    assert tiny["Time source"] == "measured (median of 2)" and tiny["Inference time (s)"] > 0
    assert tiny["Memory basis"] == "cpu peak RSS increase" and tiny["Peak memory (MiB)"] >= 0
    assert folder["Method"] == "osediff" and pd_isna(folder["Params (M)"]) and pd_isna(folder["Peak memory (MiB)"])
    assert folder["Inference time (s)"] == 4.0 and folder["Time source"] == "reported (median of 3 images)"
    assert folder["Device"] == "reported" and folder["Inference steps"] == 1


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))
