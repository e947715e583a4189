"""What every report that shows a model states next to it, and the warnings it must not leave out.

For each model (a method with a tokenizer, ``harness.bench.ceiling``) on each dataset: its PSNR-Y, its
tokenizer ceiling (PSNR-Y of the HR images through its own VQ-VAE) and bicubic, the images and seeds it was
evaluated on, the SCA gate's mean m and HCC's gradient share. ``model_warnings`` turns those into the banner
lines of ``WARNINGS`` (thresholds below); ``ModelFacts`` are gathered from a bench run by ``run_facts`` (the
sweep report aggregates them over seeds).

Gate and HCC figures: the analysed gates (``analysis/sca_gates.csv``, what inference used) when the run has
them, else the training log next to the checkpoint (``metrics.csv``: the mean of its last 5 rows that
measured gradients, as the sweep's "Training signals" table). HCC's share is judged only when HCC is on
(lambda > 0 in the training config next to the log).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

CEILING_GAP_DB = 2.0  # warn when a model is more than this below its tokenizer ceiling
MIN_IMAGES = 10  # warn when evaluated on fewer images
GATE_CLOSED = 0.01  # warn when the SCA gate's mean m is below this
HCC_SHARE_MIN = 0.01  # warn when HCC's gradient share on the logits is below this (1 %)
LAST_ROWS = 5  # training-log rows averaged


@dataclass
class ModelFacts:
    """One model on one dataset. None: not known (no warning is drawn from an unknown)."""

    model: str
    dataset: str
    psnr_y: float | None = None  # the model's mean PSNR-Y (across seeds when several)
    ceiling: float | None = None  # tokenizer ceiling, mean PSNR-Y
    bicubic: float | None = None  # bicubic x4, mean PSNR-Y
    n_images: int | None = None
    n_seeds: int | None = None
    gate_mean: float | None = None  # SCA gate mean m (None: SCA off or not recorded)
    hcc_share: float | None = None  # HCC gradient share (None: HCC off or not recorded)

    @property
    def label(self) -> str:
        return f"{self.model} on {self.dataset}"


def _known(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def model_warnings(f: ModelFacts) -> list[str]:
    """The warnings for one model (exact texts; each is tested with its condition true and false)."""
    out = []
    if _known(f.psnr_y) and _known(f.ceiling) and f.psnr_y < f.ceiling - CEILING_GAP_DB:
        out.append(
            f"{f.label}: PSNR-Y {f.psnr_y:.2f} dB is {f.ceiling - f.psnr_y:.2f} dB below its tokenizer ceiling "
            f"{f.ceiling:.2f} dB (> {CEILING_GAP_DB:g} dB): the model, not its tokenizer, limits it"
        )
    if _known(f.psnr_y) and _known(f.bicubic) and f.psnr_y < f.bicubic:
        out.append(f"{f.label}: PSNR-Y {f.psnr_y:.2f} dB is below bicubic ({f.bicubic:.2f} dB)")
    if _known(f.n_images) and f.n_images < MIN_IMAGES:
        out.append(
            f"{f.label}: evaluated on {f.n_images} images (< {MIN_IMAGES}): differences are hard to detect "
            "and CIs are rough"
        )
    if _known(f.n_seeds) and f.n_seeds == 1:
        out.append(f"{f.label}: one seed: training and sampling variance is not measured (sweep.seeds: [0, 1, 2])")
    if _known(f.gate_mean) and f.gate_mean < GATE_CLOSED:
        out.append(
            f"{f.label}: SCA gate closed (mean m = {f.gate_mean:.4f} < {GATE_CLOSED:g}): SCA leaves the "
            "tokens almost unchanged"
        )
    if _known(f.hcc_share) and f.hcc_share < HCC_SHARE_MIN:
        out.append(
            f"{f.label}: HCC gradient share {100 * f.hcc_share:.2f} % < {100 * HCC_SHARE_MIN:g} %: HCC barely "
            "moves the logits"
        )
    return out


def facts_frame(facts: list[ModelFacts]) -> pd.DataFrame:
    """The table shown next to the results: one row per model and dataset."""
    rows = [
        {
            "model": f.model,
            "dataset": f.dataset,
            "PSNR-Y": f.psnr_y,
            "tokenizer ceiling": f.ceiling,
            "bicubic": f.bicubic,
            "below ceiling": (f.ceiling - f.psnr_y) if _known(f.ceiling) and _known(f.psnr_y) else None,
            "images": f.n_images,
            "seeds": f.n_seeds,
            "gate mean m": f.gate_mean,
            "HCC share": f.hcc_share,
        }
        for f in facts
    ]
    return pd.DataFrame(rows)


CAPTION = (
    "Every model next to its tokenizer ceiling (PSNR-Y of the HR images encoded, quantised over every scale and "
    "decoded by the model's own VQ-VAE: what generating exactly the right tokens would give; VARSR's diffusion "
    "refiner, where used, can add detail beyond it) and bicubic x4 (PSNR-Y, dB, means over the images). below "
    "ceiling: ceiling - PSNR-Y. gate mean m: the SCA gate (analysed "
    "generations, else the training log); HCC share: lambda x |dHCC/dlogits| / |dCE/dlogits| from the training "
    "log (last 5 logged steps); – when SCA / HCC is off or not recorded."
)


# ------------------------------------------------------------------------------------------ reading a run
def ceiling_summary(table: pd.DataFrame | None) -> dict[tuple[str, str], dict[str, float]]:
    """(dataset, method) -> {tokenizer_psnr_y, bicubic_psnr_y: means over the images computed, n} of a
    ``ceilings.csv`` table (``harness.bench.ceiling``)."""
    if table is None or table.empty:
        return {}
    out = {}
    for (ds, method), part in table.groupby(["dataset", "method"], sort=False, dropna=False):
        ok = part.dropna(subset=["tokenizer_psnr_y"])
        out[("" if pd.isna(ds) else str(ds), str(method))] = {
            "tokenizer_psnr_y": float(ok["tokenizer_psnr_y"].mean()) if len(ok) else math.nan,
            "bicubic_psnr_y": float(ok["bicubic_psnr_y"].mean()) if len(ok) else math.nan,
            "n": int(len(ok)),
        }
    return out


def psnr_y_metric(config: dict) -> str | None:
    """The name of the run's ``psnr_y`` metric (its config ``metrics:`` list), or None."""
    for item in config.get("metrics") or []:
        type_name = item if isinstance(item, str) else item.get("type") if isinstance(item, dict) else None
        if type_name == "psnr_y":
            return item if isinstance(item, str) else str(item.get("name", type_name))
    return None


def _method_options(config: dict, method: str) -> dict:
    for item in config.get("methods") or []:
        if isinstance(item, dict) and str(item.get("name", item.get("type"))) == method:
            return item
    return {}


def training_signals(log: pd.DataFrame | None, hcc_lambda: float | None) -> tuple[float | None, float | None]:
    """(gate mean, HCC share) of a training log, means over its last ``LAST_ROWS`` gradient-measuring rows;
    the share only when ``hcc_lambda`` > 0 (unknown lambda: judged when the log's share is positive)."""
    if log is None or log.empty:
        return None, None
    measured = log.dropna(subset=["hcc_grad_ratio"]) if "hcc_grad_ratio" in log.columns else log
    tail = measured.tail(LAST_ROWS)
    gate = float(tail["gate_mean"].mean()) if "gate_mean" in tail.columns and tail["gate_mean"].notna().any() else None
    share = None
    if "hcc_share" in tail.columns and tail["hcc_share"].notna().any():
        value = float(tail["hcc_share"].mean())
        on = hcc_lambda > 0 if hcc_lambda is not None else value > 0
        share = value if on else None
    return gate, share


def analysed_gate(gates: pd.DataFrame | None) -> float | None:
    """Mean m over the analysed gated scales (token-weighted; ``analysis/sca_gates.csv``), or None."""
    if gates is None or gates.empty or "gate_mean" not in gates.columns:
        return None
    if "n_tokens" in gates.columns and gates["n_tokens"].sum() > 0:
        return float((gates["gate_mean"] * gates["n_tokens"]).sum() / gates["n_tokens"].sum())
    return float(gates["gate_mean"].mean())


def checkpoint_training(checkpoint: str | None) -> tuple[pd.DataFrame | None, float | None]:
    """The training log next to a checkpoint trained by ``run.py train`` (``metrics.csv`` in its folder) and
    the HCC lambda of that folder's ``config.yaml``; (None, None) when there is none."""
    if not checkpoint:
        return None, None
    folder = Path(checkpoint).parent
    log_path = folder / "metrics.csv"
    if not log_path.is_file():
        return None, None
    try:
        log = pd.read_csv(log_path)
    except (OSError, ValueError):
        return None, None
    hcc_lambda = None
    config_path = folder / "config.yaml"
    if config_path.is_file():
        try:
            model = (yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}).get("model") or {}
            value = (model.get("hcc") or {}).get("lambda")
            hcc_lambda = float(value) if isinstance(value, (int, float)) else None
        except (OSError, ValueError, yaml.YAMLError, AttributeError):
            hcc_lambda = None
    return log, hcc_lambda


def run_facts(
    run_dir: str | Path,
    config: dict,
    summary: pd.DataFrame,
    ceiling_table: pd.DataFrame | None,
    *,
    n_seeds: int | None = 1,
    gates: pd.DataFrame | None = None,
) -> list[ModelFacts]:
    """The facts of every model (method with an entry in ``ceilings``, the run's ``ceilings.csv``:
    ``harness.bench.ceiling.read_ceilings``) of one bench run on every dataset."""
    run_dir = Path(run_dir)
    ceilings = ceiling_summary(ceiling_table)
    metric = psnr_y_metric(config)
    if gates is None and (run_dir / "analysis" / "sca_gates.csv").is_file():
        gates = pd.read_csv(run_dir / "analysis" / "sca_gates.csv")
    models = {m for d, m in ceilings if d}
    analysed = analysed_gate(gates) if len(models) == 1 else None  # the analysis probes the run's one model
    facts = []
    for (dataset, method), ceiling in ceilings.items():
        if not dataset:
            continue  # the ceiling could not be computed at all (its error is in ceilings.csv)
        rows = summary[(summary["dataset"] == dataset) & (summary["method"] == method)]
        psnr = rows[rows["metric"] == metric] if metric else rows.iloc[0:0]
        n = rows["n"].dropna()
        log, hcc_lambda = checkpoint_training(_method_options(config, method).get("checkpoint"))
        gate, share = training_signals(log, hcc_lambda)
        gate = analysed if analysed is not None else gate
        facts.append(
            ModelFacts(
                model=method,
                dataset=dataset,
                psnr_y=float(psnr["mean"].iloc[0]) if len(psnr) else None,
                ceiling=ceiling["tokenizer_psnr_y"],
                bicubic=ceiling["bicubic_psnr_y"],
                n_images=int(n.max()) if len(n) else ceiling["n"],
                n_seeds=n_seeds,
                gate_mean=gate,
                hcc_share=share,
            )
        )
    return facts


def _cell(column: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if not _known(value):
        return "\u2013"
    if column in ("images", "seeds"):
        return str(int(value))
    if column == "HCC share":
        return f"{100 * float(value):.2f} %"
    if column == "gate mean m":
        return f"{float(value):.4f}"
    return f"{float(value):.2f}"


def models_context(facts: list[ModelFacts]) -> dict[str, Any]:
    """The context of ``templates/models.html.j2``: ``facts_frame`` as rows (PSNR-Y in dB with 2 decimals) and
    the warnings."""
    table = facts_frame(facts)
    rows = [[_cell(c, v) for c, v in rec.items()] for rec in table.to_dict("records")]
    warnings = [w for f in facts for w in model_warnings(f)]
    return {"caption": CAPTION, "columns": list(table.columns), "rows": rows, "warnings": warnings}


MODELS_TITLE = "Models: tokenizer ceiling, bicubic, warnings"
MODELS_TEMPLATE = "models.html.j2"
