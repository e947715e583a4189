"""The package as a user gets it: the version, the bundled experiments, and the wheel installed outside the repo.

The end-to-end test builds the wheel from a copy of the sources (offline: ``--no-build-isolation --no-index``),
installs it into a fresh virtualenv that reuses this interpreter's installed libraries (torch, pyiqa, ...) through
a ``.pth`` file, and runs the ``alignvar-bench`` script from a directory outside the repository.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.config.files import bundled_experiments, find_experiment, load_yaml_tree
from harness.core.mapping import ConfigError

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "harness", "methods", "reports", "experiments")


def repo_version() -> str:
    """``__version__`` as written in harness/__init__.py (read as text: the file is the one source)."""
    match = re.search(r'^__version__ = "([^"]+)"', (REPO / "harness" / "__init__.py").read_text(), re.MULTILINE)
    assert match, "harness/__init__.py defines no __version__"
    return match.group(1)


# ----------------------------------------------------------------------------------------------- version
def test_the_version_lives_in_one_place():
    import harness

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "harness.__version__"}
    assert harness.__version__ == repo_version()
    assert project["project"]["license"] == "Apache-2.0"  # an SPDX expression, not a table


def test_version_flag_prints_the_package_torch_and_pyiqa_versions(capsys):
    import platform

    import harness
    from harness.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    expected = (
        f"alignvar-bench {harness.__version__} (torch {metadata.version('torch')}, "
        f"pyiqa {metadata.version('pyiqa')}, Python {platform.python_version()})\n"
    )
    assert capsys.readouterr().out == expected


def test_a_missing_command_module_is_an_error_not_a_missing_command(monkeypatch):
    from harness.cli import main as cli_main

    monkeypatch.setitem(cli_main.COMMANDS, "ghost", "harness.cli.no_such_command")
    with pytest.raises(ModuleNotFoundError, match="harness.cli.no_such_command"):
        cli_main.build_parser()


# ----------------------------------------------------------------------------------------------- bundled
def test_bundled_experiments_are_the_experiments_folder_read_through_importlib_resources():
    folder = importlib.resources.files("experiments")
    assert Path(str(folder)).resolve() == (REPO / "experiments").resolve()  # this checkout's, not another
    found = bundled_experiments()
    assert sorted(found) == sorted(p.stem for p in (REPO / "experiments").glob("*.yaml"))
    assert {"demo", "tiny_train", "tiny_ablation_hcc", "table1_main"} <= set(found)
    assert found["demo"].read_text() == (folder / "demo.yaml").read_text()


def test_a_bare_name_finds_the_bundled_experiment_and_a_file_wins(tmp_path, monkeypatch):
    bundled = bundled_experiments()
    monkeypatch.chdir(tmp_path)
    assert find_experiment("demo") == bundled["demo"]
    assert find_experiment("demo.yaml") == bundled["demo"]
    (tmp_path / "demo.yaml").write_text("name: mine\n")
    assert find_experiment("demo.yaml") == Path("demo.yaml")  # a file of that name is used as given
    assert load_yaml_tree("demo.yaml") == {"name": "mine"}
    with pytest.raises(ConfigError) as err:
        find_experiment("sub/demo.yaml")  # a path is never replaced by a bundled experiment
    assert str(err.value) == (
        f"sub/demo.yaml: config file not found (nor a bundled experiment; bundled: {', '.join(bundled)})"
    )


def test_base_references_resolve_next_to_the_bundled_file(tmp_path, monkeypatch):
    from harness.config.experiment import load_experiment

    monkeypatch.chdir(tmp_path)  # nothing named tiny_ablation_hcc here
    data = load_yaml_tree("tiny_ablation_hcc")
    base = yaml.safe_load((REPO / "experiments" / "tiny_train.yaml").read_text())
    assert data["train"] == base["train"]  # inherited through `base: tiny_train.yaml`
    cfg = load_experiment("demo", ["bench.max_images=2"])
    assert (cfg.name, cfg.bench.max_images, cfg.source) == ("demo", 2, str(bundled_experiments()["demo"]))


# ----------------------------------------------------------------------------------------------- the wheel
def _clean_env() -> dict[str, str]:
    """This environment without anything that would make the subprocess import the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PIP_NO_INDEX"] = "1"
    return env


def _site_dirs() -> list[str]:
    """This interpreter's library folders (torch, pyiqa, ...; a ``.venv`` inside the checkout included), never
    the checkout itself. Listed in a ``.pth`` file they are only appended to ``sys.path``: their own ``.pth``
    files (an editable install of this package) are not run."""
    dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    dirs |= {p for p in sys.path if p.endswith(("site-packages", "dist-packages"))}
    return sorted(d for d in dirs if Path(d).is_dir() and Path(d).name in ("site-packages", "dist-packages"))


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_the_wheel_installed_outside_the_repo_runs_demo_list_version_and_bundled_sweeps(tmp_path, monkeypatch, capsys):
    # build from a copy of the sources: an in-tree build would leave build/ and *.egg-info in the checkout
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist"), str(src)]
    _run(build, tmp_path, timeout=300)
    wheels = list((tmp_path / "dist").glob("alignvar_bench-*.whl"))
    assert [w.name for w in wheels] == [f"alignvar_bench-{repo_version()}-py3-none-any.whl"]

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheels[0])], tmp_path, 300)
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        tmp_path, 60).stdout.strip())  # fmt: skip
    (purelib / "_reuse_test_libraries.pth").write_text("\n".join(_site_dirs()) + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    script = str(env_dir / "bin" / "alignvar-bench")
    where = _run([str(python), "-c", "import harness, methods, reports, experiments as e; print(e.__file__)"], work, 60)
    assert Path(where.stdout.strip()).is_relative_to(purelib)  # the installed copy, not the checkout

    version = _run([script, "--version"], work, 60).stdout
    assert version.startswith(f"alignvar-bench {repo_version()} (torch {metadata.version('torch')}, pyiqa ")

    listing = _run([script, "list"], work, 120).stdout
    for name in ("bicubic", "alignvar", "psnr_y", "bundled"):
        assert re.search(rf"^\s+{name}\s", listing, re.MULTILINE), f"{name} missing from `list`:\n{listing}"

    # a bundled sweep whose experiment inherits `base: tiny_train.yaml`: every cell validated, and each cell's
    # identity (the hash of its resolved config) the same as from the checkout's file
    installed = _run([script, "sweep", "tiny_ablation_hcc", "--dry-run"], work, 120).stdout
    from harness.cli.main import main

    monkeypatch.chdir(work)
    assert main(["sweep", str(REPO / "experiments" / "tiny_ablation_hcc.yaml"), "--dry-run"]) == 0
    checkout = capsys.readouterr().out
    cells = re.findall(r"hcc\.lambda=[\d.]+-[0-9a-f]{8}", installed)
    assert len(cells) == 2 and cells == re.findall(r"hcc\.lambda=[\d.]+-[0-9a-f]{8}", checkout), (installed, checkout)

    # the default demo: the ablation sweep from the checkpoints shipped inside the wheel (pkg://experiments/...)
    _run([script, "demo", "datasets.0.count=1", "--no-progress", "--offline"], work, 900)
    sweep_dir = work / "runs" / "demo_ablation"
    cells = sorted((sweep_dir / "cells").iterdir())
    assert len(cells) == 4
    summary = pd.read_csv(cells[0] / "summary.csv")
    assert set(summary["method"]) == {"nearest", "bilinear", "bicubic", "lanczos", "tiny"}
    assert {"psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"} <= set(summary["metric"])
    assert (sweep_dir / "report.html").stat().st_size > 0
    env_json = json.loads((cells[0] / "env.json").read_text())
    assert env_json["git"] == {"commit": None, "dirty": None}  # an installed copy has no commit of its own
