"""Paper exports (LaTeX/Markdown tables, figures at paper widths), figures and the sweep report."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from harness.analysis.accumulation import AccumulationResult, results_to_frame, write_accumulation_csv
from harness.analysis.attention.geometry import token_layout
from harness.analysis.attention.stats import attention_distance_by_scale
from harness.analysis.attention.tables import write_attention_csv
from reports import figures
from reports.exports import latex_escape, latex_is_balanced, latex_problems, save_figure, to_latex, to_markdown
from reports.sweep.cells import load_sweep_cells
from reports.sweep.keys import numeric_keys
from reports.sweep.report import render_sweep_report
from reports.sweep.tables import ablation_frame

SPECIAL = "a&b_c%d$e#f{g}h~i^j\\k"


# ----------------------------------------------------------------------------------------------------- tables
def small_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "method": ["VARSR", "AlignVAR_{ours}"],
            "PSNR": [25.85, 26.11],
            "PSNR lo": [25.70, 25.95],
            "PSNR hi": [26.00, 26.27],
            "LPIPS": [0.3012, 0.2955],
        }
    )


def test_latex_exact_output():
    tex = to_latex(
        small_table(),
        "Ablation of HCC (50% of images)",
        "tab:hcc",
        {"PSNR": "higher", "LPIPS": "lower"},
        ci={"PSNR": ("PSNR lo", "PSNR hi")},
        precision={"PSNR": 2, "LPIPS": 4},
    )
    assert tex == (
        "\\begin{table}[t]\n"
        "\\centering\n"
        "\\caption{Ablation of HCC (50\\% of images)}\n"
        "\\label{tab:hcc}\n"
        "\\begin{tabular}{lrr}\n"
        "\\toprule\n"
        "method & PSNR$\\uparrow$ & LPIPS$\\downarrow$ \\\\\n"
        "\\midrule\n"
        "VARSR & 25.85 {\\scriptsize$\\pm$0.15} & 0.3012 \\\\\n"
        "AlignVAR\\_\\{ours\\} & \\textbf{26.11} {\\scriptsize$\\pm$0.16} & \\textbf{0.2955} \\\\\n"
        "\\bottomrule\n"
        "\\end{tabular}\n"
        "\\end{table}\n"
    )
    assert latex_is_balanced(tex)


def test_latex_escapes_every_special_character_and_stays_balanced():
    assert latex_escape(SPECIAL) == (r"a\&b\_c\%d\$e\#f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k")
    df = pd.DataFrame({SPECIAL: [SPECIAL, "plain"], "x_y%": [1.0, 2.0]})
    tex = to_latex(df, caption=SPECIAL, bold_best={"x_y%": "lower"})
    assert latex_problems(tex) == []
    assert r"\textbf{1.000}" in tex and r"x\_y\%$\downarrow$" in tex


def test_ties_are_all_bold_and_missing_values_dashed():
    df = pd.DataFrame({"m": ["a", "b", "c"], "s": [0.30004, 0.29996, np.nan]})
    tex = to_latex(df, bold_best={"s": "higher"}, precision=3)
    assert tex.count(r"\textbf{0.300}") == 2  # equal as displayed -> both bold
    assert "c & -- \\\\" in tex
    md = to_markdown(df, bold_best={"s": "higher"}, precision=3)
    assert md.count("**0.300**") == 2 and "| c | – |" in md


def test_latex_checker_finds_problems():
    good = to_latex(small_table()[["method", "LPIPS"]])
    assert latex_is_balanced(good)
    assert any("unclosed" in p for p in latex_problems(good.replace(r"\centering", r"\centering{")))
    assert any("does not match" in p for p in latex_problems(good.replace(r"\end{tabular}", r"\end{tabularx}")))
    assert any("unescaped %" in p for p in latex_problems(good.replace("VARSR", "VAR 50%")))
    assert any("unescaped _" in p for p in latex_problems(good.replace("VARSR", "VAR_SR")))
    assert any("3 cells for 2 columns" in p for p in latex_problems(good.replace("VARSR", "VAR & SR")))
    assert any("unbalanced '$'" in p for p in latex_problems(good.replace("VARSR", "$x")))
    assert latex_is_balanced(good.replace("VARSR", r"VAR\_SR $x_1^2$"))


def test_markdown_exact_output():
    md = to_markdown(
        small_table(),
        "HCC | ablation",
        {"PSNR": "higher", "LPIPS": "lower"},
        ci={"PSNR": ("PSNR lo", "PSNR hi")},
        precision={"PSNR": 2, "LPIPS": 4},
    )
    assert md == (
        "*HCC \\| ablation*\n"
        "\n"
        "| method | PSNR ↑ | LPIPS ↓ |\n"
        "|:--|--:|--:|\n"
        "| VARSR | 25.85 ± 0.15 | 0.3012 |\n"
        "| AlignVAR\\_{ours} | **26.11** ± 0.16 | **0.2955** |\n"
    )


def test_format_errors_name_the_column():
    with pytest.raises(KeyError, match=r"bold_best: no column 'SSIM'"):
        to_latex(small_table(), bold_best={"SSIM": "higher"})
    with pytest.raises(ValueError, match=r"bold_best\['PSNR'\]: expected 'higher' or 'lower', got 'up'"):
        to_latex(small_table(), bold_best={"PSNR": "up"})
    with pytest.raises(KeyError, match=r"ci\['PSNR'\]: no column\(s\) \['PSNR low'\]"):
        to_markdown(small_table(), ci={"PSNR": ("PSNR low", "PSNR hi")})


# ---------------------------------------------------------------------------------------------------- figures
def test_save_figure_at_paper_widths(tmp_path):
    fig = figures.lambda_curve(
        pd.DataFrame(
            {
                "value": [0, 0.5, 1.0],
                "metric": "psnr_y",
                "mean": [26, 26.1, 26.2],
                "ci_low": [25.9, 26.0, 26.1],
                "ci_high": [26.1, 26.2, 26.3],
            }
        )
    )
    paths = save_figure(fig, tmp_path / "curve", "column", height=2.0)
    assert [p.name for p in paths] == ["curve.pdf", "curve.svg", "curve.png"]
    with Image.open(paths[2]) as png:
        assert png.size == (975, 600)  # 3.25 in x 2 in at 300 dpi
    pdf = paths[0].read_bytes()
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType embedded, no Type 3 fonts
    assert b"CreationDate" not in pdf
    assert "<text" not in paths[1].read_text()  # text as outlines
    (text_png,) = save_figure(fig, tmp_path / "wide", "text", formats=("png",), dpi=160)
    with Image.open(text_png) as png:
        assert png.size[0] == 1100  # 6.875 in at 160 dpi
    with pytest.raises(ValueError, match=r"width must be one of \['column', 'text'\] or inches, got 'page'"):
        save_figure(fig, tmp_path / "x", "page")


def test_sca_mask_panels_and_image_grid():
    maps = [torch.rand(1, 1, p, p) for p in (2, 4, 8)]
    gates = [torch.sigmoid(torch.randn(p, p)) for p in (2, 4, 8)]
    fig = figures.sca_mask_panels(maps, gates, torch.rand(3, 32, 32))
    assert len(fig.axes) == 2 * 3 + 1  # structure + gate per scale, one colour bar
    assert [ax.get_title() for ax in fig.axes[:3]] == ["2x2", "4x4", "8x8"]  # first row: structure maps
    with pytest.raises(ValueError, match="3 structure maps but 2 gates"):
        figures.sca_mask_panels(maps, gates[:2])
    with pytest.raises(ValueError, match=r"scale 1: structure map \(4, 4\) and gate \(2, 2\) differ"):
        figures.sca_mask_panels(maps[:2], [gates[0], gates[0]])
    heat = figures.heatmap_panels({"2x2": torch.eye(2), "4x4": np.ones((4, 4))}, title="t")
    assert [ax.get_title() for ax in heat.axes[:2]] == ["2x2", "4x4"]
    assert np.array_equal(heat.axes[0].images[0].get_array(), np.eye(2))
    with pytest.raises(ValueError, match=r"map 'x' must be 2-D, got shape \(3,\)"):
        figures.heatmap_panels({"x": np.zeros(3)})
    hr = torch.rand(3, 64, 64)
    lr = torch.rand(3, 16, 16)
    grid = figures.image_grid({"LR": lr, "SR": hr}, box=(8, 16, 32))
    sr_crop = np.asarray(grid.axes[3].images[0].get_array())
    assert np.allclose(sr_crop, hr.permute(1, 2, 0).numpy()[8:40, 16:48])
    assert np.asarray(grid.axes[2].images[0].get_array()).shape == (8, 8, 3)  # LR crop scaled by 1/4


# ----------------------------------------------------------------------------------------------- sweep report
def make_sweep(root: Path, analysis: bool = True) -> Path:
    """A finished-looking sweep: lambda in {0, 0.5, 1} with the Laplacian mask, one random-mask cell, one
    failed cell; summary.csv per cell; attention/accumulation analysis CSVs for the finished cells."""
    sweep = root / "hcc_sweep"
    layout = token_layout([1, 2, 3, 4], prefix_hw=4)
    scales = ["1x1", "2x2", "3x3", "4x4"]
    specs = [
        (0.0, "laplacian", 26.00, 0.300),
        (0.5, "laplacian", 26.10, 0.290),
        (1.0, "laplacian", 26.20, 0.295),
        (1.0, "rand_50%#", 25.90, 0.310),
        (2.0, "laplacian", None, None),
    ]
    for i, (lam, mask, psnr, lpips) in enumerate(specs):
        name = f"hcc.lambda={lam},sca.mask_input={mask}"
        cell = sweep / "cells" / f"{re.sub(r'[^A-Za-z0-9._=,+-]', '_', name)}-{i:08x}"
        cell.mkdir(parents=True)
        state = {
            "status": "done" if psnr else "failed",
            "name": name,
            "index": i,
            "overrides": {"model.hcc.lambda": lam, "model.sca.mask_input": mask},
            # cell 1 keeps its bench run in a subfolder named by result.bench.run_dir (the engine's format)
            "result": {"bench": {"run_dir": str(cell / "bench")}} if i == 1 else {},
            "error": None if psnr else "RuntimeError: out of memory <b>bold</b>",
        }
        (cell / "state.json").write_text(json.dumps(state))
        if psnr is None:
            (cell / "log.txt").write_text("Traceback ...")
            continue
        rows = [
            {
                "dataset": "drealsr",
                "method": "alignvar",
                "metric": m,
                "mean": v,
                "std": 0.5,
                "ci_low": v - 0.05 * v / 26,
                "ci_high": v + 0.05 * v / 26,
                "n": 20,
                "lower_better": low,
            }
            for m, v, low in (("psnr_y", psnr, False), ("lpips", lpips, True))
        ]
        (cell / "bench").mkdir()
        pd.DataFrame(rows).to_csv(cell / ("bench" if i == 1 else ".") / "summary.csv", index=False)
        if analysis:
            probs = torch.softmax(
                torch.randn(2, 2, len(layout), len(layout), generator=torch.Generator().manual_seed(i)) * (1 + lam),
                -1,
            )
            table = attention_distance_by_scale(
                probs,
                layout.levels,
                layout.coords,
                layout.coords,
                k_levels=layout.levels,
                radius=0.25,
                labels={lv: layout.label(lv) for lv in layout.grids},
            )
            write_attention_csv(table, cell / "analysis" / "attention.csv")
            errs = torch.tensor([0.1 * (k + 1) / (1 + lam) for k in range(4)])
            write_accumulation_csv(
                results_to_frame(
                    [
                        AccumulationResult(errs / 2, "teacher_forced", scales=scales),
                        AccumulationResult(errs, "free_running", scales=scales),
                        AccumulationResult(
                            torch.tensor([0, 0.2, 0.3, 0.4]), "perturbation", scales=scales, injected_scale=1
                        ),
                    ]
                ),
                cell / "analysis" / "accumulation.csv",
            )
    return sweep


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory):
    sweep = make_sweep(tmp_path_factory.mktemp("sweep"))
    return sweep, render_sweep_report(sweep)


def test_sweep_tables_from_cells(tmp_path):
    cells = load_sweep_cells(make_sweep(tmp_path, analysis=False))
    assert [c.status for c in cells] == ["done"] * 4 + ["failed"]
    assert numeric_keys(cells) == ["model.hcc.lambda"]
    table, bold_best, ci = ablation_frame(cells)
    assert list(table.columns) == [
        "hcc.lambda",
        "sca.mask_input",
        "psnr_y",
        "psnr_y lo",
        "psnr_y hi",
        "lpips",
        "lpips lo",
        "lpips hi",
    ]
    assert bold_best == {"psnr_y": "higher", "lpips": "lower"}
    assert ci == {"psnr_y": ("psnr_y lo", "psnr_y hi"), "lpips": ("lpips lo", "lpips hi")}
    assert table["hcc.lambda"].tolist() == ["0", "0.5", "1", "1"]
    with pytest.raises(FileNotFoundError, match="is .* a sweep directory"):
        load_sweep_cells(tmp_path / "nowhere")


def test_sweep_report_page(sweep_report):
    sweep, page = sweep_report
    assert page == sweep / "report.html"
    html = page.read_text()
    assert "<b>bold</b>" not in html and "RuntimeError: out of memory &lt;b&gt;bold&lt;/b&gt;" in html
    assert "rand_50%#" in html
    # the best cells are bold: PSNR 26.20 (lambda=1, laplacian), LPIPS 0.2900 (lambda=0.5)
    assert re.search(r'<td class="best">26\.20 <small>', html)
    assert re.search(r'<td class="best">0\.2900 <small>', html)
    assert not re.search(r'<td class="best">26\.10', html)
    for title in (
        "Ablation",
        "Curve over model.hcc.lambda",
        "Attention distance",
        "Error accumulation",
        "Failed and unfinished cells",
        "Exports",
    ):
        assert f">{title}</h2>" in html
    srcs = re.findall(r'<img[^>]*src="([^"]+)"', html)
    assert len(srcs) == 3
    for src in srcs:  # self-contained: every image is an embedded PNG that decodes
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as img:
            img.load()
            assert img.size[0] >= 900
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_sweep_exports(sweep_report):
    sweep, _ = sweep_report
    out = sweep / "exports"
    names = sorted(p.name for p in out.iterdir())
    for stem in ("ablation", "attention_distance", "accumulation"):
        assert f"{stem}.tex" in names and f"{stem}.md" in names
    for stem in ("curve_model_hcc_lambda", "attention_distance", "accumulation"):
        assert {f"{stem}.pdf", f"{stem}.svg", f"{stem}.png"} <= set(names)
    for tex in out.glob("*.tex"):
        assert latex_problems(tex.read_text()) == [], tex.name
    ablation = (out / "ablation.tex").read_text()
    assert r"rand\_50\%\#" in ablation and r"\textbf{26.20}" in ablation and r"\textbf{0.2900}" in ablation
    assert "| 0.5 | laplacian | 26.10 ± 0.05 | **0.2900** ± 0.0006 |" in (out / "ablation.md").read_text()


def toy_cell(cell, cell_dir: Path) -> dict:
    """A sweep cell function for the engine test: writes a bench-like summary.csv; seed 2 fails."""
    seed = cell.overrides["seed"]
    if seed == 2:
        raise RuntimeError("loss diverged <nan>")
    mean = 26.0 + 0.1 * seed + (0.05 if cell.overrides["bench.on_corrupt"] == "skip" else 0.0)
    row = {
        "dataset": "bundled",
        "method": "bicubic",
        "metric": "psnr_y",
        "mean": mean,
        "std": 1.0,
        "ci_low": mean - 0.2,
        "ci_high": mean + 0.2,
        "n": 6,
        "lower_better": False,
    }
    pd.DataFrame([row]).to_csv(cell_dir / "summary.csv", index=False)
    return {"bench": {"run_dir": str(cell_dir)}}


def test_sweep_report_from_the_sweep_engine(tmp_path, capsys):
    runner = pytest.importorskip("harness.sweep.runner")
    from harness.config.experiment import load_experiment

    exp = tmp_path / "sweep.yaml"
    exp.write_text(
        f"name: engine\noutput_root: {tmp_path / 'runs'}\ndatasets: [bundled]\nmethods: [bicubic]\n"
        "sweep:\n  grid:\n    seed: [0, 1, 2]\n    bench.on_corrupt: [fail, skip]\n  stages: [bench]\n"
    )
    result = runner.run_sweep(load_experiment(exp), cell_fn=toy_cell, isolation="inline", progress=False)
    capsys.readouterr()
    cells = load_sweep_cells(result.sweep_dir)
    assert [c.status for c in cells] == ["done"] * 4 + ["failed"] * 2
    assert cells[0].overrides == {"seed": 0, "bench.on_corrupt": "fail"}
    table, bold_best, _ = ablation_frame(cells)
    # seed is the replicate axis: one row per configuration, the mean over its finished seeds (2: seed 2 failed)
    assert table[["bench.on_corrupt", "seeds"]].values.tolist() == [["fail", "0, 1"], ["skip", "0, 1"]]
    assert table["psnr_y"].tolist() == pytest.approx([26.05, 26.1])
    assert table["psnr_y per seed"].tolist() == ["26.00 / 26.10", "26.05 / 26.15"]
    html = render_sweep_report(result.sweep_dir).read_text()
    assert re.search(r'<td class="best">26\.10 <small>', html)
    assert "RuntimeError: loss diverged &lt;nan&gt;" in html
    assert ">Curve over seed</h2>" not in html  # replicates, not a swept setting
