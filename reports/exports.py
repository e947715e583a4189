"""Paper-ready exports: LaTeX (booktabs) and Markdown tables, and figures as PDF/SVG/PNG at CVPR widths.

Tables go through one formatting step (``format_table``: numbers at a fixed precision, optional mean +- CI,
the best value per column in bold, arrows for the better direction) and are then rendered as LaTeX (laid out by
pandas' ``Styler.to_latex``: booktabs rules, caption, label, placement), Markdown or HTML (the HTML reports
reuse ``format_table``). Best values are compared *as displayed*, so two entries
that print the same are both bold. Names are escaped for the target format; ``latex_problems`` checks
generated LaTeX (balanced braces, matched environments, one ``&`` per column, no unescaped special characters
in cells).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

Direction = Literal["higher", "lower"]
PAPER_WIDTHS_IN = {"column": 3.25, "text": 6.875}  # CVPR single column / full text width, inches
FIGURE_RC = {
    "pdf.fonttype": 42,  # TrueType fonts embedded (not Type 3): accepted by paper submission checkers
    "ps.fonttype": 42,
    "svg.fonttype": "path",  # text as outlines: the SVG renders the same everywhere
    "savefig.bbox": "standard",
}

_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",  # OT1 fonts would print these three as other glyphs
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    # symbols the captions and names use, which LaTeX's default (utf8, T1) input does not know or types badly
    "\u00b1": r"$\pm$",
    "\u00d7": r"$\times$",
    "\u2192": r"$\rightarrow$",
    "\u2191": r"$\uparrow$",
    "\u2193": r"$\downarrow$",
    "\u2020": r"\dag{}",
    "\u2013": "--",
}


def latex_escape(text: Any) -> str:
    """Escape LaTeX's special characters & % $ # _ { } ~ ^ \\ < > | in plain text, and write the symbols
    \u00b1 \u00d7 \u2192 \u2191 \u2193 \u2020 \u2013 as LaTeX."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def markdown_escape(text: Any) -> str:
    """Escape characters that would break a Markdown pipe table or turn into emphasis/code."""
    return re.sub(r"([\\|*_`\[\]<>])", r"\\\1", str(text)).replace("\n", " ")


# ------------------------------------------------------------------------------------------------- formatting
@dataclass(frozen=True)
class Cell:
    """One formatted table cell: the value text, an optional +- part, and whether it is the column's best."""

    text: str
    pm: str | None = None
    bold: bool = False
    numeric: bool = False


@dataclass(frozen=True)
class FormattedTable:
    columns: list[str]
    arrows: list[Direction | None]
    rows: list[list[Cell]]
    numeric: list[bool]


def _is_number(v: Any) -> bool:
    """A real, finite-or-infinite, non-NaN, non-bool number (numpy scalars included)."""
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and not math.isnan(v)


def format_table(
    df: pd.DataFrame,
    *,
    bold_best: Mapping[str, Direction] | None = None,
    arrows: bool | Mapping[str, Direction] = True,
    ci: Mapping[str, tuple[str, str]] | None = None,
    precision: int | Mapping[str, int] = 3,
) -> FormattedTable:
    """Format ``df`` (index ignored; reset it first to show it).

    ``bold_best``: column -> 'higher' | 'lower': the best value(s) in bold. ``arrows``: True = arrows from
    ``bold_best``; or an explicit column -> direction mapping. ``ci``: column -> (low column, high column):
    shown as "mean +- half-width" ((high - low) / 2); the low/high columns themselves are not shown.
    ``precision``: decimals.
    """
    bold_best = dict(bold_best or {})
    ci = dict(ci or {})
    for col, direction in bold_best.items():
        if col not in df.columns:
            raise KeyError(f"bold_best: no column {col!r}; columns: {list(df.columns)}")
        if direction not in ("higher", "lower"):
            raise ValueError(f"bold_best[{col!r}]: expected 'higher' or 'lower', got {direction!r}")
    for col, pair in ci.items():
        missing = [c for c in (col, *pair) if c not in df.columns]
        if missing:
            raise KeyError(f"ci[{col!r}]: no column(s) {missing}; columns: {list(df.columns)}")
    hidden = {c for pair in ci.values() for c in pair}
    columns = [c for c in df.columns if c not in hidden]
    arrow_map = bold_best if arrows is True else ({} if arrows is False else dict(arrows))

    def prec(col: str) -> int:
        return precision if isinstance(precision, int) else int(precision.get(col, 3))

    numeric = [bool(len(df)) and all(_is_number(v) or pd.isna(v) for v in df[c]) for c in columns]
    best: dict[str, float] = {}  # per column, the best value as displayed
    for col, direction in bold_best.items():
        shown = [float(f"{v:.{prec(col)}f}") for v in df[col] if _is_number(v)]
        if shown:
            best[col] = max(shown) if direction == "higher" else min(shown)
    rows = []
    for _, rec in df.iterrows():
        row = []
        for col, is_num in zip(columns, numeric):
            v = rec[col]
            if _is_number(v):
                text = f"{v:.{prec(col)}f}"
                pm = None
                if col in ci and _is_number(rec[ci[col][0]]) and _is_number(rec[ci[col][1]]):
                    pm = f"{(rec[ci[col][1]] - rec[ci[col][0]]) / 2:.{prec(col)}f}"
                row.append(Cell(text, pm, col in best and float(text) == best[col], True))
            elif v is None or v is pd.NA or (isinstance(v, numbers.Real) and math.isnan(v)):
                row.append(Cell("", numeric=is_num))
            else:
                row.append(Cell(str(v)))
        rows.append(row)
    return FormattedTable([str(c) for c in columns], [arrow_map.get(c) for c in columns], rows, numeric)


# ------------------------------------------------------------------------------------------------------ LaTeX
def to_latex(
    df: pd.DataFrame,
    caption: str = "",
    label: str = "",
    bold_best: Mapping[str, Direction] | None = None,
    arrows: bool | Mapping[str, Direction] = True,
    *,
    ci: Mapping[str, tuple[str, str]] | None = None,
    precision: int | Mapping[str, int] = 3,
    escape_caption: bool = True,
    placement: str = "t",
) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``); numbers right-aligned."""
    table = format_table(df, bold_best=bold_best, arrows=arrows, ci=ci, precision=precision)
    arrow_tex = {"higher": r"$\uparrow$", "lower": r"$\downarrow$", None: ""}
    header = [latex_escape(c) + arrow_tex[a] for c, a in zip(table.columns, table.arrows)]

    def cell(c: Cell) -> str:
        if not c.text:
            return "--"
        text = rf"\textbf{{{c.text}}}" if c.bold else (c.text if c.numeric else latex_escape(c.text))
        return text + (rf" {{\scriptsize$\pm${c.pm}}}" if c.pm is not None else "")

    body = pd.DataFrame([[cell(c) for c in row] for row in table.rows], columns=range(len(header)))
    labels = [h.replace("{", "{{").replace("}", "}}") for h in header]  # relabel_index formats them with str.format
    styler = body.style.hide(axis="index").relabel_index(labels, axis="columns")
    return styler.to_latex(
        column_format="".join("r" if n else "l" for n in table.numeric),
        hrules=True,  # booktabs \\toprule \\midrule \\bottomrule
        position=placement,
        position_float="centering",
        caption=(latex_escape(caption) if escape_caption else caption) or None,
        label=label or None,
    )


_ENV_RE = re.compile(r"\\(begin|end)\{([^}]*)\}")
_CONTROL_RE = re.compile(r"\\(?:[A-Za-z]+\*?|[^A-Za-z])")
_RULE_RE = re.compile(r"^\s*\\(toprule|midrule|bottomrule|hline|cmidrule(\([lr]+\))?\{[^}]*\})\s*")


def _column_count(spec: str) -> int:
    spec = re.sub(r"[@!>]\{[^}]*\}|[pmb]\{[^}]*\}", "l", spec)
    return len(re.findall(r"[lcrXS]", spec))


def latex_problems(text: str) -> list[str]:
    """Problems in generated LaTeX: unbalanced braces, unmatched \\begin/\\end, and in tabular rows a wrong
    number of ``&``, unbalanced ``$`` or unescaped ``# % _ ^ ~`` outside math. Empty list = fine."""
    problems: list[str] = []
    stripped = _CONTROL_RE.sub(lambda m: m.group(0) if m.group(0)[1:].isalpha() else "  ", text)
    depth = 0
    for i, ch in enumerate(stripped):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                problems.append(f"unmatched '}}' at character {i}")
                depth = 0
    if depth:
        problems.append(f"{depth} unclosed '{{'")
    stack: list[str] = []
    for m in _ENV_RE.finditer(text):
        kind, env = m.groups()
        if kind == "begin":
            stack.append(env)
        elif not stack or stack[-1] != env:
            opened = "\\begin{" + stack[-1] + "}" if stack else "nothing"
            problems.append(f"\\end{{{env}}} does not match {opened}")
        else:
            stack.pop()
    problems += [f"\\begin{{{env}}} is never closed" for env in stack]
    for m in re.finditer(r"\\begin\{tabular\}\{((?:[^{}]|\{[^{}]*\})*)\}(.*?)\\end\{tabular\}", text, re.S):
        n_cols = _column_count(m.group(1))
        body = _RULE_RE.sub("", m.group(2))
        for r, row in enumerate(re.split(r"\\\\", body)):
            row = "\n".join(_RULE_RE.sub("", line) for line in row.splitlines()).strip()
            if not row:
                continue
            plain = _CONTROL_RE.sub(lambda c: "" if c.group(0)[1:].isalpha() else "  ", row)
            n_amp = plain.count("&")
            if n_amp != n_cols - 1:
                problems.append(f"tabular row {r}: {n_amp + 1} cells for {n_cols} columns: {row!r}")
            if plain.count("$") % 2:
                problems.append(f"tabular row {r}: unbalanced '$': {row!r}")
            outside_math = "".join(plain.split("$")[::2])
            bad = sorted(set(re.findall(r"[#%_^~]", outside_math)))
            if bad:
                problems.append(f"tabular row {r}: unescaped {' '.join(bad)} in {row!r}")
    return problems


def latex_is_balanced(text: str) -> bool:
    """True when ``latex_problems(text)`` finds nothing."""
    return not latex_problems(text)


# --------------------------------------------------------------------------------------------------- Markdown
def to_markdown(
    df: pd.DataFrame,
    caption: str = "",
    bold_best: Mapping[str, Direction] | None = None,
    arrows: bool | Mapping[str, Direction] = True,
    *,
    ci: Mapping[str, tuple[str, str]] | None = None,
    precision: int | Mapping[str, int] = 3,
) -> str:
    """A GitHub pipe table (numbers right-aligned), with the caption in italics above it."""
    table = format_table(df, bold_best=bold_best, arrows=arrows, ci=ci, precision=precision)
    arrow_md = {"higher": " ↑", "lower": " ↓", None: ""}

    def cell(c: Cell) -> str:
        if not c.text:
            return "–"
        text = f"**{c.text}**" if c.bold else (c.text if c.numeric else markdown_escape(c.text))
        return text + (f" ± {c.pm}" if c.pm is not None else "")

    lines = [f"*{markdown_escape(caption)}*", ""] if caption else []
    lines.append(
        "| " + " | ".join(markdown_escape(c) + arrow_md[a] for c, a in zip(table.columns, table.arrows)) + " |"
    )
    lines.append("|" + "|".join("--:" if n else ":--" for n in table.numeric) + "|")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- figures
def figure_width(width: str | float) -> float:
    """Inches for 'column' (3.25), 'text' (6.875) or an explicit number."""
    if isinstance(width, str):
        if width not in PAPER_WIDTHS_IN:
            raise ValueError(f"width must be one of {sorted(PAPER_WIDTHS_IN)} or inches, got {width!r}")
        return PAPER_WIDTHS_IN[width]
    return float(width)


def save_figure(
    fig: Any,
    stem: str | Path,
    width: str | float = "column",
    *,
    height: float | None = None,
    formats: Sequence[str] = ("pdf", "svg", "png"),
    dpi: int = 300,
) -> list[Path]:
    """Write ``fig`` as ``stem.pdf``, ``stem.svg`` and ``stem.png`` (atomically) at a paper width.

    The figure is resized to ``width`` inches (keeping its aspect ratio unless ``height`` is given), so font
    sizes in points are the sizes on the page. PDF fonts are embedded as TrueType (``pdf.fonttype`` 42) and
    the PDF carries no creation date (byte-stable output).
    """
    import matplotlib

    from harness.core.atomic import atomic_path

    w = figure_width(width)
    old_w, old_h = fig.get_size_inches()
    fig.set_size_inches(w, height if height is not None else w * old_h / old_w)
    stem = Path(stem)
    paths = []
    with matplotlib.rc_context(FIGURE_RC):
        for fmt in formats:
            if fmt not in ("pdf", "svg", "png"):
                raise ValueError(f"format must be pdf, svg or png, got {fmt!r}")
            path = stem.with_name(f"{stem.name}.{fmt}")
            metadata = {"CreationDate": None} if fmt == "pdf" else ({"Date": None} if fmt == "svg" else None)
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=dpi, metadata=metadata)
            paths.append(path)
    return paths
