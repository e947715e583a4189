"""Pack the tiny ablation's trained checkpoints into the small files the demo ships (experiments/checkpoints/tiny).

Usage (``make demo-checkpoints`` runs the whole chain)::

    python run.py train experiments/tiny_tokenizer.yaml
    python run.py sweep experiments/tiny_ablation.yaml
    python tools/pack_demo_checkpoints.py runs/tiny_ablation experiments/checkpoints/tiny

For every finished cell of the sweep (``cells/*/train/model.safetensors``) it names the file after the SCA / HCC
settings stored in the checkpoint's metadata (``varsr``: SCA off and lambda 0, ``sca``, ``hcc``, ``sca_hcc``),
drops the VQ-VAE tensors (all four share one tokenizer, written once as ``tokenizer.safetensors``, float32)
and stores the transformer / SCA tensors in float16 (the loader casts them back to float32), keeping the
metadata. A sweep with ``sweep.seeds`` has one cell per arm and seed: ``--seed`` (default 0) picks the replicate
that ships (the cell folders named ``...,seed=N-<hash>``). ``MANIFEST.json`` lists every file with its sha256,
size and source cell. Four models and the tokenizer come to about 17 MB.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def arm_name(config: dict) -> str:
    """``varsr`` / ``sca`` / ``hcc`` / ``sca_hcc`` from a checkpoint's ``alignvar_config`` metadata."""
    sca = config.get("sca", {}).get("mask_input", "none") != "none"
    hcc = float(config.get("hcc", {}).get("lambda", 0.0)) > 0
    return {(False, False): "varsr", (True, False): "sca", (False, True): "hcc", (True, True): "sca_hcc"}[(sca, hcc)]


def cell_seed(cell: str) -> int | None:
    """The replicate seed in a sweep cell's folder name (``hcc.lambda=1.0,seed=2-1a2b3c4d`` -> 2), None without."""
    match = re.search(r"(?:^|,)seed=(\d+)-[0-9a-f]{8}$", cell)
    return None if match is None else int(match.group(1))


def pack(sweep_dir: Path, out: Path, seed: int = 0) -> dict[str, dict]:
    import torch
    from safetensors import safe_open

    from harness.core.atomic import write_json
    from harness.core.identity import file_sha256
    from methods.alignvar.weights import save_safetensors

    models = sorted(Path(sweep_dir).glob("cells/*/train/model.safetensors"))
    if not models:
        raise SystemExit(f"{sweep_dir}: no cells/*/train/model.safetensors (run the sweep first)")
    seeds = {p: cell_seed(p.parents[1].name) for p in models}
    if any(s is not None for s in seeds.values()):
        models = [p for p, s in seeds.items() if s == seed]
        if not models:
            raise SystemExit(f"{sweep_dir}: no finished cell of seed {seed}")
    manifest: dict[str, dict] = {}
    tokenizer = None
    for path in models:
        source = f"{Path(sweep_dir).name}/{path.relative_to(sweep_dir).as_posix()}"
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        name = arm_name(json.loads(meta["alignvar_config"]))
        if name in manifest:
            raise SystemExit(f"{source}: a second {name!r} cell (first: {manifest[name]['source']})")
        vq = {k[len("vqvae.") :]: v for k, v in tensors.items() if k.startswith("vqvae.")}
        if tokenizer is None:
            tokenizer = vq
            save_safetensors(vq, out / "tokenizer.safetensors", {"kind": "vqvae", "packed_from": source})
            manifest["tokenizer"] = {"source": source}
        elif any(not torch.equal(vq[k], tokenizer[k]) for k in tokenizer):
            raise SystemExit(f"{path}: its VQ-VAE differs from the first cell's; the cells must share one tokenizer")
        rest = {k: (v.half() if v.is_floating_point() else v) for k, v in tensors.items() if not k.startswith("vqvae.")}
        save_safetensors(rest, out / f"{name}.safetensors", {**meta, "packed_from": source, "dtype": "float16"})
        manifest[name] = {"source": source}
    for name, entry in manifest.items():
        file = out / f"{name}.safetensors"
        entry.update(file=file.name, bytes=file.stat().st_size, sha256=file_sha256(file))
    write_json(out / "MANIFEST.json", manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="the tiny_ablation sweep folder (runs/tiny_ablation)")
    parser.add_argument("out", type=Path, help="where the packed files go (experiments/checkpoints/tiny)")
    parser.add_argument("--seed", type=int, default=0, help="the replicate that ships, for a sweep with seeds")
    args = parser.parse_args(argv)
    manifest = pack(args.sweep_dir, args.out, args.seed)
    total = sum(e["bytes"] for e in manifest.values())
    for e in manifest.values():
        print(f"{e['file']:<24} {e['bytes'] / 1e6:6.2f} MB  {e['sha256'][:12]}  <- {e['source']}")
    print(f"total {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
