"""Bad inputs, attacks and faults at the command line: every case gives a clear error (or the right result) and
its exit code, never a traceback, and changes no file outside the run folder it is allowed to write.

Table-driven: each ``Case`` is a command line (in-process ``harness.cli.main.main``), the exit code, the message
(a substring of stderr, or of stdout when ``where="out"``) and the one run folder it may write (``writes``;
``None``: nothing at all may change). The world the commands run in (data folders, checkpoints, finished runs)
is built once per module; every file in it is hashed before and after each case.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.cli.main import main

REPO = Path(__file__).resolve().parents[1]
CUDA = "cuda:99"  # exists nowhere: refused with or without a GPU


# ----------------------------------------------------------------------------------------------- the world
def _png(path: Path, h: int, w: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _pairs(root: Path, sizes: list[int], seed: int = 0) -> Path:
    for i, side in enumerate(sizes):
        _png(root / "LR" / f"im{i}.png", side, side, seed + i)
        _png(root / "HR" / f"im{i}.png", 4 * side, 4 * side, seed + 100 + i)
    return root


def _yaml(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def _tiny_checkpoint(path: Path) -> Path:
    from methods.alignvar.configs import ARCHS, AlignVARConfig
    from methods.alignvar.model import AlignVAR

    torch.manual_seed(0)
    return AlignVAR(ARCHS["tiny"].transformer, ARCHS["tiny"].vqvae, AlignVARConfig()).save(path)


def _bad_checkpoints(ck: Path, good: Path) -> None:
    raw = good.read_bytes()
    files = {
        "empty.safetensors": b"",
        "random.safetensors": bytes(np.random.default_rng(1).integers(0, 256, 100, dtype=np.uint8)),
        "long_header.safetensors": struct.pack("<Q", 10**9) + b"{}",
        "not_json.safetensors": struct.pack("<Q", 5) + b"abcde",
        "list_header.safetensors": struct.pack("<Q", 2) + b"[]",
        "bad_metadata.safetensors": struct.pack("<Q", 26) + b'{"__metadata__": {"a": 1}}',
        "truncated.safetensors": raw[: len(raw) // 2],
        "random.pth": bytes(np.random.default_rng(2).integers(0, 256, 200, dtype=np.uint8)),
        "empty.pth": b"",
    }
    for name, data in files.items():
        (ck / name).write_bytes(data)
    torch.save({"a": torch.zeros(3)}, ck / "zip.pth")
    data = (ck / "zip.pth").read_bytes()
    (ck / "truncated.pth").write_bytes(data[: len(data) // 2])


@dataclass
class World:
    root: Path
    env: dict = field(default_factory=dict)

    def __truediv__(self, other: str) -> Path:
        return self.root / other


def _build(w: World) -> None:
    root = w.root
    _pairs(root / "data", [8, 8, 6])
    _pairs(root / "data2", [8, 8, 6])  # the same images ...
    _png(root / "data2" / "LR" / "im0.png", 8, 8, seed=55)  # ... but one LR changed
    _pairs(root / "tiny", [8, 1])  # im1 is 1x1: too small for SSIM's 11x11 window
    _pairs(root / "corrupt", [8, 8])
    (root / "corrupt" / "LR" / "im1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    _png(root / "of" / "im0.png", 32, 32)
    _png(root / "of" / "im1.png", 30, 32)  # wrong size
    _png(root / "of" / "im2.png", 24, 24)
    _png(root / "stems" / "a.png", 8, 8)
    _png(root / "stems" / "a.jpg", 8, 8, 1)  # two inputs, one output name
    (root / "empty").mkdir()
    (root / "a_file").write_text("not a folder")
    for i in range(3):
        _png(root / "train_src" / f"x{i}.png", 48, 48, i)
    ck = root / "ck"
    ck.mkdir()
    _bad_checkpoints(ck, _tiny_checkpoint(ck / "tiny.safetensors"))
    _yaml(
        root / "exp.yaml",
        f"""\
        name: exp
        output_root: {root}/runs
        datasets: [{{type: paired, lr_dir: {root}/data/LR, hr_dir: {root}/data/HR}}]
        methods: [bicubic]
        metrics: [psnr_y, ssim_y]
        bench: {{bootstrap_samples: 100, device: cpu}}
        """,
    )
    _yaml(
        root / "train.yaml",
        f"""\
        name: trained
        output_root: {root}/runs
        train:
          type: vqvae
          arch: tiny
          data: {{sources: [{{path: {root}/train_src}}], crop_size: 32, batch_size: 2}}
          loop: {{steps: 2, log_every: 1, checkpoint_every: 2, progress: false, tensorboard: false}}
          optim: {{lr: 1e-3, weight_decay: 0.0, warmup_steps: 1}}
        """,
    )
    (root / "bad.yaml").write_text("name: [unclosed")
    (root / "list.yaml").write_text("- a\n- b\n")
    (root / "circular.yaml").write_text("base: circular.yaml\nname: c\n")
    (root / "missing_base.yaml").write_text("base: nowhere.yaml\nname: c\n")
    (root / "tol_alpha.yaml").write_text("alpha: 2\n")
    (root / "tol_negative.yaml").write_text("psnr_y: {max_drop: -1}\n")
    exp = str(root / "exp.yaml")
    assert main(["bench", exp, "name=done", "--no-progress"]) == 0
    assert main(["bench", exp, "name=changed", f"datasets.0.lr_dir={root}/data2/LR", "--no-progress"]) == 0
    assert main(["bench", exp, "name=user", "--no-progress"]) == 0
    _png(root / "runs" / "user" / "images" / "mine.png", 4, 4)  # a file of the user's inside a run folder
    shutil.copytree(root / "runs" / "done", root / "runs" / "nan")  # a new run whose PSNR came out NaN
    table = root / "runs" / "nan" / "metrics" / "paired.csv"
    lines = table.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("psnr_y")] = "nan"
    table.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    assert main(["train", str(root / "train.yaml")]) == 0
    legacy = root / "runs" / "legacy" / "train"
    shutil.copytree(root / "runs" / "trained" / "train", legacy)  # made by an earlier version: no identity
    (legacy / "identity.json").unlink()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("world")
    saved = os.environ.get("ALIGNVAR_CACHE")
    os.environ["ALIGNVAR_CACHE"] = str(root.parent / "cache")  # nothing is written to ~/.cache
    try:
        w = World(root)
        _build(w)
        yield w
    finally:
        if saved is None:
            os.environ.pop("ALIGNVAR_CACHE", None)
        else:
            os.environ["ALIGNVAR_CACHE"] = saved


LOCK_FILES = (".lock", ".lock.owner.json")  # the lock's own mechanics, not data


def snapshot(root: Path, skip: Path | None) -> dict[str, str]:
    """sha256 of every file under ``root`` except those under ``skip`` (and lock files)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.name in LOCK_FILES:
            continue
        if path.is_file() and (skip is None or skip not in (path, *path.parents)):
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# ----------------------------------------------------------------------------------------------- the cases
@dataclass
class Case:
    id: str
    argv: Callable[[World], list[str]]
    code: int
    message: str  # a substring of stderr ({w} is the world folder)
    writes: str | None = None  # the run folder (relative to the world) the command may write
    where: str = "err"  # "out": the message is in stdout
    around: Callable[[World], object] | None = None  # a context manager held while the command runs
    check: Callable[[World], None] | None = None  # extra assertions afterwards


def E(*args: str) -> Callable[[World], list[str]]:
    """A command line; ``{w}`` is replaced by the world folder, ``{exp}`` by its experiment file."""
    return lambda w: [a.format(w=w.root, exp=w.root / "exp.yaml") for a in args]


def bench(*args: str) -> Callable[[World], list[str]]:
    return E("bench", "{exp}", "--no-progress", *args)


def infer(*args: str) -> Callable[[World], list[str]]:
    return E("infer", "--method", "alignvar", "--checkpoint", "{w}/ck/tiny.safetensors", "--no-refiner", *args)


def train(*args: str) -> Callable[[World], list[str]]:
    return E("train", "{w}/train.yaml", *args)


def method(options: str) -> str:
    """A ``methods.0={...}`` override (braces escaped for ``E``'s ``str.format``)."""
    return "methods.0={{" + options + "}}"


@contextmanager
def held_by_another_process(folder: Path):
    """A second process holding ``folder``'s run lock for as long as the context lasts."""
    code = (
        "import sys, time\nfrom harness.core.runlock import RunLock\n"
        f"RunLock({str(folder)!r}).acquire()\nprint('held', flush=True)\ntime.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        (folder / ".lock.owner.json").unlink(missing_ok=True)  # the killed holder's record


def _images_csv(w: World, run: str) -> list[str]:
    return (w / f"runs/{run}/errors/images.csv").read_text().splitlines()


def _check_1x1(w: World) -> None:
    rows = _images_csv(w, "small")
    assert rows[0] == "dataset,method,image,stage,error"
    assert rows[1].startswith("paired,bicubic,im1,metric,ssim_y: RuntimeError: ")
    summary = json.loads((w / "runs/small/summary.json").read_text())
    assert summary["evaluation"] == [
        {"dataset": "paired", "method": "bicubic", "n_images": 2, "n_evaluated": 1, "n_failed": 1}
    ]
    assert sorted(p.name for p in (w / "runs/small/images/paired/bicubic").iterdir()) == ["im0.png"]


def _check_corrupt(w: World) -> None:
    assert _images_csv(w, "corrupt")[1].startswith(f"paired,,im1,load,{w.root}/corrupt/LR/im1.png: cannot decode")
    table = (w / "runs/corrupt/metrics/paired.csv").read_text().splitlines()
    assert [row.split(",")[2] for row in table[1:]] == ["im0"]  # the other image was evaluated


def _check_wrong_size(w: World) -> None:
    rows = _images_csv(w, "wrong_size")
    assert rows[1] == (
        f"paired,output_folder,im1,upscale,OutputFolderError: {w.root}/of/im1.png: size 32x30 but expected "
        "32x32 (LR 8x8 x4)"
    )
    table = (w / "runs/wrong_size/metrics/paired.csv").read_text().splitlines()
    assert [row.split(",")[2] for row in table[1:]] == ["im0", "im2"]


def _check_no_ci(w: World) -> None:
    rows = json.loads((w / "runs/no_ci/summary.json").read_text())["results"]
    assert rows and all(r["ci_low"] is None and r["ci_high"] is None and r["n"] == 3 for r in rows)


def _check_lr(w: World) -> None:
    identity = json.loads((w / "runs/lr_text/train/identity.json").read_text())
    assert identity["config"]["train"]["optim"]["lr"] == 1e-4  # `lr: 1e-4` (a YAML 1.1 string) became a float


def _check_user_file(w: World) -> None:
    assert (w / "runs/user/images/mine.png").is_file()


UNSAFE = "inside the script that"
CASES = [
    # --- the config and the command line: exit 2, nothing written ------------------------------------------
    Case("missing-experiment", E("bench", "{w}/nope.yaml"), 2, "config error: {w}/nope.yaml: config file not found"),
    Case("invalid-yaml", E("bench", "{w}/bad.yaml"), 2, "config error: {w}/bad.yaml: invalid YAML: "),
    Case("top-level-list", E("bench", "{w}/list.yaml"), 2, "expected a mapping at the top level, got list"),
    Case("unknown-key", bench("bench.foo=1"), 2, "{w}/exp.yaml: bench.foo: unknown key; valid keys: device,"),
    Case("wrong-type", bench("bench.batch_size=two"), 2, "bench.batch_size: expected int, got 'two' (str)"),
    Case("unknown-method", bench("methods.0=bicubik"), 2, "methods[0].type: unknown method 'bicubik'; valid choices"),
    Case("name-absolute", bench("name={w}/elsewhere"), 2, "name: '{w}/elsewhere' must be a plain folder name"),
    Case("name-parent", bench("name=../../x"), 2, "name: '../../x' must be a plain folder name (no '/', '\\', '..',"),
    Case("name-dot", bench("name=.", "--output-root", "{w}/data"), 2, "name: '.' must be a plain folder name"),
    Case("name-dotdot", bench("name=.."), 2, "name: '..' must be a plain folder name"),
    Case("name-nested", bench("name=a/b"), 2, "name: 'a/b' must be a plain folder name"),
    Case("name-hidden", bench("name=.hidden"), 2, "name: '.hidden' must be a plain folder name"),
    Case("name-reserved", bench("name=_tokenizers"), 2, "name: '_tokenizers' is reserved for the harness's own files"),
    Case(
        "max-images-0", bench("bench.max_images=0"), 2, "bench.max_images: must be >= 1, or null for every image, got 0"
    ),
    Case("max-images-negative", bench("bench.max_images=-1"), 2, "bench.max_images: must be >= 1, or null"),
    Case("bootstrap-5", bench("bench.bootstrap_samples=5"), 2, "bench.bootstrap_samples: must be >= 100 (fewer"),
    Case("bootstrap-negative", bench("bench.bootstrap_samples=-1"), 2, "or 0 to switch the CIs off, got -1"),
    Case("batch-size-0", bench("bench.batch_size=0"), 2, "bench.batch_size: must be >= 1, got 0"),
    Case("device-typo", bench("--device", "cuad"), 2, "--device / bench.device: 'cuad' is not a device"),
    Case("device-missing", bench("bench.device=" + CUDA), 2, f"--device / bench.device: '{CUDA}'"),
    Case("override-no-key", bench("=3"), 2, "config error: override '=3': empty key component"),
    Case("override-empty-part", bench("a..b=1"), 2, "config error: override 'a..b=1': empty key component"),
    Case("override-no-item", bench("methods.9.x=1"), 2, "override methods.9: no list item '9'"),
    Case("circular-base", E("bench", "{w}/circular.yaml"), 2, "circular base: {w}/circular.yaml -> {w}/circular"),
    Case("missing-base", E("bench", "{w}/missing_base.yaml"), 2, "config error: {w}/nowhere.yaml: config file not"),
    Case("efficiency-size-0", bench("--efficiency-lr-size", "0"), 2, "bench.efficiency needs lr_size >= 1"),
    Case("weights-dir", bench("--weights-dir", "{w}/nope"), 2, "config error: --weights-dir {w}/nope: not a directory"),
    Case("output-root-file", bench("--output-root", "{w}/a_file"), 2, "error: {w}/a_file/exp: Not a directory"),
    Case("dataset-missing", bench("datasets.0.lr_dir={w}/nope"), 2, "datasets[0] (paired): LR folder not found: {w}/n"),
    Case(
        "dataset-empty",
        bench("datasets.0.lr_dir={w}/empty", "datasets.0.hr_dir={w}/empty"),
        2,
        "datasets[0] (paired): DatasetError: {w}/empty: no LR images found",
    ),  # fmt: skip
    Case(
        "output-folder-missing",
        bench(method("type: output_folder, path: {w}/nope")),
        2,
        "methods[0] (output_folder): output folder not found: {w}/nope",
    ),  # fmt: skip
    # --- the command adapter: data never goes into a string a shell or an interpreter parses ------------------
    Case(
        "command-bash-c",
        bench(method("type: command, command: \"bash -c 'up {{input}} {{output}}'\"")),
        2,
        "{input}, {output} " + UNSAFE + " `bash -c` parses: a file name such as $(touch x).png",
    ),  # fmt: skip
    Case(
        "command-sh-ec",
        bench(method("type: command, command: \"/bin/sh -ec 'up {{input}}' {{output}}\"")),
        2,
        "{input} " + UNSAFE + " `sh -ec` parses",
    ),  # fmt: skip
    Case(
        "command-env-bash",
        bench(method("type: command, command: \"env A=1 bash -c 'up {{output}}' {{input}}\"")),
        2,
        "{output} " + UNSAFE + " `bash -c` parses",
    ),  # fmt: skip
    Case(
        "command-python-c",
        bench(method('type: command, command: "python -c \'open(\\"{{input}}\\")\' {{output}}"')),
        2,
        "{input} " + UNSAFE + " `python -c` parses",
    ),  # fmt: skip
    Case(
        "command-shell-placeholders",
        bench(method("type: command, command: 'up {{input}} {{output}}', shell: true")),
        2,
        "with shell: true a shell parses the command, so no file name is ever put into it",
    ),  # fmt: skip
    Case(
        "command-shell-no-mode",
        bench(method("type: command, command: 'up \"$ALIGNVAR_INPUT\"', shell: true")),
        2,
        "methods[0].mode: with shell: true, say whether the command runs per image or per folder",
    ),  # fmt: skip
    # --- checkpoints: every malformed file names itself and what is wrong ----------------------------------
    *[
        Case(
            f"checkpoint-{name}",
            bench(method(f"type: alignvar, checkpoint: {{w}}/ck/{name}.safetensors")),
            2,
            f"CheckpointError: {{w}}/ck/{name}.safetensors: {why}",
        )  # fmt: skip
        for name, why in [
            ("empty", "not a readable safetensors file (unpack requires a buffer of 8 bytes)"),
            ("random", "not a readable safetensors file (header length"),
            ("long_header", "not a readable safetensors file (header length 1000000000 exceeds the file size 10)"),
            ("not_json", "not a readable safetensors file (Expecting value"),
            ("list_header", "not a readable safetensors file (the header is a list, not a mapping)"),
            ("bad_metadata", "the safetensors metadata is not a str -> str mapping"),
            ("truncated", "tensor '"),  # the tensor the cut runs through, then "byte range a..b does not fit"
        ]
    ],
    *[
        Case(
            f"infer-checkpoint-{name}",
            E(
                "infer",
                "--checkpoint",
                f"{{w}}/ck/{name}",
                "--vqvae",
                f"{{w}}/ck/{name}",
                "--input",
                "{w}/data/LR",
                "--output",
                "{w}/out",
            ),
            2,
            f"error: {{w}}/ck/{name}: not a readable torch checkpoint ({why}",
        )  # fmt: skip
        for name, why in [
            ("random.pth", "Unsupported operand"),
            ("empty.pth", "the file ends early: empty or cut"),
            ("truncated.pth", "PytorchStreamReader failed reading zip archive"),
        ]
    ],
    Case(
        "spandrel-checkpoint",
        bench(method("type: spandrel, checkpoint: {w}/ck/random.safetensors")),
        2,
        "methods[0] (spandrel): CheckpointError: {w}/ck/random.safetensors: cannot read safetensors file",
    ),  # fmt: skip
    # --- infer: never over the inputs, never over existing outputs --------------------------------------
    Case(
        "infer-output-is-input",
        infer("--input", "{w}/data/LR", "--output", "{w}/data/LR"),
        3,
        "error: {w}/data/LR/im0.png: the output would overwrite the input image",
    ),  # fmt: skip
    Case(
        "infer-output-inside-input",
        infer("--input", "{w}/data/LR", "--output", "{w}/data/LR/sr"),
        3,
        "error: --output {w}/data/LR/sr is (inside) the input folder {w}/data/LR",
    ),  # fmt: skip
    Case(
        "infer-output-is-input-file",
        infer("--input", "{w}/data/LR/im0.png", "--output", "{w}/data/LR"),
        3,
        "the output would overwrite the input image",
    ),  # fmt: skip
    Case(
        "infer-existing-outputs",
        infer("--input", "{w}/data/LR", "--output", "{w}/data/HR"),
        3,
        "error: 3 output(s) exist already: {w}/data/HR/im0.png, {w}/data/HR/im1.png, {w}/data/HR/im2.png; pass "
        "--overwrite to replace them",
    ),  # fmt: skip
    Case("infer-same-stem", infer("--input", "{w}/stems", "--output", "{w}/out"), 3, "would both be written to"),
    Case("infer-missing-input", infer("--input", "{w}/nope", "--output", "{w}/out"), 2, "error: {w}/nope: input not"),
    Case(
        "infer-device",
        infer("--input", "{w}/data/LR", "--output", "{w}/out", "--device", CUDA),
        2,
        f"config error: --device: '{CUDA}'",
    ),  # fmt: skip
    Case(
        "infer-tile",
        infer("--input", "{w}/data/LR", "--output", "{w}/out", "--tile", "10"),
        2,
        "error: tile must be a positive multiple of 16 (output pixels), got 10",
    ),  # fmt: skip
    Case(
        "infer-top-p",
        infer("--input", "{w}/data/LR", "--output", "{w}/out", "--top-p", "2"),
        2,
        "error: top_p must be in [0, 1], got 2.0",
    ),  # fmt: skip
    # --- other commands --------------------------------------------------------------------------------------
    Case("report-missing", E("report", "{w}/nope"), 2, "error: {w}/nope: run directory not found"),
    Case("list-unknown", E("list", "foos"), 2, "error: unknown registry kind 'foos'"),
    Case("regress-missing", E("regress", "{w}/runs/done", "--against", "{w}/nope"), 2, "{w}/nope: run directory"),
    Case(
        "regress-n-resamples",
        E("regress", "{w}/runs/done", "--against", "{w}/runs/done", "--n-resamples", "0"),
        2,
        "config error: --n-resamples: must be >= 100 (resamples), got 0",
    ),  # fmt: skip
    Case(
        "regress-alpha",
        E("regress", "{w}/runs/done", "--against", "{w}/runs/done", "--tolerances", "{w}/tol_alpha.yaml"),
        2,
        "{w}/tol_alpha.yaml: alpha: expected a number in (0, 1), got 2",
    ),
    Case(
        "regress-negative-tolerance",
        E("regress", "{w}/runs/done", "--against", "{w}/runs/done", "--tolerances", "{w}/tol_negative.yaml"),
        2,
        "psnr_y: max_drop must be a finite number >= 0",
    ),
    Case(
        "regress-data-changed",
        E("regress", "{w}/runs/changed", "--against", "{w}/runs/done"),
        2,
        "regress: the runs were made from different input data, so a difference would be blamed on the method:\n"
        "  data.datasets/paired.lr/im0: content changed (sha256 ",
    ),  # fmt: skip
    Case("sweep-no-block", E("sweep", "{exp}"), 2, "{w}/exp.yaml: sweep: missing; add a 'sweep:' block"),
    Case("sweep-workers", E("sweep", "{exp}", "--workers", "0"), 2, "error: --workers must be >= 1, got 0"),
    Case(
        "train-no-block", E("train", "{exp}"), 2, "config error: {w}/exp.yaml: train: this experiment has no 'train:'"
    ),
    Case(
        "train-missing-source",
        train("name=t1", "train.data.sources.0.path={w}/nope"),
        2,
        "error: {w}/nope: no such folder or list file",
    ),  # fmt: skip
    Case(
        "train-empty-source",
        train("name=t2", "train.data.sources.0.path={w}/empty"),
        2,
        "error: {w}/empty: no image files found (searched recursively",
    ),  # fmt: skip
    Case(
        "train-device", train("name=t3", "--device", CUDA), 2, f"config error: --device / train.loop.device: '{CUDA}'"
    ),
    Case("train-bad-float", train("name=t4", "train.optim.lr=1e-4x"), 2, "train.optim.lr: expected float, got '1e-4x'"),
    # --- run folders that are taken: exit 3, nothing touched -------------------------------------------------
    Case("exists", bench("name=done"), 3, "{w}/runs/done already holds a finished run from the same config and code"),
    Case(
        "exists-other-config",
        bench("name=done", "bench.batch_size=2"),
        3,
        "already holds a finished run from a different config or code:\n  config.bench.batch_size: 1 (recorded) "
        "-> 2 (now)",
    ),  # fmt: skip
    Case(
        "user-files",
        bench("name=user", "--force"),
        3,
        "{w}/runs/user: holds 1 file(s) that alignvar-bench did not write where a bench run would write: "
        "images/mine.png; nothing was run",
        check=_check_user_file,
    ),  # fmt: skip
    Case(
        "locked",
        bench("name=done", "--force"),
        3,
        "{w}/runs/done: this bench run folder is being written by pid",
        around=lambda w: held_by_another_process(w / "runs/done"),
    ),  # fmt: skip
    Case(
        "train-changed",
        train("train.optim.lr=5e-3", "train.mse_weight=3.0"),
        3,
        "holds a training run made from another config, data or code, so it is not resumed:\n"
        "  config.train.mse_weight: 1.0 (recorded) -> 3.0 (now)\n"
        "  config.train.optim.lr: 0.001 (recorded) -> 0.005 (now)",
    ),  # fmt: skip
    Case("train-legacy", train("name=legacy"), 3, "holds a training run without a recorded identity"),
    Case(
        "train-finished",
        train(),
        0,
        "this training run has finished (same config, data and code); nothing to do",
    ),  # fmt: skip
    # --- runs that go ahead: the right result, failures recorded per image --------------------------------
    Case(
        "image-1x1",
        bench("name=small", "datasets.0.lr_dir={w}/tiny/LR", "datasets.0.hr_dir={w}/tiny/HR"),
        0,
        "failed paired/im1 (bicubic, metric): ssim_y: RuntimeError",
        writes="runs/small",
        check=_check_1x1,
    ),  # fmt: skip
    Case(
        "image-1x1-strict",
        bench("name=strict", "--strict", "datasets.0.lr_dir={w}/tiny/LR", "datasets.0.hr_dir={w}/tiny/HR"),
        1,
        "error: 1 failure(s) in {w}/runs/strict (see {w}/runs/strict/errors/images.csv):\n  paired/im1 (bicubic, "
        "metric): ssim_y: RuntimeError",
        writes="runs/strict",
    ),  # fmt: skip
    Case(
        "image-corrupt",
        bench("name=corrupt", "datasets.0.lr_dir={w}/corrupt/LR", "datasets.0.hr_dir={w}/corrupt/HR"),
        1,
        "paired/im1 (input, load): {w}/corrupt/LR/im1.png: cannot decode image",
        writes="runs/corrupt",
        check=_check_corrupt,
    ),  # fmt: skip
    Case(
        "image-corrupt-skip",
        bench(
            "name=corrupt_skip",
            "bench.on_corrupt=skip",
            "datasets.0.lr_dir={w}/corrupt/LR",
            "datasets.0.hr_dir={w}/corrupt/HR",
        ),
        0,
        "not evaluated paired/im1: {w}/corrupt/LR/im1.png: cannot decode image",
        writes="runs/corrupt_skip",
    ),  # fmt: skip
    Case(
        "output-folder-wrong-size",
        bench("name=wrong_size", method("type: output_folder, path: {w}/of")),
        0,
        "output_folder on paired: 2 evaluated / 1 failed",
        writes="runs/wrong_size",
        check=_check_wrong_size,
    ),  # fmt: skip
    Case(
        "bootstrap-0",
        bench("name=no_ci", "bench.bootstrap_samples=0"),
        0,
        "results: {w}/runs/no_ci",
        writes="runs/no_ci",
        where="out",
        check=_check_no_ci,
    ),  # fmt: skip
    Case(
        "train-lr-text",
        train("name=lr_text", "train.optim.lr=1e-4"),
        0,
        "trained checkpoint: {w}/runs/lr_text/",
        writes="runs/lr_text",
        where="out",
        check=_check_lr,
    ),  # fmt: skip
    Case(
        "train-diverges",
        train("name=diverges", "train.optim.lr=1e30", "train.loop.steps=20"),
        1,
        "error: non-finite loss (nan) at step 1; stopping. Last good checkpoint: none (no checkpoint written yet)",
        writes="runs/diverges",
    ),  # fmt: skip
    Case(
        "regress-nan",
        E("regress", "{w}/runs/nan", "--against", "{w}/runs/done", "--output", "{w}/runs/nan/r.html"),
        1,
        "FAIL: 1 regression(s), 1 with NaN/inf scores in the new run",
        writes="runs/nan",
        where="out",
    ),  # fmt: skip
    Case(
        "regress-data-allowed",
        E("regress", "{w}/runs/changed", "--against", "{w}/runs/done", "--allow-data-change"),
        0,
        "[input data changed: 1 difference(s), compared by --allow-data-change]",
        writes="runs/changed",
        where="out",
    ),  # fmt: skip
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    skip = world / case.writes if case.writes else None
    before = snapshot(world.root, skip)
    capsys.readouterr()
    with case.around(world) if case.around else nullcontext():
        code = main(case.argv(world))
    out, err = capsys.readouterr()
    text = out if case.where == "out" else err
    assert "Traceback" not in out + err
    assert case.message.replace("{w}", str(world.root)) in text, text
    assert code == case.code, out + err
    assert snapshot(world.root, skip) == before
    if case.check is not None:
        case.check(world)


def test_enough_cases() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)
