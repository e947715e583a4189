"""What every HTML page of the reports shares: the one jinja environment, ``Section``, ``format_value``.

Templates live in ``reports/templates``; autoescape is on and undefined names are errors, so a page never
shows raw user text or a silently empty field. A page is a list of ``Section`` objects (trusted ``html`` or a
template with its context) rendered into a page template.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass
class Section:
    """One titled part of the page: either trusted ``html`` or a ``template`` rendered with ``context``.

    ``html`` is inserted as is (it must already be escaped / safe); template output is autoescaped.
    """

    title: str
    html: str | None = None
    template: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    anchor: str | None = None

    def __post_init__(self) -> None:
        if (self.html is None) == (self.template is None):
            raise ValueError(f"section {self.title!r}: give exactly one of html= or template=")
        if self.anchor is None:
            self.anchor = re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "section"

    def render(self, env: jinja2.Environment) -> Markup:
        if self.html is not None:
            return Markup(self.html)
        return Markup(env.get_template(self.template).render(**self.context))


def format_value(value: Any) -> str:
    """Compact, column-friendly numbers: 28.41, 0.8123, 1.23e-03; NaN/None -> an en dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "\u2013"
    v = float(value)
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 10:
        return f"{v:.2f}"
    if a >= 0.01:
        return f"{v:.4f}"
    return f"{v:.2e}"


def template_env(template_dirs: Sequence[str | Path] = ()) -> jinja2.Environment:
    loader = jinja2.FileSystemLoader([*map(str, template_dirs), str(TEMPLATES)])
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = format_value
    return env
