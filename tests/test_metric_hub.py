"""Metric weights the way pyiqa fetches them (online, preflight) and the pyiqa provenance of every metric.

Online paths run against the loopback server of ``tests/loopback.py`` (``online`` fixture), which stands in for
pyiqa's Hugging Face repository (``chaofengc/IQA-PyTorch-Weights``) and for the torchvision download site. The
weight files served are *fake* (NIQE parameters of an identity covariance): they exercise fetching and loading,
never scores that could be reported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import yaml

from harness.config.experiment import experiment_from_dict
from harness.metrics import backend, weights
from harness.metrics.iqa import NOT_IN_PYIQA, PYIQA_NAMES, build_metric, metric_infos, pyiqa_facts
from harness.metrics.weights import MissingWeightsError

REPO = Path(__file__).resolve().parents[1]
PYIQA_REPO = "chaofengc/IQA-PyTorch-Weights"
NIQE_PATH = f"/{PYIQA_REPO}/resolve/main/niqe_modelparameters.mat"


@pytest.fixture(scope="module")
def fake_niqe_mat(tmp_path_factory) -> bytes:
    """A readable NIQE model: zero mean, identity covariance (not the real parameters)."""
    path = tmp_path_factory.mktemp("niqe") / "fake.mat"
    scipy.io.savemat(str(path), {"mu_prisparam": np.zeros((1, 36)), "cov_prisparam": np.eye(36)})
    return path.read_bytes()


def _image(seed: int = 0, side: int = 128) -> torch.Tensor:
    return torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------- item 1
def test_niqe_params_are_fetched_into_pyiqas_cache_once(online, tmp_path, fake_niqe_mat):
    online.add_repo_file(PYIQA_REPO, "niqe_modelparameters.mat", fake_niqe_mat)
    niqe = build_metric("niqe")
    cached = tmp_path / "torch" / "hub" / "pyiqa" / "niqe_modelparameters.mat"  # pyiqa's DEFAULT_CACHE_DIR layout
    assert cached.read_bytes() == fake_niqe_mat
    assert ("GET", NIQE_PATH) in online.requests  # pyiqa's own URL (get_url_from_name), through HF_ENDPOINT
    seen = len(online.requests)
    again = build_metric("niqe")
    assert len(online.requests) == seen  # cached: pyiqa does not download again
    img = _image()
    direct = build_metric({"type": "niqe", "niqe_params": str(cached)})  # the same file given locally
    assert torch.equal(niqe(img), direct(img)) and torch.equal(again(img), direct(img))
    assert niqe.provenance()["weights"] == ["niqe_modelparameters.mat"]


def test_offline_names_the_missing_file_and_its_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.delenv("ALIGNVAR_WEIGHTS_DIR", raising=False)
    assert os.environ["ALIGNVAR_OFFLINE"] == "1"  # the tests' default (conftest)
    with pytest.raises(MissingWeightsError) as err:
        build_metric("musiq")
    pyiqa_dir = tmp_path / "torch" / "hub" / "pyiqa"
    assert str(err.value).splitlines()[:4] == [
        "metric 'musiq' needs 1 weight file(s) that are not available locally (downloads are disabled):",
        "  musiq_koniq_ckpt-e95806b9.pth  (MUSIQ trained on KonIQ-10k; "
        "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/musiq_koniq_ckpt-e95806b9.pth)",
        f"    searched: {pyiqa_dir}",
        f"    fix: copy musiq_koniq_ckpt-e95806b9.pth into {pyiqa_dir}",
    ]
    assert not (tmp_path / "torch").exists()  # nothing attempted


def _experiment(tmp_path: Path, metrics: list) -> object:
    return experiment_from_dict({
        "name": "weights", "output_root": str(tmp_path / "runs"),
        "datasets": [{"type": "single", "lr_dir": str(tmp_path)}], "methods": ["bicubic"], "metrics": metrics,
    })  # fmt: skip


def test_preflight_fetches_every_metric_and_lists_all_failures(online, tmp_path, monkeypatch, fake_niqe_mat):
    """niqe is served, musiq is not, and the torchvision backbone of dists comes with a wrong hash prefix: one
    preflight downloads what it can and names every failure at once."""
    from harness.bench.prepare import preflight_message

    online.add_repo_file(PYIQA_REPO, "niqe_modelparameters.mat", fake_niqe_mat)
    online.add_repo_file(PYIQA_REPO, "DISTS_weights-f5e65c96.pth", b"fake dists")
    vgg = dataclasses.replace(weights.REQUIREMENTS["dists"][0], url=f"{online.url}/models/vgg16-397923af.pth")
    online.files["/models/vgg16-397923af.pth"] = b"not vgg16"
    monkeypatch.setitem(weights.REQUIREMENTS, "dists", (vgg, weights.REQUIREMENTS["dists"][1]))
    cfg = _experiment(tmp_path, ["psnr", "niqe", "musiq", "dists"])

    offline = preflight_message(cfg, offline=True).splitlines()
    assert offline[0] == "<config>: 4 required path(s) not found, nothing was run:"
    assert offline[-1] == (
        "without offline mode (--offline / ALIGNVAR_OFFLINE=1 / HF_HUB_OFFLINE=1) these are downloaded automatically"
    )
    assert online.requests == []

    message = preflight_message(cfg, progress=False)
    hub = tmp_path / "torch" / "hub"
    digest = hashlib.sha256(b"not vgg16").hexdigest()
    assert message.splitlines() == [
        "<config>: 2 required path(s) not found, nothing was run:",
        f"  - metrics[2] (musiq): weight file musiq_koniq_ckpt-e95806b9.pth: download failed: downloading "
        f"{online.url}/{PYIQA_REPO}/resolve/main/musiq_koniq_ckpt-e95806b9.pth failed: HTTPError: HTTP Error 404: "
        f"Not Found",
        f"  - metrics[3] (dists): weight file vgg16-397923af.pth: download failed: downloading {online.url}/models/"
        f'vgg16-397923af.pth failed: RuntimeError: invalid hash value (expected "397923af", got "{digest}")',
        "downloads need network access ($HF_ENDPOINT for a Hugging Face mirror); --offline never tries",
    ]
    assert (hub / "pyiqa" / "niqe_modelparameters.mat").read_bytes() == fake_niqe_mat
    assert (hub / "pyiqa" / "DISTS_weights-f5e65c96.pth").read_bytes() == b"fake dists"
    assert sorted(p.name for p in (hub / "checkpoints").iterdir()) == []  # the refused file is not kept
    assert preflight_message(_experiment(tmp_path, ["niqe"]), offline=True) is None  # fetched: now there


def test_bench_online_then_offline_end_to_end(online, tmp_path, fake_niqe_mat):
    """``run.py bench`` in fresh processes: the preflight fetches NIQE's file through $HF_ENDPOINT into
    $TORCH_HOME/hub/pyiqa; ``--offline`` then runs from the cache; summary.json says how each metric was made."""
    online.add_repo_file(PYIQA_REPO, "niqe_modelparameters.mat", fake_niqe_mat)
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "online", "output_root": str(tmp_path / "runs"),
        "datasets": [{"type": "bundled", "hr_size": 128, "count": 1, "cache_dir": str(tmp_path / "data")}],
        "methods": ["bicubic"], "metrics": ["psnr", "niqe"], "bench": {"device": "cpu", "bootstrap_samples": 50},
    }))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("ALIGNVAR_OFFLINE", "HF_HUB_OFFLINE")}
    cmd = [sys.executable, str(REPO / "run.py"), "bench", str(exp), "--no-progress", "--force"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    assert first.returncode == 0, first.stderr
    assert ("GET", NIQE_PATH) in online.requests
    seen = len(online.requests)
    second = subprocess.run([*cmd, "--offline"], capture_output=True, text=True, env=env, cwd=REPO)
    assert second.returncode == 0, second.stderr
    assert len(online.requests) == seen
    meta = json.loads((tmp_path / "runs" / "online" / "summary.json").read_text())
    assert meta["metrics"]["niqe"]["pyiqa"]["weights"] == ["niqe_modelparameters.mat"]
    assert meta["metrics"]["niqe"]["lower_better"] is True and meta["metrics"]["niqe"]["needs_reference"] is False


# ----------------------------------------------------------------------------------------------- item 5
# What we expect of pyiqa 0.1.16's registry for every registered metric: (lower_better, needs_reference).
# The code reads pyiqa; this table checks that pyiqa says what a results table needs (a release that flips a
# direction fails here instead of silently bolding the worst method).
EXPECTED = {
    "psnr": (False, True), "ssim": (False, True), "psnr_y": (False, True), "ssim_y": (False, True),
    "psnr_rgb": (False, True), "ssim_rgb": (False, True), "lpips": (True, True), "dists": (True, True),
    "niqe": (True, False), "musiq": (False, False), "maniqa": (False, False), "clipiqa": (False, False),
    "fid": (True, True),
}  # fmt: skip


def test_directions_and_reference_come_from_pyiqa_and_agree_with_the_expected_table():
    infos = metric_infos()
    assert {name: (i.lower_better, i.needs_reference) for name, i in infos.items() if name in EXPECTED} == EXPECTED
    assert set(EXPECTED) <= set(PYIQA_NAMES)
    # where both pyiqa and NOT_IN_PYIQA have a fact, they agree: lower_better is pyiqa's alone, and FID's
    # needs_reference (the HR folder) overrides pyiqa's 'NR', which describes its call (folders, not pairs)
    assert pyiqa_facts("fid") == {"lower_better": True, "needs_reference": False}
    assert NOT_IN_PYIQA == {"fid": {"needs_reference": True, "set_level": True}}
    assert all("lower_better" not in facts for facts in NOT_IN_PYIQA.values())
    assert infos["fid"].set_level and not any(i.set_level for n, i in infos.items() if n != "fid")


def test_built_metrics_take_their_flags_from_pyiqa(tmp_path, fake_niqe_mat):
    (tmp_path / "niqe.mat").write_bytes(fake_niqe_mat)
    infos = metric_infos()
    for spec in ("psnr", "ssim", "psnr_rgb", "ssim_rgb", {"type": "niqe", "niqe_params": str(tmp_path / "niqe.mat")}):
        metric = build_metric(spec)
        name = spec if isinstance(spec, str) else spec["type"]
        assert (metric.lower_better, metric.needs_reference) == EXPECTED[name]
        assert metric.lower_better == metric.model.lower_better  # read from the pyiqa model itself
        assert metric.info == infos[name]


def test_provenance_names_pyiqa_model_options_and_version():
    import pyiqa

    assert build_metric("psnr").provenance() == {
        "name": "psnr",
        "options": {"test_y_channel": True, "crop_border": 0, "color_space": "ycbcr"},
        "pyiqa_defaults": {"test_y_channel": False},
        "version": pyiqa.__version__,
        "metric_mode": "FR",
        "lower_better": False,
        "weights": [],
    }
    assert pyiqa.__version__ == "0.1.16" == backend.pyiqa_version()  # pinned in pyproject.toml
    rgb = build_metric({"type": "ssim_rgb", "crop_border": 4}).provenance()
    assert (rgb["name"], rgb["options"]) == ("ssimc", {"crop_border": 4})


def test_summary_and_report_show_how_each_metric_was_computed(tmp_path):
    from harness.bench.runner import run_bench
    from reports.bench import render_report

    cfg = experiment_from_dict({
        "name": "names", "output_root": str(tmp_path),
        "datasets": [{"type": "bundled", "hr_size": 64, "count": 1, "cache_dir": str(tmp_path / "cache")}],
        "methods": ["bicubic"], "metrics": ["psnr", {"type": "ssim", "name": "ssim_rgb4", "y_channel": False,
                                                     "crop_border": 4}],
        "bench": {"device": "cpu", "bootstrap_samples": 50},
    })  # fmt: skip
    run_dir = run_bench(cfg, progress=False)
    meta = json.loads((run_dir / "summary.json").read_text())
    assert meta["metrics"]["psnr"]["pyiqa"]["options"] == {"test_y_channel": True, "crop_border": 0,
                                                           "color_space": "ycbcr"}  # fmt: skip
    ssim = meta["metrics"]["ssim_rgb4"]
    assert (ssim["type"], ssim["pyiqa"]["name"], ssim["pyiqa"]["options"]) == ("ssim", "ssimc", {"crop_border": 4})
    assert ssim["pyiqa"]["version"] == "0.1.16" and ssim["lower_better"] is False
    html = render_report(run_dir).read_text()
    assert (
        "Computed by pyiqa:\npsnr = psnr(test_y_channel=True, crop_border=0, color_space=&#39;ycbcr&#39;); "
        "ssim_rgb4 = ssimc(crop_border=4)." in html
    )
    assert (
        "psnr = pyiqa 0.1.16 psnr(test_y_channel=True, crop_border=0, color_space=&#39;ycbcr&#39;); "
        "ssim_rgb4 = pyiqa 0.1.16 ssimc(crop_border=4)" in html
    )


def test_fid_flags_from_pyiqa_plus_the_set_level_table_and_its_call_options(tmp_path, monkeypatch):
    """FID without its Inception weights: ``backend.create`` returns what pyiqa's model says of itself."""

    class PyiqaFid(torch.nn.Module):
        lower_better, metric_mode = True, "NR"  # pyiqa 0.1.16's registry entry for 'fid'

    (tmp_path / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"")
    monkeypatch.setattr(backend, "create", lambda *args, **kwargs: PyiqaFid())
    fid = build_metric({"type": "fid", "mode": "legacy_pytorch", "weights_dir": str(tmp_path)})
    assert (fid.lower_better, fid.needs_reference, fid.set_level) == (True, True, True)
    record = fid.provenance()
    assert (record["name"], record["metric_mode"], record["call_options"]) == ("fid", "NR", {"mode": "legacy_pytorch"})
    assert record["weights"] == ["pt_inception-2015-12-05-6726825d.pth"]
    from reports.bench import pyiqa_call

    assert pyiqa_call(record) == "fid() called with mode='legacy_pytorch'"
