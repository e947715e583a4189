"""Reading VARSR / AlignVAR checkpoints into an ``AlignVAR`` built on the meta device (``from_pretrained``).

Two layouts are read: the official ``VARSR.pth`` (transformer, nested ``['trainer']['var_wo_ddp']``) plus
``VQVAE.pth``, and our safetensors with the prefixes ``transformer.``, ``vqvae.`` (optional) and ``sca.`` and the
configs as JSON metadata. The architecture is inferred from the tensor shapes.

Memory: the model is built on the meta device (no storage, no random init) and the file's tensors are assigned to
it (``load_strict(..., assign=True)``), so loading holds the weights once instead of model + state dict. What a
file need not hold is created afterwards: a fresh SCA gate for a VARSR file loaded into an SCA model, and the
zero buffers (``materialize_zero_buffers``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

from harness.config import from_dict
from methods.alignvar.checkpoint import (
    CheckpointError,
    infer_vqvae_config,
    load_strict,
    materialize_zero_buffers,
    read_state_dict,
)
from methods.alignvar.configs import AlignVARConfig, TransformerConfig, transformer_config_from_state_dict

if TYPE_CHECKING:
    from methods.alignvar.model import AlignVAR

VQVAE_HINT = "download VQVAE.pth from the VARSR release (https://github.com/qyp2000/VARSR) and pass --vqvae PATH"


@dataclass
class PretrainedFiles:
    """The state dicts of a checkpoint (and its VQ-VAE), the configs they imply, and where they came from."""

    config: AlignVARConfig
    transformer_config: TransformerConfig
    vqvae_config: dict
    transformer: dict[str, Tensor]
    vqvae: dict[str, Tensor]
    sca: dict[str, Tensor]
    source: str
    vqvae_source: str

    def assign_to(self, model: AlignVAR) -> None:
        """Make ``model`` (built from these configs, on the meta device) hold these tensors; the dicts are emptied
        so that the tensors live in the model only."""
        load_strict(model.transformer, self.transformer, self.source, assign=True)
        load_strict(model.vqvae, self.vqvae, self.vqvae_source, assign=True)
        if model.sca is not None and self.sca:
            load_strict(model.sca, self.sca, f"{self.source} (sca.)", assign=True)
        elif model.sca is not None:
            model.sca = model.new_sca_gate()
            model.sca_untrained = True
            model.load_notes.append(
                f"{self.source} has no SCA weights: SCA ({self.config.sca.mask_input}) freshly initialised"
            )
        elif self.sca:
            model.load_notes.append(f"{self.source} has SCA weights but sca.mask_input is 'none': they are ignored")
        self.transformer, self.vqvae, self.sca = {}, {}, {}
        materialize_zero_buffers(model, self.source)


def read_pretrained(
    checkpoint: str | Path, vqvae: str | Path | None = None, config: AlignVARConfig | None = None
) -> PretrainedFiles:
    """Read ``checkpoint`` (and ``vqvae``), split our prefixes, infer the architecture; ``config`` defaults to
    the one stored in our checkpoint's metadata, else ``AlignVARConfig()``."""
    checkpoint = Path(checkpoint)
    sd = read_state_dict(checkpoint)
    if config is None:
        config = stored_config(checkpoint) or AlignVARConfig(arch="auto", checkpoint=str(checkpoint))
    if any(k.startswith("transformer.") for k in sd):  # ours
        other = [k for k in sd if not k.startswith(("transformer.", "vqvae.", "sca."))]
        if other:
            raise CheckpointError(f"{checkpoint}: unexpected keys outside transformer./vqvae./sca.: {other[:5]}")
        tsd, vsd, ssd = (strip_prefix(sd, p) for p in ("transformer.", "vqvae.", "sca."))
    else:
        tsd, vsd, ssd = sd, {}, {}
    del sd
    vsource = str(checkpoint)
    if vqvae is not None:
        vsd, vsource = read_state_dict(vqvae, hint=VQVAE_HINT), str(vqvae)
    elif not vsd:
        raise CheckpointError(f"{checkpoint} holds no VQ-VAE weights: {VQVAE_HINT}")
    return PretrainedFiles(
        config=config,
        transformer_config=transformer_config_from_state_dict(tsd, source=str(checkpoint)),
        vqvae_config=infer_vqvae_config(vsd, source=vsource),
        transformer=tsd,
        vqvae=vsd,
        sca=ssd,
        source=str(checkpoint),
        vqvae_source=vsource,
    )


def strip_prefix(sd: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries of ``sd`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def stored_config(path: Path) -> AlignVARConfig | None:
    """The ``AlignVARConfig`` in our safetensors metadata (None for other files)."""
    if path.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if "alignvar_config" not in meta:
        return None
    data = json.loads(meta["alignvar_config"])
    data.update(checkpoint=str(path), arch="auto")
    return from_dict(AlignVARConfig, data, source=f"{path} (metadata)")
