"""The report's efficiency section (the paper's Table 2) from a run's ``efficiency.json``.

One row per method: Method, Params (M), Steps, Time (s), IQR (s), Peak memory (MiB), Device. Timings
measured here and timings a precomputed method reports (its timings file, measured elsewhere, maybe on other
hardware) are both shown, the reported ones marked with a dagger and a footnote: they are not comparable like
for like. A method whose measurement failed shows its error instead of numbers. ``render_report`` adds this
section automatically when ``efficiency.json`` exists (``harness.bench_efficiency`` writes it).
"""

from __future__ import annotations

import math
from typing import Any

from harness.results import RunResults
from reports.html import Section, format_value, template_env

COLUMNS = ("Method", "Params (M)", "Steps", "Time (s)", "IQR (s)", "Peak memory (MiB)", "Device")
REPORTED_MARK = "\u2020"  # dagger

_TEMPLATE = """\
<p class="caption">{{ caption }}</p>
<table class="efficiency">
  <thead><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
  <tbody>
  {% for r in rows %}
    <tr{% if r.reported %} class="reported"{% endif %}><td class="text">{{ r.method }}</td><td>{{ r.params }}</td>
      <td>{{ r.steps }}</td>
      {% if r.error %}<td colspan="3" class="text error" title="{{ r.error }}">not measured: {{ r.error }}</td>
      {% else %}<td>{{ r.time }}{% if r.reported %} {{ mark }}{% endif %}</td><td>{{ r.iqr }}</td>
      <td>{{ r.memory }}</td>{% endif %}
      <td class="text">{{ r.device }}</td></tr>
  {% endfor %}
  </tbody>
</table>
{% if any_reported %}<p class="caption">{{ mark }} reported: the median (IQR) of the per-image seconds in the
method's timings file, measured elsewhere (possibly other hardware and image sizes), not by this run.</p>{% endif %}
{% for t in throughput %}
<h3>Throughput: {{ t.method }}</h3>
<table class="throughput">
  <thead><tr><th>batch size</th><th>s / batch</th><th>s / image</th><th>images / s</th></tr></thead>
  <tbody>{% for r in t.rows %}<tr><td>{{ r.batch_size }}</td>
  {% if r.error %}<td colspan="3" class="text">{{ r.error }}</td>
  {% else %}<td>{{ r.seconds_per_batch | num }}</td><td>{{ r.seconds_per_image | num }}</td>
  <td>{{ r.images_per_second | num }}</td>{% endif %}</tr>{% endfor %}</tbody>
</table>
{% endfor %}
"""


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else float("nan")


def efficiency_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Numeric Table-2 rows from ``efficiency.json`` (NaN / None where unknown), methods in file order."""
    rows = []
    for name, entry in (data.get("methods") or {}).items():
        total = (entry.get("params") or {}).get("total")
        latency = entry.get("latency") or {}
        peak = entry.get("peak_memory_bytes")
        rows.append(
            {
                "Method": name,
                "Params (M)": total / 1e6 if total is not None else float("nan"),
                "Steps": entry.get("inference_steps"),
                "Time (s)": _num(latency.get("median")),
                "IQR (s)": _num(latency.get("iqr")),
                "Peak memory (MiB)": peak / 2**20 if peak is not None else float("nan"),
                "Device": entry.get("device", data.get("device")),
                "Source": entry.get("time_source", "unknown"),
                "Error": entry.get("error"),
            }
        )
    return rows


def caption(data: dict[str, Any]) -> str:
    """What the numbers mean: input size, batch, repeats, device and memory basis."""
    h, w = data.get("lr_size") or ("?", "?")
    out = data.get("output_size")
    size = f"LR {w}\u00d7{h}" + (f" \u2192 {out[1]}\u00d7{out[0]}" if out else "")
    text = (
        f"Batch 1, {size} (seeded random input), median and IQR of {data.get('repeats', '?')} timed calls "
        f"after {data.get('warmup', '?')} warm-up call(s) on {data.get('device', '?')} "
        f"({data.get('device_name', '?')}). Params counted once per tensor; unknown (\u2013) for methods "
        f"whose weights are not in this process."
    )
    if data.get("memory_basis"):
        text += f" Peak memory: {data['memory_basis']}."
    return text


def efficiency_context(data: dict[str, Any]) -> dict[str, Any]:
    """Template context: formatted rows, caption, throughput tables."""
    rows = []
    for row in efficiency_rows(data):
        steps = row["Steps"]
        rows.append(
            {
                "method": row["Method"],
                "params": format_value(row["Params (M)"]),
                "steps": str(steps) if steps is not None else "\u2013",
                "time": format_value(row["Time (s)"]),
                "iqr": format_value(row["IQR (s)"]),
                "memory": format_value(row["Peak memory (MiB)"]),
                "device": row["Device"] or "\u2013",
                "reported": row["Source"] == "reported",
                "error": row["Error"],
            }
        )
    throughput = [
        {"method": name, "rows": entry["throughput"]}
        for name, entry in (data.get("methods") or {}).items()
        if entry.get("throughput")
    ]
    return {
        "caption": caption(data),
        "columns": COLUMNS,
        "rows": rows,
        "mark": REPORTED_MARK,
        "any_reported": any(r["reported"] for r in rows),
        "throughput": throughput,
    }


def efficiency_section(run: RunResults) -> Section | None:
    """The "Efficiency" section, or None when the run has no ``efficiency.json``."""
    if not run.efficiency:
        return None
    html = template_env().from_string(_TEMPLATE).render(**efficiency_context(run.efficiency))
    return Section("Efficiency", html=html)
