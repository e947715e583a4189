"""alignvar-bench harness: registry, configs, data, metrics, runner, sweeps and analysis."""

__version__ = "0.1.0"
