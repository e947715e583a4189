"""A method that runs an external command: per image (``{input}``, ``{output}``) or per folder.

For baselines that live in their own repository/environment and are cheap enough to run from the bench (a
conda env's ``python inference.py ...``, a compiled binary). The LR batch is written as 8-bit PNGs (lossless
for LR images read from 8-bit files), the command is run, and its outputs are read back and size-checked.

Placeholders (only these names are replaced; other braces, e.g. in ``python -c`` code, are left alone):
- per image: ``{input}``, ``{output}`` (absolute PNG paths), ``{key}``, ``{scale}``;
- per folder: ``{input_dir}``, ``{output_dir}``, ``{scale}``; outputs are found as
  ``<output_dir>/<filename_tmpl.format(key)>.<any image extension>``.

Data never goes into a string that a shell (or an interpreter) parses. The template is split with
``shlex.split`` and each placeholder is replaced inside its own argument, run without a shell (a file name
with spaces or ``$(...)`` stays one inert argument). A template that hands a script to a shell or an
interpreter (``bash -c '...'``, ``sh -c``, ``cmd /c``, ``python -c``, ``perl -e``, ...) with a placeholder
inside the script text is refused: pass the values after the script as positional arguments
(``bash -c 'up "$1" "$2"' _ {input} {output}``). The values are also in the environment of every run
(``ALIGNVAR_INPUT``, ``ALIGNVAR_OUTPUT``, ``ALIGNVAR_KEY``, ``ALIGNVAR_SCALE``; per folder ``ALIGNVAR_INPUT_DIR``,
``ALIGNVAR_OUTPUT_DIR``). ``shell: true`` runs the template through ``/bin/sh``: it may then contain no
placeholder at all (refer to ``"$ALIGNVAR_INPUT"`` etc.) and ``mode`` says per image or per folder. Each run
gets its own process group (``start_new_session``), so a timeout (or Ctrl-C) kills
the whole group, including children the command started (unless they started their own session). A failing
command raises ``CommandError`` with the exit code and the last lines of stderr; a timed-out one
``CommandTimeoutError``. POSIX only.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from harness.core.imageio import IMAGE_SUFFIXES, load_image, save_image
from harness.core.registry import register
from methods.base import SRMethod

IMAGE_PLACEHOLDERS = ("input", "output", "key", "scale")
FOLDER_PLACEHOLDERS = ("input_dir", "output_dir", "scale")
_PLACEHOLDER = re.compile(r"\{(input_dir|output_dir|input|output|key|scale)\}")
ENV_PREFIX = "ALIGNVAR_"  # every placeholder's value is also the environment variable ALIGNVAR_<NAME>
SHELLS = ("sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh", "yash")
WINDOWS_SHELLS = ("cmd", "cmd.exe", "powershell", "powershell.exe", "pwsh", "pwsh.exe")
# interpreters and the flags after which their next argument is code they parse
INLINE_CODE = {"python": ("-c",), "perl": ("-e", "-E"), "ruby": ("-e",), "node": ("-e", "-p", "--eval", "--print"),
               "rscript": ("-e",), "lua": ("-e",), "php": ("-r",), "awk": (), "osascript": ("-e",)}  # fmt: skip


class CommandError(RuntimeError):
    """The external command failed (non-zero exit, no output, wrong output size)."""


class CommandTimeoutError(CommandError, TimeoutError):
    """The external command ran past ``timeout_s`` and was killed."""


@dataclass
class CommandConfig:
    command: str  # template with {input} {output} [{key} {scale}] or {input_dir} {output_dir} [{scale}]
    scale: int = 4
    timeout_s: float | None = 600.0  # per command run; null = no limit
    env: dict[str, str] = field(default_factory=dict)  # added to the current environment
    cwd: str | None = None  # working directory of the command
    shell: bool = False  # run through /bin/sh (explicit opt-in)
    filename_tmpl: str = "{}"  # folder mode: output stem from the LR key
    work_dir: str | None = None  # where inputs/outputs are written (kept); default: a temp dir, cleaned up
    inference_steps: int | None = None  # for efficiency tables, if known
    stderr_lines: int = 20  # stderr lines quoted in errors
    mode: Literal["image", "folder"] | None = None  # null: from the placeholders; needed with shell: true

    def __post_init__(self) -> None:
        names = set(_PLACEHOLDER.findall(self.command))
        if self.shell:
            if names:
                raise ValueError(
                    f"command: with shell: true a shell parses the command, so no file name is ever put into it "
                    f'(a file named $(touch x).png would run as code); write "${ENV_PREFIX}INPUT" '
                    f'"${ENV_PREFIX}OUTPUT" ("${ENV_PREFIX}INPUT_DIR" "${ENV_PREFIX}OUTPUT_DIR" per folder, '
                    f'"${ENV_PREFIX}KEY", "${ENV_PREFIX}SCALE"), set for every run, instead of '
                    f"{', '.join('{' + n + '}' for n in sorted(names))}, and set mode: image or folder"
                )
            if self.mode is None:
                raise ValueError("mode: with shell: true, say whether the command runs per image or per folder")
            self._check_common()
            return
        image, folder = {"input", "output"} <= names, {"input_dir", "output_dir"} <= names
        if image == folder:
            raise ValueError(
                f"command must contain either {{input}} and {{output}} (per image) or {{input_dir}} and "
                f"{{output_dir}} (per folder); found placeholders: {', '.join(sorted(names)) or 'none'}"
            )
        wrong = names - set(IMAGE_PLACEHOLDERS if image else FOLDER_PLACEHOLDERS)
        if wrong:
            raise ValueError(
                f"placeholder(s) {', '.join('{' + n + '}' for n in sorted(wrong))} cannot be used in "
                f"{'per-image' if image else 'per-folder'} mode"
            )
        if self.mode is not None and self.mode != ("image" if image else "folder"):
            raise ValueError(f"mode: {self.mode!r} does not fit the command's placeholders")
        self._check_common()
        try:
            args = shlex.split(self.command)
        except ValueError as exc:
            raise ValueError(f"command cannot be split into arguments ({exc}): {self.command!r}") from None
        check_no_code_placeholders(args)

    def _check_common(self) -> None:
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 or null, got {self.timeout_s}")
        if self.filename_tmpl.count("{}") != 1:
            raise ValueError(f"filename_tmpl must contain '{{}}' exactly once, got {self.filename_tmpl!r}")

    @property
    def run_mode(self) -> str:
        """``image`` (one run per image) or ``folder`` (one run per batch folder)."""
        if self.mode is not None:
            return self.mode
        return "image" if "{input}" in self.command else "folder"


def _program(args: list[str]) -> tuple[str, int]:
    """The program a command line runs (lower-case base name, version suffix dropped) and its index, looking
    through ``env [-i] [-u NAME] [NAME=value ...]``, ``exec``, ``nice`` and ``busybox``."""
    i = 0
    while i < len(args):
        base = Path(args[i]).name.lower()
        if base in ("env", "exec", "nice", "nohup", "busybox", "command", "stdbuf", "timeout"):
            i += 1
            while i < len(args) and (args[i].startswith("-") or "=" in args[i] or args[i].isdigit()):
                i += 2 if args[i] in ("-u", "-n", "-s", "-k", "-C") else 1
            continue
        return re.sub(r"[\d.]+$", "", base) or base, i
    return "", len(args)


# options taking a value (the next argument is not the script operand), per kind of program
_VALUE_OPTIONS = {"shell": ("-o", "+o", "-O", "+O", "--rcfile", "--init-file"), "python": ("-W", "-X"),
                  "node": ("-r", "--require", "--import", "--loader"), "perl": ("-I", "-M", "-m")}  # fmt: skip


def _script_args(args: list[str]) -> tuple[str, list[str]]:
    """(what parses it, the arguments that are script text) of a command line; ("", []) for a plain program.

    Options are read up to the first operand (a script file: its own options are not the interpreter's).
    """
    program, i = _program(args)
    rest = args[i + 1 :]
    if program in WINDOWS_SHELLS:
        for j, arg in enumerate(rest):
            if arg.lower() in ("/c", "/k", "-c", "-command", "-encodedcommand", "-ec"):
                return f"{program} {arg}", rest[j + 1 :]
        return "", []
    if program in SHELLS:
        kind, is_code = "shell", lambda a: a == "--command" or re.fullmatch(r"-[A-Za-z]*c[A-Za-z]*", a) is not None
    elif program in INLINE_CODE:
        flags = INLINE_CODE[program]
        kind = program

        def is_code(a: str) -> bool:
            return a in flags or any(len(f) == 2 and a.startswith(f) and not a.startswith("--") for f in flags)
    else:
        return "", []
    j = 0
    while j < len(rest):
        arg = rest[j]
        if program == "awk" and not arg.startswith("-"):
            return "awk", [arg]  # awk's first operand is its program text
        if is_code(arg):
            attached = arg[2:] if len(arg) > 2 and not arg.startswith("--") and kind != "shell" else ""
            return f"{program} {arg[:2] if attached else arg}", [attached] if attached else rest[j + 1 : j + 2]
        if arg == "-m" and kind == "python" or not arg.startswith(("-", "+")) or arg == "--":
            return "", []  # a module or a script file runs: what follows are its arguments
        j += 2 if arg in _VALUE_OPTIONS.get(kind, ()) else 1
    return "", []


def check_no_code_placeholders(args: list[str]) -> None:
    """Refuse a placeholder inside script text that a shell or an interpreter parses (see the module docstring)."""
    parser, scripts = _script_args(args)
    found = sorted({name for text in scripts for name in _PLACEHOLDER.findall(text)})
    if not found:
        return
    shown = ", ".join("{" + n + "}" for n in found)
    if parser.split()[0] in (*SHELLS, *WINDOWS_SHELLS):
        safe = (
            'pass them after the script as separate arguments and refer to them as "$1", "$2", ...: e.g. '
            'bash -c \'python up.py "$1" "$2"\' _ {input} {output}'
        )
    else:
        safe = "pass them as separate arguments after the code and read them there (e.g. sys.argv[1])"
    raise ValueError(
        f"command: {shown} inside the script that `{parser}` parses: a file name such as $(touch x).png or "
        f"one with a quote would run as code; {safe}, or use the environment variables "
        f"{', '.join(ENV_PREFIX + n.upper() for n in found)}, set for every run"
    )


def substitute(template: str, values: dict[str, str], *, shell: bool) -> list[str] | str:
    """The arguments of one run: each placeholder filled inside its own argument; with ``shell`` the template
    as it is (it holds no placeholder: the shell reads the values from the environment)."""
    if shell:
        return template
    return [_PLACEHOLDER.sub(lambda m: values[m[1]], arg) for arg in shlex.split(template)]


def environment(values: dict[str, str]) -> dict[str, str]:
    """``ALIGNVAR_<NAME>`` for every placeholder value of a run."""
    return {f"{ENV_PREFIX}{name.upper()}": value for name, value in values.items()}


def _stderr_tail(stderr: str, lines: int) -> str:
    tail = stderr.rstrip().splitlines()[-lines:] if lines > 0 else []
    if not tail:
        return "(no stderr output)"
    return f"last {len(tail)} lines of stderr:\n" + "\n".join(f"  {line}" for line in tail)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child leads its own group (start_new_session)
    except ProcessLookupError:
        pass


def run_command(
    args: list[str] | str,
    *,
    shell: bool = False,
    timeout_s: float | None = None,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    stderr_lines: int = 20,
    what: str = "command",
) -> float:
    """Run ``args`` to completion; returns wall seconds. Raises CommandError / CommandTimeoutError."""
    shown = args if isinstance(args, str) else shlex.join(args)
    full_env = {**os.environ, **(env or {})}
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(
            args,
            shell=shell,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        raise CommandError(f"{what}: cannot start {shown}: {exc}") from None
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        _, stderr = proc.communicate()
        tail = _stderr_tail(stderr, stderr_lines)
        raise CommandTimeoutError(f"{what} timed out after {timeout_s:g} s and was killed: {shown}\n{tail}") from None
    finally:
        if proc.poll() is None:  # KeyboardInterrupt or another error while waiting
            _kill_group(proc)
            proc.wait()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        code = proc.returncode
        status = f"was killed by signal {-code}" if code < 0 else f"failed with exit code {code}"
        raise CommandError(f"{what} {status}: {shown}\n{_stderr_tail(stderr, stderr_lines)}")
    return seconds


class CommandMethod(SRMethod):
    """SR by an external command; per-image wall time (process start included) is recorded."""

    external = True  # parameters live in another process: unknown here

    def __init__(self, config: CommandConfig) -> None:
        super().__init__()
        self.config = config
        self.scale = config.scale
        self.inference_steps = config.inference_steps
        self.timings: dict[str, float] = {}
        self._owns_dir = config.work_dir is None
        self.work_dir = Path(tempfile.mkdtemp(prefix="sr-command-") if self._owns_dir else config.work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._batches = 0

    def _run(self, values: dict[str, str], what: str) -> float:
        args = substitute(self.config.command, values, shell=self.config.shell)
        return run_command(
            args,
            shell=self.config.shell,
            timeout_s=self.config.timeout_s,
            env={**self.config.env, **environment(values)},
            cwd=self.config.cwd,
            stderr_lines=self.config.stderr_lines,
            what=what,
        )

    def _read(self, file: Path | None, key: str, lr_hw: tuple[int, int], what: str) -> torch.Tensor:
        if file is None or not file.is_file():
            raise CommandError(f"{what} succeeded but wrote no output for {key!r} (expected {file})")
        img = load_image(file)
        h, w = lr_hw
        want = (h * self.scale, w * self.scale)
        if tuple(img.shape[-2:]) != want:
            raise CommandError(
                f"{file}: size {img.shape[-1]}x{img.shape[-2]} but expected {want[1]}x{want[0]} "
                f"(LR {w}x{h} x{self.scale})"
            )
        return img

    def upscale(self, lr: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        if lr.shape[0] != len(keys):
            raise ValueError(f"got {lr.shape[0]} LR images but {len(keys)} keys")
        for key in keys:
            if not key or Path(key).name != key or key in (".", ".."):
                raise ValueError(f"image key {key!r} cannot be used as a file name")
        self._batches += 1
        batch_dir = self.work_dir / f"batch_{self._batches:06d}"
        in_dir, out_dir = batch_dir / "input", batch_dir / "output"
        in_dir.mkdir(parents=True, exist_ok=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        lr_hw = (int(lr.shape[-2]), int(lr.shape[-1]))
        outputs = []
        try:
            for img, key in zip(lr, keys):
                save_image(img.detach().cpu(), in_dir / f"{key}.png")
            if self.config.run_mode == "image":
                for key in keys:
                    values = {
                        "input": str((in_dir / f"{key}.png").resolve()),
                        "output": str((out_dir / f"{key}.png").resolve()),
                        "key": key,
                        "scale": str(self.scale),
                    }
                    what = f"command for image {key!r}"
                    self.timings[key] = self._run(values, what)
                    outputs.append(self._read(out_dir / f"{key}.png", key, lr_hw, what))
            else:
                values = {
                    "input_dir": str(in_dir.resolve()),
                    "output_dir": str(out_dir.resolve()),
                    "scale": str(self.scale),
                }
                what = f"command for {len(keys)} images"
                seconds = self._run(values, what)
                found = {f.stem: f for f in out_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES}
                for key in keys:
                    self.timings[key] = seconds / len(keys)
                    file = found.get(self.config.filename_tmpl.format(key))
                    outputs.append(self._read(file, key, lr_hw, what))
        finally:
            if self._owns_dir:
                shutil.rmtree(batch_dir, ignore_errors=True)
        return torch.stack(outputs).to(self.device)

    def reported_latency(self, key: str) -> float | None:
        """Wall seconds of the command run that produced ``key`` (per-folder runs: split evenly)."""
        return self.timings.get(key)

    def close(self) -> None:
        if self._owns_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)


@register("methods", "command", description="External command per image or folder", config=CommandConfig)
def build_command(config: CommandConfig) -> CommandMethod:
    return CommandMethod(config)
