"""Command adapter: a working per-image and per-folder command, failures, a timeout that kills the group."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harness.core.mapping import ConfigError
from harness.core.registry import create
from methods.adapters.command import CommandError, CommandMethod, CommandTimeoutError

PY = shlex.quote(sys.executable)
# upscale {input} -> {output} by an integer factor with PIL's nearest filter
PIL_UPSCALE = (
    "import sys; from PIL import Image; im = Image.open(sys.argv[1]); s = int(sys.argv[3]); "
    "im.resize((im.width * s, im.height * s), Image.NEAREST).save(sys.argv[2])"
)
PIL_FOLDER = (
    "import sys, pathlib; from PIL import Image\n"
    "for p in sorted(pathlib.Path(sys.argv[1]).glob('*.png')):\n"
    "    im = Image.open(p); s = int(sys.argv[3])\n"
    "    out = pathlib.Path(sys.argv[2]) / (p.stem + '_sr.png')\n"
    "    im.resize((im.width * s, im.height * s), Image.NEAREST).save(out)"
)


def _lr(batch: int = 2, h: int = 6, w: int = 5) -> torch.Tensor:
    """8-bit-exact LR values, so the PNG round trip is lossless."""
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, 3, h, w), generator=gen).float() / 255.0


def _method(**options) -> CommandMethod:
    return create("methods", "command", options)


def test_per_image_command_upscales_and_records_time():
    method = _method(command=f"{PY} -c {shlex.quote(PIL_UPSCALE)} {{input}} {{output}} {{scale}}", scale=3)
    lr = _lr()
    sr = method.upscale(lr, ["img_a", "img b"])  # a key with a space stays one argument
    torch.testing.assert_close(sr, F.interpolate(lr, scale_factor=3, mode="nearest"), rtol=0, atol=0)
    assert set(method.timings) == {"img_a", "img b"} and all(t > 0 for t in method.timings.values())
    assert method.reported_latency("img_a") == method.timings["img_a"]
    work_dir = method.work_dir
    assert list(work_dir.iterdir()) == []  # per-batch files removed
    method.close()
    assert not work_dir.exists()


def test_per_folder_command_with_template():
    method = _method(
        command=f"{PY} -c {shlex.quote(PIL_FOLDER)} {{input_dir}} {{output_dir}} {{scale}}",
        filename_tmpl="{}_sr",
    )
    lr = _lr(3)
    sr = method.upscale(lr, ["a", "b", "c"])
    torch.testing.assert_close(sr, F.interpolate(lr, scale_factor=4, mode="nearest"), rtol=0, atol=0)
    assert len(set(method.timings.values())) == 1  # one run, split evenly
    method.close()


def test_shell_mode_and_env(tmp_path):
    script = tmp_path / "up.py"
    script.write_text(PIL_UPSCALE)
    method = _method(  # a shell parses the command: the values come from the environment, never the text
        command='"$UPSCALER" "$SCRIPT" "$ALIGNVAR_INPUT" "$ALIGNVAR_OUTPUT" "$ALIGNVAR_SCALE" && echo done',
        shell=True,
        mode="image",
        env={"UPSCALER": sys.executable, "SCRIPT": str(script)},
        cwd=str(tmp_path),
        scale=2,
    )
    lr = _lr(1)
    torch.testing.assert_close(method.upscale(lr, ["x"]), F.interpolate(lr, scale_factor=2), rtol=0, atol=0)
    method.close()


def test_failing_command_reports_exit_code_and_stderr_tail(tmp_path):
    code = "import sys; [print(f'line {i}', file=sys.stderr) for i in range(30)]; sys.exit(3)"
    method = _method(
        command=f"{PY} -c {shlex.quote(code)} {{input}} {{output}}", work_dir=str(tmp_path), stderr_lines=3
    )
    with pytest.raises(CommandError) as err:
        method.upscale(_lr(1), ["k"])
    batch = tmp_path / "batch_000001"
    shown = shlex.join([sys.executable, "-c", code, str(batch / "input" / "k.png"), str(batch / "output" / "k.png")])
    assert str(err.value) == (
        f"command for image 'k' failed with exit code 3: {shown}\n"
        "last 3 lines of stderr:\n  line 27\n  line 28\n  line 29"
    )
    assert (batch / "input" / "k.png").is_file()  # a user-given work_dir is kept for inspection


def test_no_output_and_wrong_size_are_errors(tmp_path):
    method = _method(command=f"{PY} -c pass {{input}} {{output}}", work_dir=str(tmp_path))
    with pytest.raises(CommandError) as err:
        method.upscale(_lr(1), ["k"])
    expected = tmp_path / "batch_000001" / "output" / "k.png"
    assert str(err.value) == f"command for image 'k' succeeded but wrote no output for 'k' (expected {expected})"

    copy = "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])"
    method = _method(command=f"{PY} -c {shlex.quote(copy)} {{input}} {{output}}", work_dir=str(tmp_path))
    with pytest.raises(CommandError) as err:
        method.upscale(_lr(1, 6, 5), ["k"])
    assert (
        str(err.value) == f"{tmp_path / 'batch_000001' / 'output' / 'k.png'}: size 5x6 but expected 20x24 (LR 5x6 x4)"
    )


def _state(pid: int) -> str | None:
    """Linux process state letter (Z = zombie), or None when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def test_timeout_kills_the_process_group(tmp_path):
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen(['sleep', '60']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); "
        "print('started', file=sys.stderr, flush=True); time.sleep(60)"
    )
    method = _method(command=f"{PY} -c {shlex.quote(code)} {{input}} {{output}}", timeout_s=1)
    start = time.monotonic()
    with pytest.raises(CommandTimeoutError) as err:
        method.upscale(_lr(1), ["k"])
    assert time.monotonic() - start < 30  # killed, not waited for
    message = str(err.value)
    assert message.startswith(f"command for image 'k' timed out after 1 s and was killed: {sys.executable} -c ")
    assert message.endswith("\nlast 1 lines of stderr:\n  started")
    grandchild = int(pid_file.read_text())
    for _ in range(50):  # SIGKILL is asynchronous; the orphan is reaped by init (or left a zombie)
        if _state(grandchild) in (None, "Z"):
            break
        time.sleep(0.1)
    assert _state(grandchild) in (None, "Z")
    method.close()


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            "tool {input}",
            "command must contain either {input} and {output} (per image) or {input_dir} and {output_dir} "
            "(per folder); found placeholders: input",
        ),
        (
            "tool {input} {output} {input_dir} {output_dir}",
            "command must contain either {input} and {output} (per image) or {input_dir} and {output_dir} "
            "(per folder); found placeholders: input, input_dir, output, output_dir",
        ),
        ("tool {input_dir} {output_dir} {key}", "placeholder(s) {key} cannot be used in per-folder mode"),
        (
            "tool 'unclosed {input} {output}",
            "command cannot be split into arguments (No closing quotation): ",
        ),
    ],
)
def test_config_errors(command, message):
    with pytest.raises(ConfigError) as err:
        _method(command=command)
    assert str(err.value).startswith(f"<config>: methods.command: {message}")


def test_unknown_braces_are_left_alone(tmp_path):
    out = tmp_path / "seen.txt"
    code = f"import sys; d = {{'a': 1}}; open({str(out)!r}, 'w').write(str(d) + '{{x}}')"
    method = _method(command=f"{PY} -c {shlex.quote(code)} {{input}} {{output}}")
    with pytest.raises(CommandError, match="wrote no output"):
        method.upscale(_lr(1), ["k"])
    assert out.read_text() == "{'a': 1}{x}"
    method.close()
