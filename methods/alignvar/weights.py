"""Checkpoint files of VARSR / AlignVAR: safe reading, strict loading, saving, architecture inference.

Reading never executes code: ``.safetensors`` through safetensors, ``.pth/.pt/.ckpt/.bin`` through
``torch.load(weights_only=True)`` (a pickle that needs arbitrary classes is refused with a clear message). The
official files nest their state dicts as ``VQVAE.pth['trainer']['vae_local']`` and
``VARSR.pth['trainer']['var_wo_ddp']``; ``read_state_dict`` descends into them and strips DDP / torch.compile
prefixes (``module.``, ``_orig_mod.``).

``read_pretrained`` reads a checkpoint (official ``VARSR.pth`` + ``VQVAE.pth``, or our safetensors with the
prefixes ``transformer.``, ``vqvae.`` and ``sca.`` and the configs as JSON metadata) into state dicts plus the
architecture their shapes imply; ``AlignVAR.from_pretrained`` builds the model ``without_init`` (weights
allocated, never written) and assigns those tensors, so the weights are held once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import re
import struct
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from methods.alignvar.configs import AlignVARConfig, TransformerConfig, transformer_config_from_state_dict
from methods.alignvar.vqvae import VQVAE

VQVAE_NESTING = ("trainer", "vae_local")
VAR_NESTING = ("trainer", "var_wo_ddp")
OFFICIAL_NESTINGS = (VQVAE_NESTING, VAR_NESTING)
# Derived buffers that official checkpoints may or may not carry; loading neither needs nor requires them.
OPTIONAL_BUFFERS = ("ema_vocab_hit_SV", "lvl_1L", "attn_bias_for_masking", "zero_k_bias")
_STRIP_PREFIXES = ("module.", "_orig_mod.")
_TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")

RELEASE_HINT = "the VARSR release (https://github.com/qyp2000/VARSR, checkpoints VQVAE.pth and VARSR.pth)"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file and the key."""


def _default_hint(path: Path) -> str:
    name = path.name.lower()
    if "vqvae" in name or "vae" in name:
        return f"download VQVAE.pth from {RELEASE_HINT} and pass --vqvae PATH"
    if "varsr" in name or "var" in name:
        return f"download VARSR.pth from {RELEASE_HINT} and pass --varsr PATH"
    return f"check the path (official weights: {RELEASE_HINT})"


def _fmt_shape(shape: Any) -> str:
    return "(" + ",".join(str(int(s)) for s in shape) + ")"


_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors(path: str | Path) -> dict[str, Tensor]:
    """Every tensor of a ``.safetensors`` file, each read into its own CPU allocation (no memory map).

    ``safetensors.torch.load_file`` returns views of one memory map of the whole file: a tensor freed later
    (e.g. the AdaLN weights that inference releases) keeps its pages resident as long as any other tensor of the
    file lives. Separate allocations are returned to the OS when freed. Same result as ``load_file``; the format
    (an 8-byte little-endian header length, a JSON header, then the raw bytes) is read strictly.
    """
    path = Path(path)
    size = path.stat().st_size
    out: dict[str, Tensor] = {}
    with open(path, "rb") as fh:
        header, base = _read_header(fh, path, size)
        header.pop("__metadata__", None)
        entries = []
        for name, info in header.items():
            try:
                (begin, end), shape = info["data_offsets"], [int(d) for d in info["shape"]]
                if int(begin) < 0 or int(end) < int(begin) or any(d < 0 for d in shape):
                    raise ValueError("negative offsets or sizes")
            except (KeyError, TypeError, ValueError) as exc:
                raise CheckpointError(f"{path}: tensor {name!r} has a malformed header entry {info!r}") from exc
            entries.append((int(begin), int(end), shape, name, info.get("dtype")))
        for begin, end, shape, name, dtype_name in sorted(entries, key=lambda e: e[0]):
            dtype = _SAFETENSORS_DTYPES.get(dtype_name)
            if dtype is None:
                raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype_name!r}")
            numel = math.prod(shape)
            itemsize = torch.empty((), dtype=dtype).element_size()
            if end - begin != numel * itemsize or base + end > size:
                raise CheckpointError(f"{path}: tensor {name!r}: byte range {begin}..{end} does not fit {shape}")
            raw = torch.empty(end - begin, dtype=torch.uint8)
            fh.seek(base + begin)
            if fh.readinto(memoryview(raw.numpy())) != end - begin:
                raise CheckpointError(f"{path}: truncated while reading tensor {name!r}")
            out[name] = raw.view(dtype).reshape(shape)
    return out


def _read_header(fh: Any, path: Path, size: int) -> tuple[dict, int]:
    """The JSON header of an open safetensors file and where its data starts; ``CheckpointError`` otherwise."""
    try:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > size - 8:
            raise ValueError(f"header length {n} exceeds the file size {size}")
        header = json.loads(fh.read(n))
        if not isinstance(header, dict):
            raise ValueError(f"the header is a {type(header).__name__}, not a mapping")
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    return header, 8 + n


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (read strictly, without loading any tensor)."""
    path = Path(path)
    with open(path, "rb") as fh:
        header, _ = _read_header(fh, path, path.stat().st_size)
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(f"{path}: the safetensors metadata is not a str -> str mapping")
    return meta


def _load_raw(path: Path) -> Any:
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if path.suffix not in _TORCH_SUFFIXES:
        raise CheckpointError(
            f"{path}: unknown checkpoint format {path.suffix!r}; expected .safetensors or one of "
            f"{', '.join(_TORCH_SUFFIXES)}"
        )
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if found is None:  # not a refused class: the bytes are not a pickle at all (truncated, wrong file)
            raise CheckpointError(f"{path}: not a readable torch checkpoint ({_unpickling_detail(exc)})") from exc
        first = f"it references {found.group(1)}"
        raise CheckpointError(
            f"{path}: refusing to load: the pickle needs code beyond plain tensors/containers, and "
            f"checkpoints are only read with torch.load(weights_only=True) (never unpickling arbitrary "
            f"objects). Convert it to safetensors in a trusted environment. Detail: {first}"
        ) from exc
    except EOFError as exc:
        raise CheckpointError(f"{path}: not a readable torch checkpoint (the file ends early: empty or cut)") from exc
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({first})") from exc


def _unpickling_detail(exc: Exception) -> str:
    """The informative line of torch's weights-only unpickling error (after 'WeightsUnpickler error:')."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error" in line:
            rest = line.partition("WeightsUnpickler error")[2].lstrip(":").strip()
            rest = rest or (lines[i + 1] if i + 1 < len(lines) else "")
            return f"{rest}: not a pickle of tensors; truncated, or another kind of file"
    return lines[0] if lines else type(exc).__name__


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def _descend(obj: Any, path: Path, nested: tuple[str, ...] | None) -> tuple[Mapping, tuple[str, ...]]:
    if nested is not None:
        cur, walked = obj, []
        for key in nested:
            if not isinstance(cur, Mapping) or key not in cur:
                have = sorted(map(str, cur.keys())) if isinstance(cur, Mapping) else type(cur).__name__
                where = "".join(f"[{k!r}]" for k in walked) or "top level"
                raise CheckpointError(f"{path}: no key {key!r} at {where}; available: {have}")
            cur = cur[key]
            walked.append(key)
        return cur, tuple(nested)
    if _is_tensor_dict(obj):
        return obj, ()
    if isinstance(obj, Mapping):
        trainer = obj.get("trainer")
        if isinstance(trainer, Mapping):
            found = [n for n in OFFICIAL_NESTINGS if n[1] in trainer]
            if len(found) == 1:
                return trainer[found[0][1]], found[0]
            if len(found) > 1:
                raise CheckpointError(
                    f"{path}: holds both ['trainer']['vae_local'] and ['trainer']['var_wo_ddp']; pass "
                    f"nested=VQVAE_NESTING or nested=VAR_NESTING to choose"
                )
        for key in ("state_dict", "model", "params_ema", "params"):
            if _is_tensor_dict(obj.get(key)):
                return obj[key], (key,)
    keys = sorted(map(str, obj.keys()))[:10] if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(
        f"{path}: no state dict found (top-level keys: {keys}); pass nested=('a', 'b') naming where it is"
    )


def read_state_dict(
    path: str | Path, nested: tuple[str, ...] | None = None, hint: str | None = None
) -> dict[str, Tensor]:
    """Read a flat ``{key: tensor}`` state dict from ``path`` without executing code.

    ``nested`` names the dict path to descend (e.g. ``VAR_NESTING``); by default the official nestings
    ``['trainer']['vae_local' | 'var_wo_ddp']`` (or a ``state_dict``/``model`` entry) are found automatically.
    ``module.`` / ``_orig_mod.`` prefixes are stripped. A missing file raises ``FileNotFoundError`` naming the
    path and ``hint`` (default: where to download the official weights).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: {hint or _default_hint(path)}")
    sd, _ = _descend(_load_raw(path), path, nested)
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        name = str(key)
        changed = True
        while changed:
            changed = False
            for prefix in _STRIP_PREFIXES:
                if name.startswith(prefix):
                    name, changed = name[len(prefix) :], True
        if name in out:
            raise CheckpointError(f"{path}: key {name!r} appears twice after stripping module./_orig_mod.")
        out[name] = value
    return out


@dataclass
class LoadReport:
    """What ``load_strict`` did: counts, and optional buffers kept from the model or dropped from the file."""

    loaded: int
    kept_model_buffers: list[str] = field(default_factory=list)  # optional, absent from the checkpoint
    ignored_checkpoint_buffers: list[str] = field(default_factory=list)  # optional, absent from the model


def _is_optional(key: str, optional: tuple[str, ...]) -> bool:
    return key.rsplit(".", 1)[-1] in optional


def _preview(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(repr(k) for k in keys[:n])
    return shown + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def load_strict(
    module: nn.Module,
    sd: Mapping[str, Tensor],
    source: str,
    optional_buffers: tuple[str, ...] = OPTIONAL_BUFFERS,
    assign: bool = False,
) -> LoadReport:
    """Load ``sd`` into ``module`` with strict key and shape checking; raise ``CheckpointError`` otherwise.

    ``assign``: the module's tensors become ``sd``'s (no copy; for a module built ``without_init``), cast to
    the module's dtype where they differ (e.g. a half-precision file into a float32 model).

    Keys whose last component is in ``optional_buffers`` may be missing on either side. Errors name
    ``source``: the first key (in checkpoint order) whose shape differs ("<source>: key 'X' has shape (a,b) in
    the checkpoint but (c,d) in the model"), else the missing / unexpected keys (first few of each).
    """
    own = module.state_dict()
    for key, value in sd.items():
        if key in own and tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"{source}: key {key!r} has shape {_fmt_shape(value.shape)} in the checkpoint but "
                f"{_fmt_shape(own[key].shape)} in the model"
            )
    missing = [k for k in own if k not in sd and not _is_optional(k, optional_buffers)]
    unexpected = [k for k in sd if k not in own and not _is_optional(k, optional_buffers)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} key(s) missing from the checkpoint: {_preview(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) in the checkpoint: {_preview(unexpected)}")
        raise CheckpointError(
            f"{source}: checkpoint does not match the {type(module).__name__} architecture; " + "; ".join(parts)
        )
    report = LoadReport(
        loaded=sum(1 for k in sd if k in own),
        kept_model_buffers=[k for k in own if k not in sd],
        ignored_checkpoint_buffers=[k for k in sd if k not in own],
    )
    wanted = {k: v for k, v in sd.items() if k in own}
    if assign:
        wanted = {k: v if v.dtype == own[k].dtype else v.to(own[k].dtype) for k, v in wanted.items()}
    result = module.load_state_dict(wanted, strict=False, assign=assign)
    if result.unexpected_keys or set(result.missing_keys) != set(report.kept_model_buffers):
        raise CheckpointError(f"{source}: internal key bookkeeping mismatch ({result}); please report")
    return report


def save_safetensors(
    module_or_sd: nn.Module | Mapping[str, Tensor], path: str | Path, metadata: dict[str, str]
) -> None:
    """Write a module's (or a dict's) tensors to ``path`` as safetensors, atomically; ``metadata`` is
    str->str."""
    from safetensors.torch import save_file

    bad = {k: v for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)}
    if bad:
        raise TypeError(f"safetensors metadata must map str to str; offending entries: {bad!r}")
    sd = module_or_sd.state_dict() if isinstance(module_or_sd, nn.Module) else module_or_sd
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:  # write beside the target, then rename over it: readers see the old file or the whole new one
        save_file(tensors, tmp, metadata=dict(metadata))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _need(sd: Mapping[str, Tensor], key: str, source: str) -> Tensor:
    if key not in sd:
        raise CheckpointError(f"{source}: key {key!r} not found; is this the right checkpoint?")
    return sd[key]


def infer_vqvae_config(sd: Mapping[str, Tensor], source: str = "state dict") -> dict[str, Any]:
    """VQVAE constructor kwargs from tensor shapes: vocab_size, z_channels, ch, ch_mult, num_res_blocks,
    share_quant_resi and ema_scales (beta / quant_resi are not stored; the VARSR values 0.25 / 0.5 apply)."""
    vocab, z = _need(sd, "quantize.embedding.weight", source).shape
    ch = _need(sd, "encoder.conv_in.weight", source).shape[0]
    levels = sorted({int(m.group(1)) for k in sd if (m := re.match(r"encoder\.down\.(\d+)\.", k))})
    if not levels:
        raise CheckpointError(f"{source}: no 'encoder.down.N' keys; not a VAR/VARSR VQ-VAE checkpoint")
    ch_mult = tuple(int(_need(sd, f"encoder.down.{i}.block.0.conv1.weight", source).shape[0]) // ch for i in levels)
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k))}
    phis = {int(m.group(1)) for k in sd if (m := re.match(r"quantize\.quant_resi\.qresi_ls\.(\d+)\.", k))}
    ema = sd.get("quantize.ema_vocab_hit_SV")
    return dict(
        vocab_size=int(vocab),
        z_channels=int(z),
        ch=int(ch),
        ch_mult=ch_mult,
        num_res_blocks=len(blocks),
        share_quant_resi=len(phis) if phis else 4,
        ema_scales=int(ema.shape[0]) if ema is not None else 10,
    )


# ----------------------------------------------------------------------------------------------- pretrained
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

    def release(self) -> None:
        """Drop the references to the tensors (after they were assigned to a model, which then holds them alone)."""
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
    meta = safetensors_metadata(path)  # our strict reader: a damaged file is a CheckpointError naming it
    if "alignvar_config" not in meta:
        return None
    try:
        data = json.loads(meta["alignvar_config"])
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        data.update(checkpoint=str(path), arch="auto")
        return AlignVARConfig.from_json_dict(data)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: metadata 'alignvar_config' does not fit this version: {exc}") from None


def load_vqvae(sd: Mapping[str, Tensor], source: str) -> VQVAE:
    """A VQ-VAE whose configuration is inferred from the tensor shapes of ``sd``, loaded strictly, in eval mode.
    ``source`` names the file in error messages."""
    model = VQVAE(**infer_vqvae_config(sd, source=source))
    load_strict(model, sd, source)
    return model.eval()
