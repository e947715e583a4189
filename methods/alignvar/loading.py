"""Reading VARSR / AlignVAR checkpoints into an ``AlignVAR`` without copying the weights (``from_pretrained``).

Two layouts are read: the official ``VARSR.pth`` (transformer, nested ``['trainer']['var_wo_ddp']``) plus
``VQVAE.pth``, and our safetensors with the prefixes ``transformer.``, ``vqvae.`` (optional) and ``sca.`` and the
configs as JSON metadata. The architecture is inferred from the tensor shapes.

Memory: the model is built without initialising its weights (``without_init``: allocated, never written, so
never resident) and the file's tensors are assigned to it (``load_strict(..., assign=True)``), so loading holds
the weights once instead of model + state dict. A VARSR file loaded into an SCA model gets a freshly initialised
gate afterwards.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor
from torch.overrides import TorchFunctionMode

from harness.config import from_dict
from methods.alignvar.checkpoint import (
    CheckpointError,
    infer_vqvae_config,
    load_strict,
    read_state_dict,
)
from methods.alignvar.configs import AlignVARConfig, TransformerConfig, transformer_config_from_state_dict

if TYPE_CHECKING:
    from methods.alignvar.model import AlignVAR

VQVAE_HINT = "download VQVAE.pth from the VARSR release (https://github.com/qyp2000/VARSR) and pass --vqvae PATH"


class _SkipInit(TorchFunctionMode):
    """Weight initialisers leave their tensor unwritten: the ``torch.nn.init`` functions that take torch's function
    hook (normal_, uniform_, kaiming_*, xavier_*, constant_: every Linear/Conv/Embedding default) return it
    untouched. The few without the hook (trunc_normal_, zeros_, ones_: here the class/level embeddings,
    ``pos_start`` and norm affines, a few MB) still run, with their random fills writing zeros (deterministic,
    and trunc_normal_'s rejection loop ends at once); the assignment then replaces all of them."""

    _RANDOM_FILLS = (Tensor.normal_, Tensor.uniform_)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch signature
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]  # torch.nn.init passes the tensor by keyword
        if func in self._RANDOM_FILLS:
            return args[0].zero_()
        return func(*args, **kwargs)


@contextlib.contextmanager
def without_init() -> Iterator[None]:
    """Build modules without initialising their weights: the storage is allocated but never written, so the
    operating system has not committed it (no memory, no ~20 s of random init at d24) when the file's tensors
    replace it. Buffers are built as usual. Every parameter must then be assigned (``load_strict`` is strict)."""
    with _SkipInit():
        yield


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
        """Make ``model`` (built from these configs, ``without_init``) hold these tensors; the dicts are emptied so
        that the tensors live in the model only."""
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
