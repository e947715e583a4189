"""HTML report: tables, image grid, escaping, sections API, crop choice; demo config handling.

A small bench run on real photographic tiles is made once with stand-in components (``_t_report_*``).
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from bs4 import BeautifulSoup
from PIL import Image

from harness.bench.runner import BenchFailedError, run_bench
from harness.config.experiment import experiment_from_dict
from harness.core import registry
from harness.core.imageio import ImageError
from harness.core.registry import register
from harness.data.datasets import Sample
from methods.base import SRMethod
from reports import images as render
from reports.bench import render_report
from reports.page import Section, format_value

EVIL = "<script>alert(1)</script>"


@dataclass
class PhotoConfig:
    n: int = 3
    side: int = 64  # HR side
    corrupt: str | None = None


class PhotoTiles:
    """HR = 64x64 tiles of scikit-image's astronaut; LR = 4x4 box-downsampled, 8-bit."""

    def __init__(self, cfg: PhotoConfig):
        from skimage import data

        self.scale, self.has_reference, self.name = 4, True, "photo"
        self.img = torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1).float() / 255
        self.side, self.corrupt = cfg.side, cfg.corrupt
        self.keys = [f"tile{i}" for i in range(cfg.n)]

    def __len__(self):
        return len(self.keys)

    def __getitem__(self, i):
        if self.keys[i] == self.corrupt:
            raise ImageError(f"/photos/{self.corrupt}.png: cannot decode image")
        y = 40 + 70 * i
        hr = self.img[:, y : y + self.side, 200 : 200 + self.side].contiguous()
        lr = (F.avg_pool2d(hr[None], 4)[0] * 255).round() / 255
        return Sample(self.keys[i], lr, hr)


class Nearest(SRMethod):
    def upscale(self, lr, keys):
        return lr.repeat_interleave(4, -1).repeat_interleave(4, -2)


class Bilinear(SRMethod):
    def upscale(self, lr, keys):
        return F.interpolate(lr, scale_factor=4, mode="bilinear", align_corners=False).clamp(0, 1)


class Boom(SRMethod):
    def upscale(self, lr, keys):
        raise RuntimeError("kaboom <b>not bold</b>")


class MAE:
    lower_better, needs_reference, set_level = True, True, False

    def __call__(self, sr, hr):
        return (sr.double() - hr.double()).abs().mean(dim=(1, 2, 3))


class PSNR:
    lower_better, needs_reference, set_level = False, True, False

    def __call__(self, sr, hr):
        mse = (sr.double() - hr.double()).pow(2).mean(dim=(1, 2, 3))
        return 10 * torch.log10(1 / mse)


class Unavailable:
    def __init__(self):
        raise FileNotFoundError("niqe_modelparameters.mat not found in /nowhere")


register("datasets", "_t_report_photo", config=PhotoConfig)(PhotoTiles)
register("methods", "_t_report_nearest")(Nearest)
register("methods", "_t_report_bilinear")(Bilinear)
register("methods", "_t_report_boom")(Boom)
register("metrics", "_t_report_mae")(MAE)
register("metrics", "_t_report_psnr")(PSNR)
register("metrics", "_t_report_unavailable")(Unavailable)


def bench_config(root: Path, **extra) -> dict:
    return {
        "name": "rep",
        "output_root": str(root),
        "datasets": [{"type": "_t_report_photo", "name": "photos", "corrupt": "tile1", "n": 4}],
        "methods": [
            {"type": "_t_report_nearest", "name": "nearest"},
            {"type": "_t_report_bilinear", "name": EVIL},
            {"type": "_t_report_boom", "name": "boom"},
        ],
        "metrics": [{"type": "_t_report_psnr", "name": "psnr"}, {"type": "_t_report_mae", "name": "mae"}],
        "bench": {"device": "cpu", "on_corrupt": "skip", "bootstrap_samples": 100},
        "report": {"title": f"Report {EVIL}", "crop_size": 16},
        **extra,
    }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    cfg = experiment_from_dict(bench_config(root), source="rep.yaml")
    with pytest.raises(BenchFailedError):
        run_bench(cfg, progress=False)  # logs "skipping photos/tile1: ..." (test_runner checks those warnings)
    return root / "rep"


@pytest.fixture(scope="module")
def page(run_dir) -> tuple[str, BeautifulSoup]:
    path = render_report(run_dir)
    html = path.read_text(encoding="utf-8")
    return html, BeautifulSoup(html, "html.parser")


def _quality_table(soup):
    section = soup.find("section", id="results")
    return section.find("table", class_="quality")


def test_quality_table_headers_rows_and_bold_best(page, run_dir):
    _, soup = page
    table = _quality_table(soup)
    headers = [th.get_text(" ", strip=True) for th in table.find("thead").find_all("th")]
    assert headers == ["method", "psnr \u2191", "mae \u2193", "latency (s/img) \u2193"]
    rows = table.find("tbody").find_all("tr")
    assert [r.find("td").get_text() for r in rows] == ["nearest", EVIL]  # failed method has no row
    summary = pd.read_csv(run_dir / "summary.csv")
    for col, metric in enumerate(["psnr", "mae"], start=1):
        values = summary[summary["metric"] == metric].set_index("method")["mean"]
        best = values.idxmax() if metric == "psnr" else values.idxmin()
        bold = [r.find("td").get_text() for r in rows if r.find_all("td")[col].find("b") is not None]
        assert bold == [best]
        cell = rows[[r.find("td").get_text() for r in rows].index(best)].find_all("td")[col]
        assert cell.find("b").get_text() == format_value(values[best])
        low, high = summary[(summary["metric"] == metric) & (summary["method"] == best)][["ci_low", "ci_high"]].iloc[0]
        assert cell.find("small").get_text() == f"[{format_value(low)}, {format_value(high)}]"
    # bilinear beats nearest on these photos: a sanity check of the closed-form stand-ins
    assert bold == [EVIL]


def test_overview_states_the_ci_method_used(page, run_dir):
    html, _ = page
    summary = pd.read_csv(run_dir / "summary.csv")
    assert set(summary["ci_method"]) == {"BCa"} and set(summary["n"]) == {3}  # 3 good tiles: BCa is valid
    assert f"95% bootstrap CI of the mean (BCa: {len(summary)} rows), 100 resamples" in html


def test_per_image_table_is_collapsible(page):
    _, soup = page
    details = soup.find("section", id="per-image-results").find("details")
    assert details.find("summary").get_text().startswith("photos: 6 rows")
    rows = details.find("tbody").find_all("tr")
    assert len(rows) == 6  # 3 readable images x 2 methods
    assert {r.find_all("td")[0].get_text() for r in rows} == {"tile0", "tile2", "tile3"}


def test_images_are_embedded_valid_pngs(page):
    html, soup = page
    grid = soup.find("section", id="visual-comparison")
    images = grid.find_all("img")
    # grid limited to report.max_images_in_grid (6) readable images: 3 rows x (LR + 2 methods + HR) x 2 views
    assert len(images) == 3 * 4 * 2
    for img in images:
        prefix, payload = img["src"].split(",", 1)
        assert prefix == "data:image/png;base64"
        data = base64.b64decode(payload, validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(io.BytesIO(data)) as pil:
            pil.verify()
    assert [c.get_text().split("\u00b7")[0].strip() for c in grid.find_all("figcaption")][:4] == [
        "LR (nearest)", "nearest", EVIL, "HR",
    ]  # fmt: skip
    # self-contained: no external resources of any kind
    assert soup.find_all(["link", "script", "iframe", "object", "embed"]) == []
    assert all(tag["src"].startswith("data:") for tag in soup.find_all(src=True))
    assert all(tag["href"].startswith("#") for tag in soup.find_all(href=True))
    assert "url(" not in html and "@import" not in html


def test_untrusted_names_are_escaped(page):
    html, soup = page
    assert soup.find_all("script") == []
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert soup.title.get_text() == f"Report {EVIL}"
    assert "<b>not bold</b>" not in html and "kaboom &lt;b&gt;not bold&lt;/b&gt;" in html


def test_warning_banner_lists_failures_and_skips(page):
    _, soup = page
    banner = soup.find("div", class_="banner")
    items = [li.get_text() for li in banner.find_all("li")]
    assert items == [
        "boom failed on photos: RuntimeError: kaboom <b>not bold</b> (traceback: errors/photos__boom.txt)",
        "skipped image photos/tile1: /photos/tile1.png: cannot decode image",
    ]


def test_extra_sections_and_custom_templates(run_dir, tmp_path):
    (tmp_path / "extra.html.j2").write_text("<p class='x'>{{ value }}</p>")
    out = render_report(
        run_dir,
        tmp_path / "r.html",
        extra_sections=[
            Section("Efficiency", html="<table class='eff'><tr><td>1.5 M</td></tr></table>"),
            Section("Ablation", template="extra.html.j2", context={"value": "<i>escaped</i>"}),
        ],
        template_dirs=[tmp_path],
    )
    soup = BeautifulSoup(out.read_text(), "html.parser")
    assert soup.find("section", id="efficiency").find("table", class_="eff").get_text() == "1.5 M"
    assert soup.find("section", id="ablation").find("p", class_="x").get_text() == "<i>escaped</i>"
    assert [a["href"] for a in soup.find("nav").find_all("a")][-2:] == ["#efficiency", "#ablation"]
    with pytest.raises(ValueError, match="section 'Bad': give exactly one of html= or template="):
        Section("Bad")


def test_report_cli(run_dir, tmp_path, capsys):
    from harness.cli.main import main

    out = tmp_path / "sub" / "page.html"
    assert main(["report", str(run_dir), "--output", str(out)]) == 0
    assert out.is_file() and f"report: {out}" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing")]) == 2  # an input error: nothing to render
    assert "run directory not found" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- exports
def _means(run_dir) -> dict[tuple[str, str], tuple[float, float, float]]:
    from harness.bench.layout import load_run

    summary = load_run(run_dir).summary
    return {(r.method, r.metric): (r.mean, r.ci_low, r.ci_high) for r in summary.itertuples()}


def test_exports_table1_in_the_paper_layout(run_dir, tmp_path):
    """table.tex / table.md: a row per method that has results, the means (2 decimals from 10 up, else 4), the best
    per column bold (psnr higher, mae lower), arrows, names escaped; the failed method has no row."""
    from reports.bench import write_exports
    from reports.exports import latex_escape, latex_problems, markdown_escape

    paths = write_exports(run_dir, folder=tmp_path / "ex")
    assert [p.name for p in paths] == ["table.tex", "table.md"]  # no efficiency.json in this run
    tex, md = (p.read_text(encoding="utf-8") for p in paths)
    assert latex_problems(tex) == []
    means = _means(run_dir)
    psnr = {m: means[(m, "psnr")][0] for m in ("nearest", EVIL)}
    mae = {m: means[(m, "mae")][0] for m in ("nearest", EVIL)}
    assert all(10 <= v < 100 for v in psnr.values()) and all(v < 1 for v in mae.values())

    def shown(values, method, fmt, best):
        text = format(values[method], fmt)
        return (f"\\textbf{{{text}}}", f"**{text}**") if text == format(best(values.values()), fmt) else (text, text)

    rows_tex, rows_md = [], []
    for method in ("nearest", EVIL):
        (p_tex, p_md), (m_tex, m_md) = shown(psnr, method, ".2f", max), shown(mae, method, ".4f", min)
        rows_tex.append(f"{latex_escape(method)} & {p_tex} & {m_tex} \\\\")
        rows_md.append(f"| {markdown_escape(method)} | {p_md} | {m_md} |")
    caption = "rep: mean per image (photos: 3 images). Best in bold; \u2191 higher is better, \u2193 lower is better."
    assert tex.splitlines() == [
        "\\begin{table}[t]", "\\centering", f"\\caption{{{latex_escape(caption)}}}", "\\label{tab:rep-table}",
        "\\begin{tabular}{lrr}", "\\toprule", "Method & psnr$\\uparrow$ & mae$\\downarrow$ \\\\", "\\midrule",
        *rows_tex, "\\bottomrule", "\\end{tabular}", "\\end{table}",
    ]  # fmt: skip
    assert "$\\uparrow$ higher is better" in tex  # the caption's arrows as LaTeX, not unicode
    assert md.splitlines() == [f"*{markdown_escape(caption)}*", "", "| Method | psnr \u2191 | mae \u2193 |",
                               "|:--|--:|--:|", *rows_md]  # fmt: skip


def test_exports_with_confidence_intervals(run_dir, tmp_path):
    from reports.bench import write_exports

    tex, md = (p.read_text(encoding="utf-8") for p in write_exports(run_dir, ci=True, folder=tmp_path))
    mean, low, high = _means(run_dir)[("nearest", "psnr")]
    half = format((high - low) / 2, ".2f")
    assert f"{{\\scriptsize$\\pm${half}}}" in tex.splitlines()[8] and "95% bootstrap CI" in md.splitlines()[0]
    assert f"{mean:.2f}" in md and f"\u00b1 {half}" in md


def test_exports_table2_from_efficiency():
    from reports.bench import efficiency_frame
    from reports.exports import to_markdown

    data = {"lr_size": [128, 128], "device": "cpu", "methods": {
        "AlignVAR": {"params": {"total": 1_056_500_000}, "inference_steps": 10, "time_source": "measured",
                     "latency": {"median": 0.4321, "iqr": 0.0123}, "peak_memory_bytes": 3 * 2**30, "device": "cpu"},
        "PASD": {"params": {"total": None}, "inference_steps": None, "time_source": "reported",
                 "latency": {"median": 5.94, "iqr": 0.5}, "peak_memory_bytes": None, "device": "reported"},
    }}  # fmt: skip
    from reports.bench import EFFICIENCY_EXPORT

    md = to_markdown(efficiency_frame(data), "", **EFFICIENCY_EXPORT)
    assert md.splitlines() == [
        "| Method | Params (M) \u2193 | Steps | Time (s) \u2193 | IQR (s) | Peak memory (MiB) \u2193 | Device |",
        "|:--|--:|--:|--:|--:|--:|:--|",
        "| AlignVAR | **1056.5** | 10 | **0.432** | 0.012 | **3072** | cpu |",
        "| PASD\u2020 | \u2013 | \u2013 | 5.940 | 0.500 | \u2013 | reported |",  # reported, not measured: dagger
    ]


def test_report_and_exports_are_the_run_folders_own_files(run_dir, tmp_path, capsys):
    """``run.py report`` writes both under the run's lock, records them (a new bench replaces them), prints
    the paths on stdout, and refuses an exports folder holding files it did not write."""
    import shutil

    from harness.cli.main import main
    from harness.core import runfolder

    copy = tmp_path / "rep"
    shutil.copytree(run_dir, copy)
    assert main(["report", str(copy)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"report: {copy / 'report.html'}", f"exports: {copy / 'exports'}  (table.tex, table.md)"]
    owned = runfolder.read_manifest(copy)
    assert {k: owned[k] for k in ("report.html", "exports/table.tex", "exports/table.md")} == dict.fromkeys(
        ("report.html", "exports/table.tex", "exports/table.md"), "report"
    )
    (copy / "exports" / "mine.tex").write_text("my own table")
    assert main(["report", str(copy)]) == 3
    assert "exports/mine.tex" in capsys.readouterr().err and (copy / "exports" / "mine.tex").is_file()


# ----------------------------------------------------------------------------------------------- crops
def test_crop_goes_where_methods_differ():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(64, 80, 3), dtype=np.uint8)
    other = base.copy()
    other[30:40, 50:60] = 255 - other[30:40, 50:60]  # the only disagreement
    box = render.choose_crop([base, other], base, 10)
    assert (box.y, box.x, box.size) == (30, 50, 10)


def test_crop_falls_back_to_reference_gradient():
    flat = np.full((48, 48, 3), 128, dtype=np.uint8)
    hr = flat.copy()
    hr[20:28, 8:16] = 255  # one bright square: the only gradients are on its border
    box = render.choose_crop([flat, flat.copy()], hr, 10)  # identical outputs: no disagreement
    assert 19 - 10 < box.y <= 20 and 7 - 10 < box.x <= 8  # the window contains the square's corner region
    assert render.choose_crop([flat], hr, 100).size == 48  # clamped to the image


def test_thumbnail_box_and_zoom():
    img = np.zeros((100, 200, 3), dtype=np.uint8)
    box = render.Box(y=10, x=20, size=40)
    thumb = np.asarray(render.thumbnail(img, 100, box))
    assert thumb.shape == (50, 100, 3)
    assert tuple(thumb[5, 15]) == render.BOX_COLOUR and tuple(thumb[15, 15]) == (0, 0, 0)
    zoom = render.zoomed_crop(img, box, display=160)
    assert zoom.size == (160, 160)
    lr = np.arange(4 * 3, dtype=np.uint8).reshape(2, 2, 3)
    assert np.array_equal(render.nearest_upscale(lr, 4, 4)[:2, :2], np.repeat(lr[:1, :1], 2, 0).repeat(2, 1))


def test_format_value():
    assert [format_value(v) for v in (28.41234, 0.81234567, 123.456, 0.00123, 0.0, float("nan"), None)] == [
        "28.41", "0.8123", "123.5", "1.23e-03", "0", "\u2013", "\u2013",
    ]  # fmt: skip
    assert math.isnan(float("nan"))


# ----------------------------------------------------------------------------------------------- demo
def test_demo_drops_unavailable_optional_metrics(tmp_path, monkeypatch, capsys):
    from harness.cli import demo
    from harness.core.logconfig import configure

    configure(0)  # as run.py demo: the note reaches stderr as "note: ..."
    cfg_path = tmp_path / "demo.yaml"
    data = bench_config(tmp_path)
    data["metrics"] = [*data["metrics"], {"type": "_t_report_unavailable", "name": "niqe_like"}]
    cfg_path.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(demo, "OPTIONAL_METRICS", ("_t_report_unavailable",))
    notes = []
    cfg = demo.load_demo_config(cfg_path, ["bench.max_images=1"], notes)
    assert [m.name for m in cfg.metrics] == ["psnr", "mae"] and cfg.bench.max_images == 1
    assert notes == [
        "metric 'niqe_like' left out (its weights are not available): niqe_modelparameters.mat not found in /nowhere"
    ]
    assert capsys.readouterr() == ("", f"note: {notes[0]}\n")  # a diagnostic: stderr, not stdout


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys, monkeypatch):
    """``run.py demo --config demo`` (the interpolation-only bench) on two bundled images with the real components
    (skipped until they are registered). The default demo (the ablation sweep) is tests/test_tiny_controls.py's."""
    needed = {"datasets": ["bundled"], "methods": ["nearest", "bilinear", "bicubic", "lanczos"],
              "metrics": ["psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"]}  # fmt: skip
    missing = [n for kind, names in needed.items() for n in names if n not in registry.list_entries(kind)]
    if missing:
        pytest.skip(f"not registered yet: {', '.join(missing)}")
    from harness.cli.main import main

    monkeypatch.setenv("ALIGNVAR_CACHE", str(tmp_path / "cache"))  # bundled tiles: no writes to ~/.cache
    code = main(["demo", "--config", "demo", "datasets.0.count=2", "--output-root", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    report = tmp_path / "demo" / "report.html"
    assert f"report: {report}" in out and report.is_file()
    soup = BeautifulSoup(report.read_text(), "html.parser")
    rows = _quality_table(soup).find("tbody").find_all("tr")
    assert [r.find("td").get_text() for r in rows] == ["nearest", "bilinear", "bicubic", "lanczos"]


def test_per_image_distributions_figure_shows_every_image(page, run_dir):
    """Per dataset, a seaborn box + strip per method and metric; its dots are the per-image table's values."""
    from harness.bench.layout import load_run
    from reports.bench import per_image_figure

    _, soup = page
    img = soup.find("section", id="per-image-results").find("img", class_="distribution")
    raw = base64.b64decode(img["src"].split(",", 1)[1])
    assert Image.open(io.BytesIO(raw)).format == "PNG"
    run = load_run(run_dir)
    fig = per_image_figure(run, "photos")
    per_image = pd.read_csv(run_dir / "metrics" / "photos.csv")
    for ax, metric in zip(fig.axes, ["psnr", "mae"]):
        assert ax.get_title().startswith(metric)
        dots = sorted(v for c in ax.collections for v in c.get_offsets()[:, 1].tolist())
        assert dots == pytest.approx(sorted(per_image[metric].dropna().tolist()))
        assert [t.get_text() for t in ax.get_xticklabels()] == list(dict.fromkeys(per_image["method"]))
