"""Memory paths of inference: released training weights and copy-free checkpoint loading give the same results.

Tiny architecture, CPU, float32; random weights are fine (structural equalities, not quality numbers). The memory
figures themselves are measured by ``benchmarks/inference_components.py`` (docs/PERFORMANCE.md), not here.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from methods.adapters.alignvar import AlignVARMethodConfig, build_alignvar_method
from methods.alignvar.blocks import ADALN_RELEASED
from methods.alignvar.configs import ARCHS, AlignVARConfig, SCAConfig
from methods.alignvar.model import AlignVAR
from methods.alignvar.weights import CheckpointError, read_safetensors, without_init
from tests.test_performance_paths import _lr
from tests.tiny_models import make_tiny


def _lr_up(astronaut: torch.Tensor, batch: int) -> torch.Tensor:
    return F.interpolate(_lr(astronaut, 16, batch), size=(64, 64), mode="bicubic").clamp(0, 1) * 2 - 1


def _sampled(model: AlignVAR, lr_up: torch.Tensor, kv_cache: bool = True):
    gens = [torch.Generator().manual_seed(7 + i) for i in range(lr_up.shape[0])]
    img, gen = model.generate(
        lr_up, generator=gens if len(gens) > 1 else gens[0], top_k=40, top_p=0.95, return_tokens=True, kv_cache=kv_cache
    )
    return img, gen


# ------------------------------------------------------------------------------ released training weights
def test_released_adaln_gives_bit_identical_single_image_generation(astronaut) -> None:
    model = make_tiny()
    lr_up = _lr_up(astronaut, 1)
    before = {kv: _sampled(model, lr_up, kv) for kv in (True, False)}
    upscaled = model.upscale(_lr(astronaut, 16, 1))
    model.release_training_weights()
    assert model.transformer.adaln_frozen and model.training_weights_released
    for kv, (img, gen) in before.items():
        img2, gen2 = _sampled(model, lr_up, kv)
        assert all(torch.equal(a, b) for a, b in zip(gen.tokens, gen2.tokens))
        assert torch.equal(gen.f_hat, gen2.f_hat) and torch.equal(img, img2)
    assert torch.equal(model.upscale(_lr(astronaut, 16, 1)), upscaled)


def test_released_adaln_batches_match_up_to_gemm_rounding(astronaut) -> None:
    """A CFG batch of 2 images computes its AdaLN rows in a (4, C) product, the tables in a (2, C) one."""
    model = make_tiny()
    lr_up = _lr_up(astronaut, 2)
    img, gen = _sampled(model, lr_up)
    model.release_training_weights()
    img2, gen2 = _sampled(model, lr_up)
    assert all(torch.equal(a, b) for a, b in zip(gen.tokens, gen2.tokens))
    torch.testing.assert_close(img2, img, atol=1e-5, rtol=0)


def test_release_frees_the_projections_but_reports_the_full_model(astronaut, tmp_path) -> None:
    model = make_tiny()
    cfg = model.transformer.cfg
    C, D = cfg.width, cfg.depth
    counts = model.parameter_counts()
    n_before = sum(p.numel() for p in model.parameters())
    n_encoder = sum(p.numel() for p in model.vqvae.encoder.parameters())
    model.release_training_weights()
    adaln = D * (C * 6 * C + 6 * C) + (C * 2 * C + 2 * C)  # every block's Linear(C, 6C) and the head's Linear(C, 2C)
    assert sum(p.numel() for p in model.parameters()) == n_before - n_encoder - adaln
    assert model.parameter_counts() == counts  # Table 2 reports the model, not what inference keeps resident
    table = model.transformer.blocks[0].modulation_table
    assert table.shape == (cfg.num_classes, 1, 6, C) and "modulation_table" not in str(model.state_dict().keys())
    lr = _lr(astronaut, 16, 1)
    with pytest.raises(RuntimeError) as err:
        model.transformer(lr * 2 - 1, torch.tensor([0]), torch.zeros(1, 1, cfg.cvae))
    assert str(err.value) == ADALN_RELEASED
    with pytest.raises(ValueError, match=r"cannot save: the AdaLN projections were released"):
        model.save(tmp_path / "m.safetensors", include_vqvae=False)
    model.release_training_weights()  # idempotent
    assert model.parameter_counts() == counts


def test_released_tables_follow_the_model_to_another_dtype_under_autocast(astronaut) -> None:
    model = make_tiny()
    lr_up = _lr_up(astronaut, 1)
    ref = model.generate(lr_up, use_refiner=False, precision="bf16")
    model.release_training_weights()
    out = model.generate(lr_up, use_refiner=False, precision="bf16")
    torch.testing.assert_close(out, ref, atol=0.02, rtol=0)  # bf16 rows of the same projection


# ------------------------------------------------------------------------------ copy-free checkpoint loading
def test_read_safetensors_matches_the_library_with_separate_allocations(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    tensors = {
        "f32": torch.randn(3, 5, generator=g),
        "f16": torch.randn(7, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16(),
        "i64": torch.arange(5),
        "b": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
    }
    path = tmp_path / "t.safetensors"
    save_file(tensors, str(path), metadata={"k": "v"})
    ours, lib = read_safetensors(path), load_file(str(path))
    assert ours.keys() == lib.keys()
    for k, v in lib.items():
        assert ours[k].dtype == v.dtype and ours[k].shape == v.shape and torch.equal(ours[k], v), k
    ptrs = {t.untyped_storage().data_ptr() for k, t in ours.items() if t.numel()}
    assert len(ptrs) == sum(1 for t in ours.values() if t.numel())  # one allocation per tensor, freed on its own


def test_read_safetensors_rejects_damaged_files(tmp_path) -> None:
    path = tmp_path / "t.safetensors"
    save_file({"w": torch.ones(64)}, str(path))
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match=r"cut.safetensors: tensor 'w': byte range 0..256 does not fit \[64\]"):
        read_safetensors(tmp_path / "cut.safetensors")
    header = b'{"w": {"dtype": "F32", "shape": [4]}}'
    (tmp_path / "entry.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(16))
    with pytest.raises(CheckpointError, match=r"entry.safetensors: tensor 'w' has a malformed header entry"):
        read_safetensors(tmp_path / "entry.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(CheckpointError, match=r"junk.safetensors: not a readable safetensors file \(header length"):
        read_safetensors(tmp_path / "junk.safetensors")


def test_without_init_skips_weight_init_but_builds_buffers() -> None:
    t = torch.full((4,), 7.0)
    with without_init():
        assert torch.nn.init.normal_(t) is t and torch.nn.init.constant_(t, 0.0) is t
        assert torch.nn.init.kaiming_uniform_(t[None]).shape == (1, 4)
        assert torch.equal(t, torch.full((4,), 7.0))  # untouched
        garbage = torch.full((64,), 1e30)  # like never-written memory: far outside trunc_normal_'s bounds
        assert not torch.nn.init.trunc_normal_(garbage).any()  # no hook: runs, its fills write zeros, and ends
        zeros = torch.zeros(3)  # buffers are still computed
        lin = torch.nn.Linear(2, 2)
    assert torch.equal(zeros, torch.zeros(3)) and lin.weight.shape == (2, 2)
    torch.nn.init.zeros_(t)  # and init works again afterwards
    assert not t.any()


def test_from_pretrained_assigns_the_files_tensors_and_matches_a_copy_load(astronaut, tmp_path) -> None:
    src = make_tiny()
    path = src.save(tmp_path / "m.safetensors")
    loaded = AlignVAR.from_pretrained(path)
    assert not any(p.requires_grad for p in loaded.vqvae.parameters())  # the frozen tokenizer stays frozen
    assert all(p.requires_grad for p in loaded.transformer.parameters())
    for (k, a), (k2, b) in zip(src.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    lr = _lr(astronaut, 16, 1)
    assert torch.equal(loaded.upscale(lr), src.eval().upscale(lr))


def test_from_pretrained_casts_a_half_precision_file_to_the_models_float32(tmp_path) -> None:
    src = make_tiny()
    half = {k: v.half() if v.is_floating_point() else v for k, v in src.state_dict().items()}
    path = tmp_path / "half.safetensors"
    src.save(path)  # for the metadata (configs)
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
    save_file(half, str(path), metadata=meta)
    loaded = AlignVAR.from_pretrained(path)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    w = loaded.transformer.head.weight
    assert torch.equal(w, src.transformer.head.weight.half().float())


def test_varsr_file_into_an_sca_model_gets_a_real_fresh_gate(tmp_path) -> None:
    src = make_tiny(mask_input="none")
    path = src.save(tmp_path / "varsr_like.safetensors")
    model = AlignVAR.from_pretrained(path, config=AlignVARConfig(sca=SCAConfig("laplacian")))
    assert model.sca_untrained
    assert float(model.sca.mlp[2].bias.detach()) == SCAConfig().init_bias


def test_bench_method_releases_training_weights_unless_told_not_to(tmp_path) -> None:
    src = make_tiny()
    path = src.save(tmp_path / "m.safetensors")
    lean = build_alignvar_method(AlignVARMethodConfig(checkpoint=str(path)))
    assert lean.model.training_weights_released
    assert lean.parameter_counts() == src.parameter_counts()
    full = build_alignvar_method(AlignVARMethodConfig(checkpoint=str(path), inference_only=False))
    assert not full.model.training_weights_released and not full.model.transformer.adaln_frozen


def test_arch_table_is_unchanged() -> None:  # guards the numbers quoted in release_training_weights' docstring
    t = ARCHS["d24"].transformer
    adaln = t.depth * (t.width * 6 * t.width + 6 * t.width) + t.width * 2 * t.width + 2 * t.width
    assert adaln == 344_681_472


# ------------------------------------------------------------------------------ GPU-facing properties, on CPU
# aten ops that copy a value or a data-dependent size to the host: on CUDA each one stalls the GPU queue
HOST_READS = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2", "equal", "is_nonzero"}


def test_generation_never_reads_tensor_values_on_the_host(astronaut) -> None:
    """No ``.item()``/``bool(tensor)``/data-dependent shapes anywhere in generation (scale loop, sampling with
    top-k/top-p, SCA gate, refiner): the property that keeps a GPU busy without host-device syncs. Checked at
    the dispatcher, where every such read shows up as one of ``HOST_READS``, whatever Python code caused it."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class HostReads(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch signature
            name = func.overloadpacket.__name__
            if name in HOST_READS:
                self.seen.append(name)
            return func(*args, **(kwargs or {}))

    model = make_tiny().release_training_weights()
    lr_up = _lr_up(astronaut, 2)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    with torch.inference_mode(), HostReads() as mode:
        model.generate(lr_up, generator=gens, top_k=40, top_p=0.9, use_refiner=True)
    assert mode.seen == []
    with HostReads() as probe:  # the probe itself sees such reads
        bool(torch.ones(1))
    assert probe.seen == ["_local_scalar_dense"]


def test_compiled_blocks_trace_and_keep_results(astronaut, monkeypatch) -> None:
    """``compile: true`` compiles every block, the refiner MLP and the decoder in place. Traced here through
    dynamo + AOT autograd with the eager backend (inductor's C++ codegen takes minutes on CPU; the GPU run uses
    it): the in-place inference code must trace without errors and give the same images."""
    import torch._dynamo

    torch._dynamo.reset()
    original = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: original(self, backend="aot_eager", **kw))
    plain = make_tiny().release_training_weights()
    compiled = make_tiny(compile=True).release_training_weights()
    keys = list(compiled.state_dict())
    for side in (16, 24):  # a second size: new shapes for every compiled part
        lr = _lr(astronaut, side, 1)
        torch.testing.assert_close(compiled.upscale(lr), plain.upscale(lr), atol=1e-4, rtol=0)
    assert compiled._compiled and list(compiled.state_dict()) == keys  # compiled in place: same keys
    compiled_parts = [*compiled.transformer.blocks, compiled.refiner.net, compiled.vqvae.decoder]
    assert all(part._compiled_call_impl is not None for part in compiled_parts)
    torch._dynamo.reset()
