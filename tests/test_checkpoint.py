"""Checkpoint I/O: no code execution, official nesting, strict loading messages, safetensors round trip, and
architecture inference from tensor shapes."""

from __future__ import annotations

import pathlib

import pytest
import torch
from torch import nn

from methods.alignvar.configs import transformer_config_from_state_dict
from methods.alignvar.vqvae import VQVAE
from methods.alignvar.weights import (
    VAR_NESTING,
    VQVAE_NESTING,
    CheckpointError,
    infer_vqvae_config,
    load_strict,
    load_vqvae,
    read_state_dict,
    save_safetensors,
)


class _Evil:
    """Pickles to a call of Path.touch(marker): loading it with full unpickling would create the marker."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


class _Tiny(nn.Module):
    def __init__(self, out: int = 4, with_ema: bool = True) -> None:
        super().__init__()
        self.proj = nn.Linear(3, out)
        self.head = nn.Linear(out, 2)
        if with_ema:
            self.register_buffer("ema_vocab_hit_SV", torch.zeros(2, 5))


def test_malicious_pickle_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "VQVAE.pth"
    torch.save({"trainer": {"vae_local": {"w": torch.zeros(1)}}, "payload": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match=r"VQVAE\.pth: refusing to load: .*weights_only=True"):
        read_state_dict(path)
    assert not marker.exists()


def test_missing_file_names_path_and_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        read_state_dict(tmp_path / "VQVAE.pth")
    msg = str(info.value)
    assert str(tmp_path / "VQVAE.pth") in msg and "download VQVAE.pth" in msg and "--vqvae PATH" in msg
    with pytest.raises(FileNotFoundError, match="custom hint"):
        read_state_dict(tmp_path / "x.safetensors", hint="custom hint")


def test_official_nesting_and_prefix_stripping(tmp_path):
    a, b = torch.arange(3.0), torch.ones(2, 2)
    torch.save({"trainer": {"vae_local": {"module.w": a, "_orig_mod.module.v": b}, "epoch": 3}}, tmp_path / "v.pth")
    sd = read_state_dict(tmp_path / "v.pth")
    assert list(sd) == ["w", "v"] and torch.equal(sd["w"], a) and torch.equal(sd["v"], b)

    both = {"trainer": {"vae_local": {"w": a}, "var_wo_ddp": {"x": b}}}
    torch.save(both, tmp_path / "both.pth")
    with pytest.raises(CheckpointError, match="holds both .* pass nested=VQVAE_NESTING or nested=VAR_NESTING"):
        read_state_dict(tmp_path / "both.pth")
    assert list(read_state_dict(tmp_path / "both.pth", nested=VAR_NESTING)) == ["x"]
    assert list(read_state_dict(tmp_path / "both.pth", nested=VQVAE_NESTING)) == ["w"]
    with pytest.raises(
        CheckpointError, match=r"no key 'ema' at \['trainer'\]; available: \['vae_local', 'var_wo_ddp'\]"
    ):
        read_state_dict(tmp_path / "both.pth", nested=("trainer", "ema"))

    torch.save({"state_dict": {"w": a}}, tmp_path / "plain.ckpt")
    assert list(read_state_dict(tmp_path / "plain.ckpt")) == ["w"]
    (tmp_path / "w.npy").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"unknown checkpoint format '\.npy'"):
        read_state_dict(tmp_path / "w.npy")


def test_wrong_architecture_names_first_mismatching_key(tmp_path):
    sd = _Tiny(out=5).state_dict()
    with pytest.raises(CheckpointError) as info:
        load_strict(_Tiny(out=4), sd, "tiny.pth")
    assert str(info.value) == "tiny.pth: key 'proj.weight' has shape (5,3) in the checkpoint but (4,3) in the model"


def test_missing_and_unexpected_keys_are_listed():
    sd = _Tiny().state_dict()
    sd.pop("head.bias")
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        load_strict(_Tiny(), sd, "tiny.pth")
    assert str(info.value) == (
        "tiny.pth: checkpoint does not match the _Tiny architecture; 1 key(s) missing from the checkpoint: "
        "'head.bias'; 1 unexpected key(s) in the checkpoint: 'extra.weight'"
    )


def test_optional_buffers_may_be_absent_on_either_side():
    src = _Tiny()
    with torch.no_grad():
        src.proj.weight.fill_(0.5)
    sd = {k: v for k, v in src.state_dict().items() if k != "ema_vocab_hit_SV"}
    dst = _Tiny()
    dst.ema_vocab_hit_SV.fill_(7.0)
    report = load_strict(dst, sd, "no_ema.pth")
    assert report.kept_model_buffers == ["ema_vocab_hit_SV"] and report.loaded == 4
    assert torch.equal(dst.proj.weight, src.proj.weight) and float(dst.ema_vocab_hit_SV[0, 0]) == 7.0
    # present in the checkpoint, absent from the model (e.g. a derived mask buffer): ignored
    sd2 = dict(src.state_dict(), **{"attn_bias_for_masking": torch.zeros(1, 1, 3, 3)})
    report2 = load_strict(_Tiny(with_ema=False), sd2, "with_extra.pth")
    assert sorted(report2.ignored_checkpoint_buffers) == ["attn_bias_for_masking", "ema_vocab_hit_SV"]


def test_safetensors_round_trip_is_atomic_and_keeps_metadata(tmp_path):
    from safetensors import safe_open

    model = _Tiny()
    path = tmp_path / "sub" / "tiny.safetensors"
    save_safetensors(model, path, metadata={"format": "pt", "source": "unit-test"})
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.safetensors"]  # no temp files left
    sd = read_state_dict(path)
    assert sorted(sd) == sorted(model.state_dict())  # safetensors stores keys sorted, not in module order
    for k, v in model.state_dict().items():
        assert torch.equal(sd[k], v)
    with safe_open(str(path), framework="pt") as fh:
        assert fh.metadata() == {"format": "pt", "source": "unit-test"}
    with pytest.raises(TypeError, match="metadata must map str to str"):
        save_safetensors(model, tmp_path / "bad.safetensors", metadata={"epoch": 3})
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="broken.safetensors: not a readable safetensors file"):
        read_state_dict(tmp_path / "broken.safetensors")


def test_infer_vqvae_config_and_from_state_dict_round_trip(tmp_path):
    cfg = dict(vocab_size=512, z_channels=16, ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, share_quant_resi=4)
    vae = VQVAE(**cfg, ema_scales=7)
    inferred = infer_vqvae_config(vae.state_dict())
    assert inferred == dict(cfg, ema_scales=7)
    path = tmp_path / "vae.safetensors"
    save_safetensors(vae, path, metadata={})
    loaded = load_vqvae(read_state_dict(path), source=str(path))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), vae.encode(x))
    sd = vae.state_dict()
    sd.pop("quantize.ema_vocab_hit_SV")  # checkpoints without EMA statistics still load
    load_vqvae(sd, source="no_ema")
    with pytest.raises(CheckpointError, match="bad.pth: key 'quantize.embedding.weight' not found"):
        load_vqvae({"x": torch.zeros(1)}, source="bad.pth")


def test_transformer_config_from_golden_key_shapes(golden_dir):
    sd = {}
    for line in (golden_dir / "keys_var_d2.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            _, key, shape, dtype, _ = line.split("\t")
            dims = tuple(int(s) for s in shape.split(",") if s)
            sd[key] = torch.empty(dims, dtype=getattr(torch, dtype), device="meta")
    cfg = transformer_config_from_state_dict(sd, source="keys_var_d2.tsv")
    assert (cfg.depth, cfg.width, cfg.heads, cfg.num_classes, cfg.vocab, cfg.cvae) == (2, 128, 2, 2, 4096, 32)
    assert (cfg.image_size, cfg.num_levels, cfg.stem_channels) == (512, 10, (32, 128, 256, 512, 1536))
    assert (cfg.with_refiner, cfg.refiner_width, cfg.refiner_depth, cfg.mlp_ratio) == (True, 1024, 6, 4.0)
