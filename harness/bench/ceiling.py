"""The tokenizer ceiling of a model and bicubic next to it: what every report showing a model states.

A model that generates VQ-VAE tokens gets no closer to the HR image than the HR image itself put through that
VQ-VAE (encode, quantise over every scale, decode), except for what a refiner adds on top of the tokens (VARSR's
diffusion refiner predicts the continuous residual of the last scale). ``CeilingHook`` (added to every bench
run) computes, for each method that has a tokenizer (``tokenizer_reconstruct``, the VARSR / AlignVAR adapters)
and each dataset with HR references, per image: PSNR-Y of that reconstruction and PSNR-Y of bicubic x4 of the LR
image, and writes them to ``ceilings.csv`` (``CEILING_COLUMNS``). PSNR-Y is the run's own ``psnr_y`` metric
when it has one (same options), else ``psnr_y`` with its defaults; bicubic is the ``bicubic`` method with its
defaults. A failure here is logged and recorded in the file's ``error`` column; it never fails the run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from harness.bench.prepare import BenchContext, BenchHook
from harness.core.atomic import write_with
from harness.core.imageio import quantize_8bit

log = logging.getLogger(__name__)

CEILINGS_FILE = "ceilings.csv"
CEILING_COLUMNS = ("dataset", "method", "image", "tokenizer_psnr_y", "bicubic_psnr_y", "error")


def has_tokenizer(method: Any) -> bool:
    return callable(getattr(method, "tokenizer_reconstruct", None))


def _psnr_y(ctx: BenchContext) -> Any:
    from harness.core import registry

    for spec in ctx.cfg.metrics:
        if spec.type == "psnr_y" and spec.name in ctx.prepared.metrics:
            return ctx.prepared.metrics[spec.name]
    return registry.create("metrics", "psnr_y", device=str(ctx.device))


class CeilingHook(BenchHook):
    """Tokenizer-ceiling and bicubic PSNR-Y per image for every method with a tokenizer (``ceilings.csv``).

    ``max_images`` caps the images per dataset (default: every image the bench evaluates); pass
    ``run_bench(cfg, hooks=[CeilingHook(max_images=16)])`` to make it cheaper (docs/PERFORMANCE.md, "Tokenizer
    ceiling"): the report then states the ceiling over those images.
    """

    def __init__(self, max_images: int | None = None) -> None:
        if max_images is not None and max_images < 1:
            raise ValueError(f"max_images: must be >= 1 or None, got {max_images}")
        self.max_images = max_images
        self.rows: list[dict[str, Any]] = []

    def on_start(self, ctx: BenchContext) -> None:
        self.rows = []

    def on_method_start(self, ctx: BenchContext, method_name: str, method: Any) -> None:
        if not has_tokenizer(method):
            return
        from harness.core import registry

        try:
            psnr_y = _psnr_y(ctx)
            bicubic = registry.create("methods", "bicubic")
        except Exception as exc:  # noqa: BLE001 - the ceiling is a note, never a reason to fail the run
            log.warning("tokenizer ceiling of %s not computed: %s", method_name, exc)
            self.rows.append({"dataset": "", "method": method_name, "image": "", "error": str(exc)})
            return
        for ds_name, ds in ctx.prepared.datasets.items():
            if not getattr(ds, "has_reference", False):
                continue
            n = len(ds) if ctx.cfg.bench.max_images is None else min(len(ds), ctx.cfg.bench.max_images)
            n = n if self.max_images is None else min(n, self.max_images)
            for i in range(n):
                row: dict[str, Any] = {"dataset": ds_name, "method": method_name, "image": "", "error": ""}
                try:
                    sample = ds[i]
                    row["image"] = sample.key
                    hr = sample.hr[None].to(ctx.device)
                    with torch.inference_mode():
                        recon = quantize_8bit(method.tokenizer_reconstruct(hr).float().to(ctx.device))
                        up = quantize_8bit(bicubic.upscale(sample.lr[None].to(bicubic.device), [sample.key]).float())
                        row["tokenizer_psnr_y"] = float(torch.as_tensor(psnr_y(recon, hr)).reshape(-1)[0])
                        row["bicubic_psnr_y"] = float(torch.as_tensor(psnr_y(up.to(ctx.device), hr)).reshape(-1)[0])
                except Exception as exc:  # noqa: BLE001
                    log.warning("tokenizer ceiling of %s on %s/%s: %s", method_name, ds_name, row["image"], exc)
                    row["error"] = f"{type(exc).__name__}: {exc}"
                self.rows.append(row)

    def on_end(self, ctx: BenchContext, summary: Any) -> None:
        if self.rows:
            write_ceilings(ctx.run_dir, pd.DataFrame(self.rows, columns=list(CEILING_COLUMNS)))


def write_ceilings(run_dir: Path, table: pd.DataFrame) -> Path:
    path = Path(run_dir) / CEILINGS_FILE
    write_with(path, lambda tmp: table.to_csv(tmp, index=False))
    return path


def read_ceilings(run_dir: str | Path) -> pd.DataFrame | None:
    """``ceilings.csv`` of a run (None when the run has none: no method with a tokenizer, or an older run)."""
    path = Path(run_dir) / CEILINGS_FILE
    if not path.is_file():
        return None
    table = pd.read_csv(path, dtype={"dataset": str, "method": str, "image": str, "error": str})
    missing = [c for c in CEILING_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    return table
