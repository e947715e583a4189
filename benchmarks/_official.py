"""Running the official VARSR code (qyp2000/VARSR) next to ours, for the side-by-side benchmarks only.

Nothing of the official code is in this repository: the user passes a checkout (``--official DIR``), which is
imported in a *separate benchmark process* and never edited. On CPU its six ``.cuda()`` calls (refiner noise and
timesteps in ``models/diffusion/``, generation orders in ``models/var.py``) are neutralised at import time by
making ``torch.Tensor.cuda`` the identity in that process (``import_official``).

Official-layout checkpoints with random weights: the key names, shapes and dtypes come from instantiating the
official classes on the meta device (no memory, no init); the init rule of every key is the one the public
golden key list (``$ALIGNVAR_SHARED/golden/varsr/keys_var_d2.tsv`` / ``keys_vqvae.tsv``) gives the same key
(block indices aside), and ``make_state_dict.py`` from the same folder writes the ``.pth`` files
(``{'trainer': {module: state_dict}}``, as the official checkpoints).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

VARSR_PATCH_NUMS = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)  # 512 px (arg_util's default pn)
DEPTHS = {"d16": 16, "d20": 20, "d24": 24}


def golden_dir() -> Path:
    return Path(os.environ.get("ALIGNVAR_SHARED", "../shared")) / "golden" / "varsr"


def import_official(official: Path):
    """Put the checkout on ``sys.path`` with ``Tensor.cuda`` as the identity; returns the ``models`` package."""
    import torch

    official = Path(official).resolve()
    if not (official / "models" / "var.py").is_file():
        raise SystemExit(f"{official}: not a checkout of qyp2000/VARSR (models/var.py missing)")
    if not torch.cuda.is_available():  # the official code's CUDA-only calls, on CPU
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
    sys.path.insert(0, str(official))
    import models  # noqa: PLC0415 - the official package, importable only now

    return models


def build_official(official: Path, arch: str, device: str = "cpu", init: bool = True):
    """(vqvae, var) as ``test_varsr.py`` builds them (d16/d24, 2 classes, 512 px schedule); ``init=False`` skips
    ``init_weights`` (the tensors are then allocated but never written: for key lists and loading)."""
    import contextlib
    import io

    models = import_official(official)
    depth = DEPTHS[arch]
    if not init:
        models.VAR_RoPE.init_weights = lambda self, *args, **kwargs: None
    with contextlib.redirect_stdout(io.StringIO()):  # its init prints
        return models.build_var(
            V=4096,
            Cvae=32,
            ch=160,
            share_quant_resi=4,
            controlnet_depth=depth,
            device=device,
            patch_nums=VARSR_PATCH_NUMS,
            control_patch_nums=VARSR_PATCH_NUMS,
            num_classes=2,
            depth=depth,
            shared_aln=False,
            attn_l2_norm=True,
            flash_if_available=False,
            fused_if_available=False,
            init_adaln=0.5,
            init_adaln_gamma=1e-5,
            init_head=0.02,
            init_std=-1,
        )


def _golden_rules(path: Path) -> dict[str, str]:
    rules = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        _, key, _, _, init = line.split("\t")
        rules[re.sub(r"\.\d+\.", ".N.", key)] = init
    return rules


def _key_lines(module: str, state: dict[str, Any], rules: dict[str, str], arch_note: str) -> str:
    import torch

    pn = "_".join(str(p) for p in VARSR_PATCH_NUMS)
    out = [f"# {module} of official VARSR {arch_note}: keys from the official classes"]
    out.append("#module\tkey\tshape\tdtype\tinit")
    C = None
    for key, t in state.items():
        if key == "pos_start":
            C = t.shape[-1]
        init = rules.get(re.sub(r"\.\d+\.", ".N.", key), "auto")
        if key == "pos_start":
            init = f"normal:{(1 / (3 * C)) ** 0.5:.6f}"
        elif key == "lvl_1L":
            init = f"lvl_1L:{pn}"
        elif key == "attn_bias_for_masking":
            init = f"attn_mask:{pn}"
        dtype = "int64" if t.dtype == torch.int64 else "float32"
        out.append(f"{module}\t{key}\t{','.join(str(s) for s in t.shape)}\t{dtype}\t{init}")
    return "\n".join(out) + "\n"


def write_key_lists(official: Path, arch: str, folder: Path) -> tuple[Path, Path]:
    """KEYS.tsv files of the official ``VAR_RoPE`` and ``VQVAE`` for ``arch`` (run in a throwaway process: the
    uninitialised model's pages are allocated, mostly never touched)."""
    vae, var = build_official(official, arch, init=False)
    gold = golden_dir()
    var_keys = folder / f"keys_var_{arch}.tsv"
    vae_keys = folder / "keys_vqvae_ch160.tsv"
    var_keys.write_text(_key_lines("var_wo_ddp", var.state_dict(), _golden_rules(gold / "keys_var_d2.tsv"), arch))
    vae_keys.write_text(_key_lines("vae_local", vae.state_dict(), _golden_rules(gold / "keys_vqvae.tsv"), "ch160"))
    return var_keys, vae_keys


def official_checkpoints(official: Path, arch: str, folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """``folder/VARSR_<arch>.pth`` and ``folder/VQVAE.pth``: official layout, random weights; written once."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    var_pth, vae_pth = folder / f"VARSR_{arch}_random.pth", folder / "VQVAE_random.pth"
    if var_pth.is_file() and vae_pth.is_file():
        return var_pth, vae_pth
    here = Path(__file__).resolve()
    code = (
        f"import sys; sys.path.insert(0, {str(here.parent)!r}); import _official as O; from pathlib import Path; "
        f"O.write_key_lists(Path({str(official)!r}), {arch!r}, Path({str(folder)!r}))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    make = golden_dir() / "make_state_dict.py"
    for keys, out in ((folder / f"keys_var_{arch}.tsv", var_pth), (folder / "keys_vqvae_ch160.tsv", vae_pth)):
        if not out.is_file():
            tmp = out.with_suffix(".tmp.pth")
            subprocess.run([sys.executable, str(make), str(keys), str(seed), str(tmp)], check=True)
            tmp.replace(out)  # atomic: a half-written checkpoint is never picked up
    return var_pth, vae_pth
