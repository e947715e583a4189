"""The notebook API: ``from harness import ...`` imports lazily, and the README's snippet runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

from tests.tiny_models import make_tiny

REPO = Path(__file__).resolve().parents[1]


def readme_snippet() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, "the README's Python API section should hold one python block"
    return blocks[0]


def test_the_api_names_resolve_to_the_functions_they_name():
    import harness
    import methods.alignvar
    from harness.bench.layout import load_run
    from harness.bench.runner import run_bench
    from harness.config.experiment import load_experiment
    from harness.sweep.runner import run_sweep
    from harness.training.stage import run_train
    from methods.alignvar.model import AlignVAR
    from reports.bench import render_report

    expected = {
        "load_experiment": load_experiment,
        "run_bench": run_bench,
        "load_run": load_run,
        "render_report": render_report,
        "run_sweep": run_sweep,
        "run_train": run_train,
    }
    assert {name: getattr(harness, name) for name in expected} == expected
    assert sorted(harness.__all__) == sorted(["__version__", *expected])
    assert methods.alignvar.AlignVAR is AlignVAR
    for module, name in ((harness, "run_benchmark"), (methods.alignvar, "VARSR")):
        try:
            getattr(module, name)
        except AttributeError as exc:
            assert str(exc) == f"module {module.__name__!r} has no attribute {name!r}"
        else:
            raise AssertionError(f"{module.__name__}.{name} should not exist")


def test_importing_the_package_or_a_core_module_loads_no_heavy_library():
    heavy = ("torch", "pyiqa", "pandas", "yaml", "harness.bench", "reports")
    code = (
        f"import sys, harness, methods.alignvar, harness.core.atomic\nprint([m for m in {heavy} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_the_readme_snippet_runs_on_the_bundled_demo_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the snippet writes runs/demo under the working directory
    make_tiny().save(tmp_path / "model.safetensors")  # the checkpoint the snippet loads
    namespace: dict = {}
    exec(compile(readme_snippet(), "README.md", "exec"), namespace)  # noqa: S102 - our own README

    run_dir = tmp_path / "runs" / "demo"
    assert (tmp_path / namespace["run_dir"]).resolve() == run_dir.resolve()
    summary = pd.read_csv(run_dir / "summary.csv")
    assert sorted(set(summary["metric"])) == ["latency_s", "psnr_y", "ssim_y"]
    assert set(summary["method"]) == {"nearest", "bilinear", "bicubic", "lanczos"}
    assert set(summary["n"]) == {2}  # datasets.0.count=2
    assert (run_dir / "report.html").is_file()
    printed = capsys.readouterr().out
    assert "report.html" in printed and "lanczos" in printed
    sr = namespace["sr"]
    assert sr.shape == (1, 3, 128, 128) and sr.dtype == torch.float32
    assert 0.0 <= float(sr.min()) and float(sr.max()) <= 1.0
