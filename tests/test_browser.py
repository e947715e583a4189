"""Open a generated sweep report in headless Chromium: it renders, every <img> loads, no console errors.

Chromium is Debian's ``chromium``. When it is missing the test installs it with ``apt-get install -y
chromium`` (about 30 s on a warm mirror) if it runs as root with apt-get available; set ``ALIGNVAR_NO_APT=1``
to forbid the install and ``ALIGNVAR_NO_BROWSER=1`` to skip the browser check altogether. Otherwise the test
skips, saying why.

Checks: a page probe (a script appended to a copy of the page) marks ``<body>`` with the number of images and
of broken ones (``naturalWidth == 0``) after ``load``, read back with ``--dump-dom``; every console message
(the report itself has no scripts, so any message is a problem: uncaught errors, failed resource loads) is
read from ``--enable-logging=stderr``; a screenshot must be a non-blank PNG. A control page with a broken
image and a script error proves the probe and the console scan detect those.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from reports.sweep.report import render_sweep_report

PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).length;
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-broken', broken);
  if (broken) console.error('broken images: ' + broken);
});
</script>"""
CONSOLE_RE = re.compile(r":CONSOLE(?::|\()\d*\)?\] (.*)")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def chromium() -> str:
    if os.environ.get("ALIGNVAR_NO_BROWSER"):
        pytest.skip("ALIGNVAR_NO_BROWSER is set: browser check disabled")
    path = _find_browser()
    if path:
        return path
    why = None
    if os.environ.get("ALIGNVAR_NO_APT"):
        why = "ALIGNVAR_NO_APT is set"
    elif not shutil.which("apt-get"):
        why = "apt-get is not available"
    elif hasattr(os, "geteuid") and os.geteuid() != 0:
        why = "not running as root (cannot apt-get install)"
    if why:
        pytest.skip(f"chromium is not installed and {why}; install Debian's 'chromium' to run this check")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"],
            env=env,
            capture_output=True,
            timeout=600,
            check=True,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"chromium is not installed and 'apt-get install -y chromium' failed: {exc}")
    path = _find_browser()
    if not path:
        pytest.skip("apt-get installed chromium but no chromium executable is on PATH")
    return path


def browse(browser: str, page: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        *args,
        page.resolve().as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=page.parent)


def probe(browser: str, page: Path) -> tuple[int, int, list[str]]:
    """(images, broken images, console messages) of ``page`` in headless Chromium."""
    probed = page.with_name(f"{page.stem}.probe.html")
    html = page.read_text(encoding="utf-8")
    assert html.count("</body>") == 1
    probed.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    proc = browse(browser, probed, "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    body = re.search(r'<body[^>]*data-images="(\d+)"[^>]*data-broken="(\d+)"', proc.stdout)
    assert body, f"the probe did not run; DOM starts with: {proc.stdout[:500]!r}"
    return int(body.group(1)), int(body.group(2)), CONSOLE_RE.findall(proc.stderr)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    from test_exports import make_sweep

    return render_sweep_report(make_sweep(tmp_path_factory.mktemp("browser"), analysis=True))


def test_probe_detects_broken_images_and_console_errors(chromium, tmp_path):
    control = tmp_path / "control.html"
    control.write_text(
        "<!doctype html><html><body><img src='data:image/png;base64,AAAA'>"
        "<script>undefinedFunction();</script></body></html>"
    )
    images, broken, console = probe(chromium, control)
    assert (images, broken) == (1, 1)
    assert any("undefinedFunction is not defined" in line for line in console), console
    assert any("broken images: 1" in line for line in console), console


def test_sweep_report_renders_in_chromium(chromium, report):
    images, broken, console = probe(chromium, report)
    assert images == 3 and broken == 0
    assert console == [], f"console messages: {console}"
    shot = report.with_name("screenshot.png")
    proc = browse(chromium, report, f"--screenshot={shot}", "--window-size=1280,2400", "--hide-scrollbars")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    with Image.open(shot) as img:
        assert img.size == (1280, 2400)
        stats = ImageStat.Stat(img.convert("L"))
        assert stats.stddev[0] > 10  # not a blank page
