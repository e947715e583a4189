"""Diagnostics: ``logging`` with -v/-q on every command, results alone on stdout, warnings as log lines, and one
progress helper (tqdm on a terminal, plain log lines elsewhere)."""

from __future__ import annotations

import argparse
import ast
import logging
import warnings
from pathlib import Path

import pytest
import yaml

from harness.cli.main import COMMANDS, EXIT_CODES, build_parser, main
from harness.core import logconfig
from harness.core.progress import LogProgress, bars_shown, progress

REPO = Path(__file__).resolve().parents[1]


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_command_documents_verbosity_and_exit_codes():
    parser = build_parser()
    assert "-v, --verbose" in parser.format_help() and "-q, --quiet" in parser.format_help()
    commands = _commands(parser)
    assert set(commands) == set(COMMANDS)
    for name, cmd in commands.items():
        text = cmd.format_help()
        assert "-v, --verbose" in text and "-q, --quiet" in text, name
        assert EXIT_CODES in text, name  # the exit codes stay documented on every command
    for name, cmd in _commands(commands["analyze"]).items():  # and on analyze's own sub-commands
        assert "-v, --verbose" in cmd.format_help(), f"analyze {name}"
    assert parser.parse_args(["analyze", "attention", "exp.yaml", "-vv"]).verbose == 2
    args = parser.parse_args(["-v", "list"])
    assert (args.verbose, args.quiet) == (1, 0)
    args = parser.parse_args(["list", "-qq"])
    assert (args.verbose, args.quiet) == (0, 2)


def test_levels_and_formats_by_verbosity(capsys):
    log = logging.getLogger("harness.some.module")
    logconfig.configure(0)
    log.debug("d0")
    log.info("i0")
    log.warning("w0")
    logconfig.note(log, "n0")
    log.error("e0")
    assert capsys.readouterr() == ("", "i0\nwarning: w0\nnote: n0\nerror: e0\n")
    logconfig.configure(-1)  # -q
    log.info("i1")
    log.warning("w1")
    assert capsys.readouterr().err == "warning: w1\n"
    logconfig.configure(-2)  # -qq
    log.warning("w2")
    log.error("e2")
    assert capsys.readouterr().err == "error: e2\n"
    logconfig.configure(1)  # -v: time, level, logger name; debug messages too
    log.debug("d3")
    line = capsys.readouterr().err
    assert line.endswith(" DEBUG   harness.some.module: d3\n") and line[2] == ":"
    logging.getLogger("pyiqa").info("a library's info")  # libraries stay at warning until -vv
    assert capsys.readouterr().err == ""


def test_python_warnings_become_one_log_line_without_source(capsys):
    logconfig.configure(0)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = logconfig._show_warning  # what configure() installs (catch_warnings restores it)
        warnings.warn("a library's deprecation", DeprecationWarning, stacklevel=1)
    assert capsys.readouterr().err == "warning: a library's deprecation (DeprecationWarning)\n"


def test_rank_prefix_under_torchrun(capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    logconfig.configure(0)
    logging.getLogger("harness.x").warning("from rank one")
    assert capsys.readouterr().err == "[rank 1] warning: from rank one\n"


# ------------------------------------------------------------------------------------------------- progress
def test_log_progress_lines_every_tenth_and_at_the_end(caplog):
    caplog.set_level(logging.DEBUG)
    for _ in progress(range(25), desc="items", unit="img"):  # stderr is no terminal here: lines, not a bar
        pass
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(",")[0] for line in lines] == [f"items: {n}/25 img ({100 * n / 25:.0f}%)" for n in
                                                      (3, 6, 9, 12, 15, 18, 21, 24, 25)]  # fmt: skip
    assert all(r.levelno == logging.INFO for r in caplog.records)
    caplog.clear()
    with progress(total=4, desc="tiles", unit="tile", leave=False) as bar:  # transient work: debug lines
        bar.update(4)
    assert [(r.levelno, r.getMessage().split(",")[0]) for r in caplog.records] == [
        (logging.DEBUG, "tiles: 4/4 tile (100%)")
    ]
    caplog.clear()
    for _ in progress(range(5), desc="quiet", enabled=False):  # --no-progress: nothing at all
        pass
    assert caplog.records == []


def test_log_progress_by_time_and_postfix(caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    clock = iter([0.0, 10.0, 70.0, 71.0, 200.0])
    monkeypatch.setattr("harness.core.progress.time.monotonic", lambda: next(clock))
    bar = LogProgress(total=1000, desc="train", unit="step", initial=100)  # every 100 steps, or every 60 s
    bar.update(1)  # t=10: neither due
    bar.set_postfix(loss="0.5")
    bar.update(1)  # t=70: 60 s since the start
    bar.update(1)  # t=71
    bar.close()  # t=200: the last line
    assert [r.getMessage() for r in caplog.records] == [
        "train: 102/1000 step (10%), 70.0 s, 0.0286 step/s, loss=0.5",
        "train: 103/1000 step (10%), 200.0 s, 0.015 step/s, loss=0.5",
    ]


def test_bars_only_on_a_terminal_and_not_when_quiet(monkeypatch):
    class Terminal:
        def isatty(self):
            return True

        def write(self, text):
            return len(text)

        def flush(self):
            pass

    monkeypatch.delenv("ALIGNVAR_PROGRESS", raising=False)
    assert not bars_shown()  # pytest's captured stderr is no terminal
    monkeypatch.setattr("sys.stderr", Terminal())
    assert bars_shown() and not bars_shown(enabled=False)
    from tqdm import tqdm

    with progress(total=3, desc="x") as bar:
        assert isinstance(bar, tqdm)
    monkeypatch.setenv(logconfig.VERBOSITY_ENV, "-1")  # -q
    assert not bars_shown()
    monkeypatch.setenv(logconfig.VERBOSITY_ENV, "0")
    monkeypatch.setenv("ALIGNVAR_PROGRESS", "0")
    assert not bars_shown()
    monkeypatch.setattr("sys.stderr", open("/dev/null", "w"))  # noqa: SIM115 - closed at exit; a file, no tty
    monkeypatch.setenv("ALIGNVAR_PROGRESS", "1")
    assert bars_shown()


def test_every_progress_bar_and_every_print_goes_through_the_rules():
    """tqdm only in harness.core.progress (the one helper); print() only for results, to stdout, in the commands
    (and the sweep runner's listing and summary); diagnostics go through logging."""
    allowed_print = {"harness/sweep/runner.py"}
    for path in sorted(p for pkg in ("harness", "methods", "reports") for p in (REPO / pkg).rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(n.split(".")[0] == "tqdm" for n in names):
                    assert rel == "harness/core/progress.py", f"{rel}:{node.lineno} imports tqdm"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                assert rel.startswith("harness/cli/") or rel in allowed_print, f"{rel}:{node.lineno}: print()"
                assert not any(k.arg == "file" for k in node.keywords), f"{rel}:{node.lineno}: print(file=...)"
            if isinstance(node, ast.Attribute) and node.attr == "warn" and getattr(node.value, "id", "") == "warnings":
                pytest.fail(f"{rel}:{node.lineno}: warnings.warn (log a warning instead)")


# ------------------------------------------------------------------------------------------ a command's streams
@pytest.fixture
def tiny_bench(tmp_path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "streams",
                "output_root": str(tmp_path / "runs"),
                "datasets": [
                    {
                        "type": "bundled",
                        "name": "photos",
                        "hr_size": 32,
                        "count": 2,
                        "cache_dir": str(tmp_path / "cache"),
                    }
                ],  # fmt: skip
                "methods": ["bicubic"],
                "metrics": ["psnr_y"],
                "bench": {"device": "cpu", "bootstrap_samples": 100, "save_images": False},
            }
        )
    )
    return path


@pytest.mark.parametrize(
    "flags, progress_lines", [((), True), (("-q",), False), (("-v",), True)], ids=["default", "quiet", "verbose"]
)
def test_bench_results_on_stdout_diagnostics_on_stderr(tiny_bench, capsys, flags, progress_lines):
    assert main(["bench", str(tiny_bench), *flags]) == 0
    out, err = capsys.readouterr()
    run_dir = tiny_bench.parent / "runs" / "streams"
    lines = out.splitlines()
    assert lines[0] == f"results: {run_dir}  (summary.csv, metrics/, images/)"  # what a script parses
    assert "psnr_y" in lines[1] and lines[-1].split()[:2] == ["photos", "bicubic"]
    assert "img (100%)" not in out and "warning" not in out
    assert ("bicubic | photos: 2/2 img (100%)" in err) == progress_lines
    if "-v" in flags:
        assert " INFO    harness.core.progress: bicubic | photos: 2/2 img (100%)" in err
    if "-q" in flags:
        assert err == ""


def test_a_cell_log_gets_each_line_once_and_the_terminal_none(tmp_path, capsys):
    """An inline sweep cell's output capture takes the command's stderr handler off while it runs."""
    from harness.sweep.execute import capture_output

    logconfig.configure(0)
    log = logging.getLogger("harness.sweep.cell")
    with capture_output(tmp_path / "log.txt", "== header\n"):
        log.info("inside the cell")
    log.info("after the cell")
    text = (tmp_path / "log.txt").read_text()
    assert text.startswith("== header\n") and text.count("inside the cell") == 1
    assert capsys.readouterr().err == "after the cell\n"
