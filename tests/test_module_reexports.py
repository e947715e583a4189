"""The split modules stay importable from their old homes: ``harness.runner`` and ``harness.data.training``."""

from __future__ import annotations

import harness.bench_cell
import harness.bench_context
import harness.bench_device
import harness.bench_errors
import harness.bench_prepare
import harness.data.train_config
import harness.data.train_datasets
import harness.data.train_sampling
import harness.data.train_sources
import harness.data.training
import harness.runner
from harness.config import ConfigError


def test_runner_reexports_the_split_modules_objects():
    runner = harness.runner
    homes = {
        "BenchContext": harness.bench_context,
        "BenchHook": harness.bench_context,
        "BenchFailedError": harness.bench_errors,
        "BenchValidationError": harness.bench_errors,
        "CorruptInputError": harness.bench_errors,
        "RunExistsError": harness.bench_errors,
        "prepare": harness.bench_prepare,
        "quantize_8bit": harness.bench_cell,
        "resolve_device": harness.bench_device,
    }
    for name, home in homes.items():
        assert getattr(runner, name) is getattr(home, name), name
    assert set(runner.__all__) >= set(homes) | {"run_bench", "config_hooks", "seed_everything"}
    assert issubclass(runner.BenchValidationError, ConfigError)


def test_training_data_reexports_the_split_modules_objects():
    training = harness.data.training
    homes = {
        "SourceConfig": harness.data.train_config,
        "PairedSourceConfig": harness.data.train_config,
        "DegradationSpec": harness.data.train_config,
        "TrainDataConfig": harness.data.train_config,
        "build_degradation": harness.data.train_config,
        "resolve_sources": harness.data.train_sources,
        "mix_seed": harness.data.train_sampling,
        "shard_indices": harness.data.train_sampling,
        "HRFolderDataset": harness.data.train_datasets,
        "PairedTrainDataset": harness.data.train_datasets,
        "stack_collate": harness.data.train_datasets,
    }
    for name, home in homes.items():
        assert getattr(training, name) is getattr(home, name), name
    for name in training.__all__:
        assert hasattr(training, name), name
