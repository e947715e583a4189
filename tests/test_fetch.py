"""Checkpoints by reference (``harness.core.fetch``): hf:// through huggingface_hub, https://...#sha256=, offline.

The online paths run against the loopback server of ``tests/loopback.py`` (the ``online`` fixture): a fake Hub
serving ``/{repo}/resolve/{revision}/{file}`` and plain files. Every connection elsewhere is refused.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from harness.core import fetch
from harness.core.fetch import FetchError, HubFile, parse_hub_ref, parse_url_ref, resolve_checkpoint
from harness.core.mapping import ConfigError
from harness.core.registry import create
from methods.adapters.alignvar import MissingCheckpointError
from methods.adapters.spandrel import CheckpointError
from tests.loopback import commit_of

REPO = Path(__file__).resolve().parents[1]
OFFLINE = "--offline / ALIGNVAR_OFFLINE=1 / HF_HUB_OFFLINE=1"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------------------------- parsing
def test_hub_refs_both_spellings_and_errors():
    assert parse_hub_ref("hf://qyp2000/VARSR/VARSR.pth") == HubFile("qyp2000/VARSR", "VARSR.pth", None, "model")
    pinned = HubFile("qyp2000/VARSR", "ckpt/VARSR.pth", "v1.0", "model")
    assert parse_hub_ref("hf://qyp2000/VARSR/ckpt/VARSR.pth@v1.0") == pinned  # the trailing form
    assert parse_hub_ref("hf://qyp2000/VARSR@v1.0/ckpt/VARSR.pth") == pinned  # the Hub's own URI syntax
    assert parse_hub_ref("hf://o/r/x.pt@refs/pr/3").revision == "refs/pr/3"
    assert parse_hub_ref("hf://datasets/o/r/x.pt").repo_type == "dataset"
    with pytest.raises(ValueError, match=r"^hf://o/r: names no file of a repository; expected hf://OWNER/REPO/FILE"):
        parse_hub_ref("hf://o/r")
    with pytest.raises(ValueError, match=r"^hf://o: not a Hub file reference \(Invalid HF URI"):
        parse_hub_ref("hf://o")
    with pytest.raises(ValueError, match=r"^hf://o/r/x.pt@: empty revision after '@'"):
        parse_hub_ref("hf://o/r/x.pt@")


def test_url_refs_and_cache_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNVAR_CACHE", str(tmp_path))
    digest = "AB" * 32
    ref = parse_url_ref(f"https://host/releases/w.pth#sha256={digest}")
    assert ref == fetch.UrlFile("https://host/releases/w.pth", digest.lower(), "w.pth")
    assert fetch.url_cache_path(ref) == tmp_path / "downloads" / "sha256" / digest.lower() / "w.pth"
    unpinned = parse_url_ref("https://host/releases/w.pth")
    key = hashlib.sha256(b"https://host/releases/w.pth").hexdigest()[:16]
    assert fetch.url_cache_path(unpinned) == tmp_path / "downloads" / "url" / key / "w.pth"
    with pytest.raises(ValueError, match=r"the URL fragment must be #sha256=<64 hex digits>, got #md5=00"):
        parse_url_ref("https://host/w.pth#md5=00")
    with pytest.raises(ValueError, match=r"expected http\(s\)://HOST/PATH/FILE"):
        parse_url_ref("https://host/")
    assert resolve_checkpoint("~/x.pth") == Path.home() / "x.pth"  # local paths as given
    assert not fetch.is_remote("/data/VARSR.pth") and fetch.is_remote("hf://a/b/c")


def test_offline_mode_from_the_environment(monkeypatch):
    for name in ("ALIGNVAR_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    assert not fetch.offline_mode()
    for value, expected in (("1", True), ("true", True), ("0", False), ("", False)):
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
        assert fetch.offline_mode() is expected
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("ALIGNVAR_OFFLINE", "yes")
    assert fetch.offline_mode()


# ----------------------------------------------------------------------------------------------- hf://
def test_hub_download_cache_revisions_and_offline(online, tmp_path):
    online.add_repo_file("qyp2000/VARSR", "VARSR.pth", b"main weights")
    online.add_repo_file("qyp2000/VARSR", "VARSR.pth", b"v1 weights", revision="v1")
    main = resolve_checkpoint("hf://qyp2000/VARSR/VARSR.pth", progress=False)
    snapshots = tmp_path / "hf" / "models--qyp2000--VARSR" / "snapshots"
    assert main == snapshots / commit_of("qyp2000/VARSR", "main") / "VARSR.pth"  # huggingface_hub's cache layout
    assert main.read_bytes() == b"main weights"
    pinned = resolve_checkpoint("hf://qyp2000/VARSR/VARSR.pth@v1", progress=False)
    assert pinned.read_bytes() == b"v1 weights"
    by_commit = f"hf://qyp2000/VARSR@{commit_of('qyp2000/VARSR', 'v1')}/VARSR.pth"
    seen = len(online.requests)
    assert resolve_checkpoint(by_commit, offline=True) == pinned  # cached, no request
    assert resolve_checkpoint("hf://qyp2000/VARSR/VARSR.pth", offline=True) == main
    assert len(online.requests) == seen
    with pytest.raises(FetchError) as err:
        resolve_checkpoint("hf://qyp2000/VARSR/other.pth", offline=True)
    assert str(err.value) == (
        f"hf://qyp2000/VARSR/other.pth: not in the Hugging Face cache ({tmp_path / 'hf'}) and downloads are off "
        f"({OFFLINE}); run once without --offline to cache it, or give the file's local path"
    )
    assert len(online.requests) == seen
    for ref, message in (
        ("hf://qyp2000/VARSR/other.pth", f"file other.pth not found in qyp2000/VARSR (revision main) on {online.url}"),
        ("hf://qyp2000/VARSR/VARSR.pth@v9", f"revision v9 not found in qyp2000/VARSR on {online.url}"),
        ("hf://someone/nothing/x.pth", f"repository someone/nothing not found on {online.url} (private or gated"),
    ):
        with pytest.raises(FetchError) as err:
            resolve_checkpoint(ref, progress=False)
        assert str(err.value).startswith(f"{ref}: {message}")


# ----------------------------------------------------------------------------------------------- URLs
def test_url_download_checks_the_digest_and_caches(online, tmp_path, capsys):
    from harness.core.logconfig import configure

    configure(0)  # as a command: notes on stderr
    data = b"release weights"
    online.files["/releases/w.pth"] = data
    url = f"{online.url}/releases/w.pth"
    path = resolve_checkpoint(f"{url}#sha256={_sha(data)}", progress=False)
    assert path == tmp_path / "cache" / "downloads" / "sha256" / _sha(data) / "w.pth"
    assert path.read_bytes() == data
    seen = len(online.requests)
    assert resolve_checkpoint(f"{url}#sha256={_sha(data)}", offline=True) == path  # cached: no request
    assert len(online.requests) == seen

    wrong = "0" * 64
    with pytest.raises(FetchError) as err:
        resolve_checkpoint(f"{url}#sha256={wrong}", progress=False)
    assert str(err.value) == (
        f"{url}#sha256={wrong}: SHA256 mismatch: expected {wrong}, downloaded file has {_sha(data)}; refusing it "
        f"(the file at the URL changed, or the pinned digest is wrong)"
    )
    assert not (tmp_path / "cache" / "downloads" / "sha256" / wrong).exists()  # nothing kept, not even partials

    with pytest.raises(FetchError, match=r"/missing.pth: download failed: HTTPError: HTTP Error 404"):
        resolve_checkpoint(f"{online.url}/missing.pth", progress=False)
    with pytest.raises(FetchError, match=r"not in the download cache .* and downloads are off"):
        resolve_checkpoint(f"{online.url}/other.pth#sha256={wrong}", offline=True)

    capsys.readouterr()
    unpinned = resolve_checkpoint(url, progress=False)  # allowed; the digest is printed so that it can be pinned
    assert unpinned.read_bytes() == data and unpinned.parent.parent.name == "url"
    assert capsys.readouterr().err == (
        f"note: {url} has no #sha256= pin; downloaded file sha256={_sha(data)} ({unpinned}); pin it with "
        f"{url}#sha256={_sha(data)}\n"
    )


# ----------------------------------------------------------------------------------------------- adapters
def _tiny_alignvar_bytes(tmp_path: Path) -> bytes:
    from tests.tiny_models import make_tiny

    return make_tiny("none").save(tmp_path / "tiny.safetensors").read_bytes()


def test_methods_take_hub_and_url_references(online, tmp_path):
    from spandrel.architectures.ESRGAN import ESRGAN

    tiny = _tiny_alignvar_bytes(tmp_path)
    online.add_repo_file("me/alignvar-tiny", "model.safetensors", tiny)
    method = create("methods", "alignvar", {"checkpoint": "hf://me/alignvar-tiny/model.safetensors", "arch": "tiny"})
    assert method.inference_steps == 4
    model = create("models", "alignvar", {"checkpoint": "hf://me/alignvar-tiny/model.safetensors"})
    assert model.transformer.cfg.depth == method.model.transformer.cfg.depth

    torch.manual_seed(0)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4).eval()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "esrgan.safetensors"))
    data = (tmp_path / "esrgan.safetensors").read_bytes()
    online.files["/rel/esrgan.safetensors"] = data
    for ref in (f"{online.url}/rel/esrgan.safetensors#sha256={_sha(data)}", "hf://me/esrgan/esrgan.safetensors"):
        online.add_repo_file("me/esrgan", "esrgan.safetensors", data)
        baseline = create("methods", "spandrel", {"checkpoint": ref})
        assert baseline.architecture == "ESRGAN" and baseline.info()["checkpoint"] == ref
        assert Path(baseline.info()["checkpoint_path"]).read_bytes() == data
        assert baseline.weight_files == {"checkpoint": baseline.info()["checkpoint_path"]}
    hub_path = Path(method.weight_files["checkpoint"])
    assert hub_path.parent.name == commit_of("me/alignvar-tiny", "main")  # the snapshot names the commit

    with pytest.raises(CheckpointError, match=r"^hf://me/esrgan/nope.pth: file nope.pth not found in me/esrgan"):
        create("methods", "spandrel", {"checkpoint": "hf://me/esrgan/nope.pth"})
    with pytest.raises(MissingCheckpointError, match=r"^varsr: checkpoint: hf://me/x/VARSR.pth: repository me/x"):
        create("methods", "varsr", {"checkpoint": "hf://me/x/VARSR.pth", "vqvae": "hf://me/x/VQVAE.pth"})


def test_trainer_starts_from_hub_weights(online, tmp_path):
    """``model.checkpoint: hf://...`` (the paper recipe starts from the official VARSR weights) is resolved by the
    trainer before the model core sees it; the model core never resolves references itself."""
    from harness.training.alignvar import AlignVARTrainConfig, AlignVARTrainer
    from methods.alignvar.configs import AlignVARConfig
    from tests.tiny_models import make_tiny

    online.add_repo_file("me/start", "model.safetensors", _tiny_alignvar_bytes(tmp_path))
    model = AlignVARTrainer(AlignVARTrainConfig()).build_model(
        AlignVARConfig(arch="tiny", checkpoint="hf://me/start/model.safetensors"), tmp_path, seed=0
    )
    reference = make_tiny("none")
    for (name, got), (_, want) in zip(
        model.transformer.state_dict().items(), reference.transformer.state_dict().items()
    ):
        assert torch.equal(got, want), name


def test_model_core_imports_neither_the_harness_nor_the_hub():
    import ast

    for path in sorted((REPO / "methods" / "alignvar").glob("*.py")):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0]
        bad = [m for m in names if m.split(".")[0] in ("harness", "huggingface_hub")]
        assert not bad, f"{path.name} imports {bad}"


def test_malformed_references_are_config_errors():
    with pytest.raises(ConfigError) as err:
        create("methods", "spandrel", {"checkpoint": "hf://onlyowner"})
    assert str(err.value) == (
        "<config>: methods.spandrel: hf://onlyowner: not a Hub file reference (Invalid HF URI 'hf://onlyowner'. "
        "Repository id must be 'namespace/name', got 'onlyowner'.); expected hf://OWNER/REPO/FILE[@REVISION]"
    )
    with pytest.raises(ConfigError, match=r"https://h/VQVAE.pth#sha256=12: the URL fragment must be"):
        create("methods", "varsr", {"checkpoint": "x.pth", "vqvae": "https://h/VQVAE.pth#sha256=12"})


def test_missing_checkpoint_message_names_the_official_hub_file():
    with pytest.raises(MissingCheckpointError) as err:
        create("methods", "varsr", {})
    assert str(err.value) == (
        "varsr: no checkpoint given; set checkpoint: hf://qyp2000/VARSR/VARSR.pth (the official VARSR.pth, "
        "downloaded once) or the path of VARSR.pth from https://github.com/qyp2000/VARSR (--checkpoint on the "
        "command line); methods never run with random weights"
    )


# ----------------------------------------------------------------------------------------------- preflight
def _experiment(tmp_path: Path, checkpoint: str):
    from harness.config.experiment import experiment_from_dict

    return experiment_from_dict({
        "name": "refs", "output_root": str(tmp_path / "runs"),
        "datasets": [{"type": "single", "lr_dir": str(tmp_path)}],
        "methods": [{"type": "spandrel", "name": "net", "checkpoint": checkpoint}],
        "metrics": ["psnr"],
    })  # fmt: skip


def test_preflight_fetches_references_or_names_them_offline(online, tmp_path, monkeypatch):
    from harness.bench.prepare import preflight_message

    data = b"weights"
    online.add_repo_file("me/net", "net.pth", data)
    monkeypatch.chdir(tmp_path)
    no_data = _experiment(tmp_path / "absent", "hf://me/net/net.pth")
    assert preflight_message(no_data, progress=False) == (  # a local path is missing: report it before downloading
        f"<config>: 1 required path(s) not found, nothing was run:\n"
        f"  - datasets[0] (single): LR folder not found: {tmp_path / 'absent'}\n"
        f"relative paths are resolved from the working directory ({tmp_path}); put the files there or point the "
        f"config at them (e.g. methods.<name>.checkpoint=/path/to/file); metric weights may also go in one folder "
        f"given by --weights-dir\n"
        f"then 1 file(s) will be downloaded before the run starts: hf://me/net/net.pth"
    )
    assert online.requests == []
    cfg = _experiment(tmp_path, "hf://me/net/net.pth")
    assert preflight_message(cfg, offline=True) == (
        f"<config>: 1 required path(s) not found, nothing was run:\n"
        f"  - methods[0] (net): checkpoint hf://me/net/net.pth is not cached (the Hugging Face cache "
        f"{tmp_path / 'hf'}) and downloads are off ({OFFLINE})\n"
        f"without offline mode ({OFFLINE}) these are downloaded automatically"
    )
    assert online.requests == []  # offline: nothing asked
    assert preflight_message(cfg, progress=False) is None  # online: fetched into the Hugging Face cache
    assert fetch.cached_checkpoint("hf://me/net/net.pth").read_bytes() == data
    assert preflight_message(cfg, offline=True) is None  # now cached
    missing = _experiment(tmp_path, "hf://me/net/gone.pth")
    assert preflight_message(missing, progress=False) == (
        f"<config>: 1 required path(s) not found, nothing was run:\n"
        f"  - methods[0] (net): checkpoint: download failed: hf://me/net/gone.pth: file gone.pth not found in "
        f"me/net (revision main) on {online.url}\n"
        f"downloads need network access ($HF_ENDPOINT for a Hugging Face mirror); --offline never tries"
    )


# ----------------------------------------------------------------------------------------------- CLI
def test_infer_with_hub_references_end_to_end(online, tmp_path):
    """``run.py infer --checkpoint hf://...`` in a fresh process: HF_ENDPOINT and the caches come from the
    environment (as for a user), the weights are downloaded once, then ``--offline`` uses the cache."""
    online.add_repo_file("qyp2000/VARSR", "tiny.safetensors", _tiny_alignvar_bytes(tmp_path))
    lr = tmp_path / "lr.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(lr)
    env = {k: v for k, v in os.environ.items() if k not in ("ALIGNVAR_OFFLINE", "HF_HUB_OFFLINE")}
    base = [sys.executable, str(REPO / "run.py"), "infer", "--method", "alignvar", "--input", str(lr), "--no-refiner",
            "--device", "cpu"]  # fmt: skip
    cmd = [*base, "--checkpoint", "hf://qyp2000/VARSR/tiny.safetensors"]
    first = subprocess.run([*cmd, "--output", str(tmp_path / "a")], capture_output=True, text=True, env=env, cwd=REPO)
    assert first.returncode == 0, first.stderr
    assert ("GET", "/qyp2000/VARSR/resolve/main/tiny.safetensors") in online.requests
    seen = len(online.requests)
    again = subprocess.run([*cmd, "--output", str(tmp_path / "b"), "--offline"], capture_output=True, text=True,
                           env=env, cwd=REPO)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert len(online.requests) == seen  # --offline: the cache only
    assert (tmp_path / "a" / "lr.png").read_bytes() == (tmp_path / "b" / "lr.png").read_bytes()
    gone_cmd = [*base, "--checkpoint", "hf://qyp2000/VARSR/gone.safetensors", "--output", str(tmp_path / "c")]
    gone = subprocess.run([*gone_cmd, "--offline"], capture_output=True, text=True, env=env, cwd=REPO)
    assert gone.returncode == 2
    assert gone.stderr.strip().splitlines()[-1] == (
        f"error: alignvar: checkpoint: hf://qyp2000/VARSR/gone.safetensors: not in the Hugging Face cache "
        f"({tmp_path / 'hf'}) and downloads are off ({OFFLINE}); run once without --offline to cache it, or give "
        f"the file's local path"
    )


def test_every_command_that_fetches_documents_offline(capsys):
    from harness.cli.main import main

    for command in (["bench"], ["demo"], ["sweep"], ["train"], ["infer"], ["analyze", "attention"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--offline never download" in text and "ALIGNVAR_OFFLINE=1" in text, command
