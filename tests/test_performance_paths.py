"""The performance paths of AlignVAR inference and training give the same results as the plain ones.

Tiny architecture, CPU, float32, no timing asserts (timings live in benchmarks/ and docs/PERFORMANCE.md). Random
weights are fine: these are structural equalities, not quality numbers. Tokens, cache contents and the
checkpointed forward are compared exactly; continuous outputs that only differ in float32 summation order (other
GEMM shapes) get a bound argued in each test.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import methods.alignvar.transformer as generation_mod
from harness.core.mapping import ConfigError, from_dict
from methods.alignvar.blocks import KVCache
from methods.alignvar.configs import ARCHS, AlignVARConfig
from methods.alignvar.hcc import alignvar_losses
from methods.alignvar.model import AlignVAR, autocast_for
from methods.alignvar.refiner_diffusion import DiffusionSchedule
from methods.alignvar.sampling import sample_logits, split_generators
from methods.alignvar.scales import ScaleSchedule
from tests.tiny_models import make_tiny


@pytest.fixture(scope="module")
def tiny() -> AlignVAR:
    return make_tiny()


def _lr(astronaut: torch.Tensor, side: int, batch: int = 2) -> torch.Tensor:
    """Different real crops per image, (B, 3, side, side) in [0, 1]."""
    crops = [astronaut[:, 90 * i + 40 : 90 * i + 296, 100 + 50 * i : 356 + 50 * i] for i in range(batch)]
    return torch.stack([F.interpolate(c[None], size=(side, side), mode="area")[0] for c in crops])


# ----------------------------------------------------------------------------------------------- KV cache
def test_kv_cache_writes_in_place_into_one_preallocated_buffer() -> None:
    g = torch.Generator().manual_seed(0)
    k1, v1, k2, v2, k3, v3 = (torch.randn(2, 3, n, 4, generator=g) for n in (2, 2, 3, 3, 1, 1))
    cache = KVCache(num_layers=2, capacity=5)
    assert cache.layer(0) is None and cache.nbytes() == 0
    keys, values = cache.update(0, k1, v1)
    assert torch.equal(keys, k1) and torch.equal(values, v1)
    buffer = cache.buffer
    assert buffer.shape == (2, 2, 2, 5, 3, 4) and cache.nbytes() == 2 * 2 * (2 * 3 * 5 * 4) * 4  # token-major
    keys, values = cache.update(0, k2, v2)
    assert keys.data_ptr() == buffer.data_ptr() and cache.buffer is buffer  # views: no cat, no re-allocation
    assert torch.equal(keys, torch.cat([k1, k2], 2)) and torch.equal(values, torch.cat([v1, v2], 2))
    assert cache.lengths == [5, 0] and cache.length == 5 and cache.layer(1)[0].shape == (2, 3, 0, 4)
    with pytest.raises(ValueError, match=r"KV cache holds \(B, H, D\) = \(2, 3, 4\) torch.float32; layer 1 sent"):
        cache.update(1, k1.double(), v1.double())
    cache.store = False  # the last scale: attended to, never written
    keys, values = cache.update(0, k3, v3)
    assert torch.equal(keys, torch.cat([k1, k2, k3], 2)) and torch.equal(values, torch.cat([v1, v2, v3], 2))
    assert cache.lengths[0] == 5
    cache.store = True
    with pytest.raises(ValueError, match=r"KV cache overflow at layer 0: 5 cached \+ 1 new > capacity 5"):
        cache.update(0, k3, v3)
    cache.clear()
    assert cache.buffer is None and cache.length == 0 and cache.nbytes() == 0


def test_generation_sizes_the_cache_to_the_second_to_last_scale(tiny, astronaut, monkeypatch) -> None:
    """Capacity = sequence minus the last scale, filled exactly, never written at the last scale, released;
    at step 0 the last block returns only the class-token row."""
    made: list[KVCache] = []

    class SpyCache(KVCache):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.filled, self.unstored_calls = 0, 0
            made.append(self)

        def update(self, layer, k, v):
            if not self.store:
                self.unstored_calls += 1
            out = super().update(layer, k, v)
            self.filled = max(self.filled, self.lengths[layer])
            return out

    monkeypatch.setattr(generation_mod, "KVCache", SpyCache)
    shapes: list[tuple[int, ...]] = []
    hook = tiny.transformer.blocks[-1].register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape)))
    try:
        lr = _lr(astronaut, 64) * 2 - 1
        tiny.generate(lr, use_refiner=False)
    finally:
        hook.remove()
    schedule = ScaleSchedule.for_size(64, 64)
    n_prefix = tiny.transformer.cfg.prefix_hw[0] * tiny.transformer.cfg.prefix_hw[1]
    total = n_prefix + 1 + sum(schedule.tokens_per_scale[1:])
    (cache,) = made
    assert cache.capacity == total - schedule.tokens_per_scale[-1] == cache.filled
    assert cache.unstored_calls == len(tiny.transformer.blocks)  # every layer attended once without writing
    assert cache.buffer is None  # released before the refiner / decoder
    width = tiny.transformer.cfg.width
    assert shapes[0] == (4, 1, width)  # step 0: class token only (2 images x 2 CFG branches)
    assert shapes[1:] == [(4, n, width) for n in schedule.tokens_per_scale[1:]]


def test_cached_generation_equals_the_reference_path(tiny, astronaut) -> None:
    """KV-cached sampling and the no-cache masked recompute draw the same tokens from the same logits."""
    lr = _lr(astronaut, 64) * 2 - 1
    seen: dict[bool, dict[int, torch.Tensor]] = {True: {}, False: {}}
    out = {}
    for kv in (True, False):

        def record(k, idx, logits, kv=kv):
            seen[kv][k] = logits.clone()
            return idx

        _, out[kv] = tiny.generate(
            lr,
            cfg=3.0,
            top_k=0,
            top_p=0.0,
            generator=torch.Generator().manual_seed(7),
            token_hook=record,
            return_tokens=True,
            kv_cache=kv,
        )
    tokens = torch.cat(out[True].tokens, 1)
    assert len(set(tokens.flatten().tolist())) > 20  # sampled, not a constant sequence
    for a, b in zip(out[True].tokens, out[False].tokens):
        assert torch.equal(a, b)
    for k in seen[True]:
        torch.testing.assert_close(seen[True][k], seen[False][k], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[True].f_hat, out[False].f_hat, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[True].refiner_z, out[False].refiner_z, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------- batching
def test_batched_upscale_equals_single_image_upscales(astronaut) -> None:
    """Two different images in one call == one call each: per-image generators for the sampled tokens, the
    random SCA maps and the refiner noise (the batch dimension only changes GEMM shapes).

    What is exact is compared exactly: the tokens of every scale (discrete draws from per-image streams).
    The images are continuous and only agree up to float32 reordering: a GEMM of another shape sums in
    another order, each product differing by a few ulps (2^-24 relative) that ~20 layers amplify to ~1e-5 on
    a [0, 1] image (seen 1.0e-5 on AVX2 and 1.2e-5 on AVX-512 kernels). The bound 2^-12 (1/16 of an 8-bit
    level) is far above that and far below what a wrong random stream does (> 1e-2, the negative control).
    """
    model = make_tiny("random", seed=3)
    lr = _lr(astronaut, 16)
    sampling = dict(top_k=0, top_p=0.0, cfg=4.0)
    lr_m11 = F.interpolate(lr, scale_factor=4, mode="bicubic", antialias=True).clamp(0, 1) * 2 - 1

    def gens(*seeds: int) -> list[torch.Generator] | torch.Generator:
        g = [torch.Generator().manual_seed(s) for s in seeds]
        return g[0] if len(g) == 1 else g

    _, batched = model.generate(lr_m11, generator=gens(11, 11), return_tokens=True, **sampling)
    singles = [model.generate(lr_m11[i : i + 1], generator=gens(11), return_tokens=True, **sampling)[1] for i in (0, 1)]
    for k, tokens in enumerate(batched.tokens):
        assert torch.equal(tokens, torch.cat([s.tokens[k] for s in singles])), f"scale {k}"

    tol = 2.0**-12
    out = model.upscale(lr, seed=11, **sampling)
    one_by_one = torch.cat([model.upscale(lr[i : i + 1], seed=11, **sampling) for i in range(2)])
    assert out.shape == (2, 3, 64, 64)
    assert (one_by_one[0] - one_by_one[1]).abs().mean() > 0.01  # two genuinely different outputs
    torch.testing.assert_close(out, one_by_one, atol=tol, rtol=0)
    other_seed = model.upscale(lr[1:], seed=12, **sampling)  # negative control: another stream, same image
    assert (other_seed - one_by_one[1:]).abs().max() > 1e-2 > tol


def test_per_image_generators_split_rows() -> None:
    g = [torch.Generator().manual_seed(s) for s in (1, 2)]
    with pytest.raises(ValueError, match="2 generators cannot split 3 rows into equal per-image groups"):
        split_generators(g, 3)
    assert split_generators(None, 4) == [(slice(0, 4), None)]
    logits = torch.randn(2, 5, 50, generator=torch.Generator().manual_seed(0))
    together = sample_logits(logits, top_k=0, generator=[torch.Generator().manual_seed(s) for s in (1, 2)])
    apart = [
        sample_logits(logits[i : i + 1], top_k=0, generator=torch.Generator().manual_seed(s))
        for i, s in ((0, 1), (1, 2))
    ]
    assert torch.equal(together, torch.cat(apart))


# ----------------------------------------------------------------------------------------------- options
def test_precision_option_is_validated_and_applied(tiny, astronaut) -> None:
    with pytest.raises(ValueError, match="unknown precision 'fp8'; valid choices: fp32, bf16, fp16"):
        AlignVARConfig(precision="fp8")
    with pytest.raises(ConfigError, match="precision"):
        from_dict(AlignVARConfig, {"precision": "half"}, source="exp.yaml")
    assert from_dict(AlignVARConfig, {"precision": "bf16"}).precision == "bf16"
    with pytest.raises(ValueError, match="precision fp16 needs a GPU; on CPU use fp32 \\(default\\) or bf16"):
        autocast_for("cpu", "fp16")
    lr = _lr(astronaut, 16, batch=1)
    with pytest.raises(ValueError, match="precision fp16 needs a GPU"):
        tiny.upscale(lr, precision="fp16")
    out = tiny.upscale(lr, precision="bf16")
    assert out.dtype == torch.float32 and out.shape == (1, 3, 64, 64) and 0 <= out.min() <= out.max() <= 1
    first: dict[str, torch.Tensor] = {}

    def record(k, idx, logits, name):
        first.setdefault(name, logits.clone())
        return idx

    lr_up = _lr(astronaut, 64, batch=1) * 2 - 1
    for name in ("fp32", "bf16"):
        hook = lambda k, i, lg, n=name: record(k, i, lg, n)  # noqa: E731
        tiny.generate(lr_up, use_refiner=False, precision=name, token_hook=hook)
    assert not torch.equal(first["bf16"], first["fp32"])  # autocast really ran the blocks in bf16 ...
    torch.testing.assert_close(first["bf16"], first["fp32"], atol=0.05, rtol=0.05)  # ... of the same model


def test_release_encoder_keeps_inference_and_refuses_encoding(astronaut, tmp_path) -> None:
    model = make_tiny()
    lr = _lr(astronaut, 16, batch=1)
    before = model.upscale(lr)
    n_before = sum(p.numel() for p in model.parameters())
    n_encoder = sum(p.numel() for p in model.vqvae.encoder.parameters())
    model.release_encoder()
    assert sum(p.numel() for p in model.parameters()) == n_before - n_encoder
    assert torch.equal(model.upscale(lr), before)
    with pytest.raises(RuntimeError, match="encoder was released"):
        model.vqvae.img_to_idx(lr * 2 - 1)
    with pytest.raises(ValueError, match="its encoder was released"):
        model.save(tmp_path / "m.safetensors")
    model.save(tmp_path / "t.safetensors", include_vqvae=False)  # the transformer alone is still savable


def test_grad_checkpointing_gives_the_same_loss_and_gradients(astronaut) -> None:
    """Recomputation in backward (with drop-path randomness replayed) changes neither loss nor gradients."""
    import dataclasses

    tcfg = dataclasses.replace(ARCHS["tiny"].transformer, drop_path=0.3)
    plain = make_tiny(transformer=tcfg).train()
    ckpt = make_tiny(transformer=tcfg, grad_checkpointing=True).train()
    ckpt.load_state_dict(plain.state_dict())
    assert ckpt.transformer.grad_checkpointing and not plain.transformer.grad_checkpointing
    hr = _lr(astronaut, 64) * 2 - 1
    lr_up = F.interpolate(F.interpolate(hr, size=(16, 16), mode="area"), size=(64, 64), mode="bicubic")
    label = torch.tensor([0, 1])
    calls = {"plain": 0, "ckpt": 0}
    results = {}
    for name, model in (("plain", plain), ("ckpt", ckpt)):
        hook = model.transformer.blocks[0].register_forward_pre_hook(
            lambda m, a, n=name: calls.__setitem__(n, calls[n] + 1)
        )
        torch.manual_seed(5)  # drop-path draws from the global RNG
        out = alignvar_losses(model, hr, lr_up, label, generator=torch.Generator().manual_seed(1))
        out.total.backward()
        hook.remove()
        grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        results[name] = (out.total.detach(), out.hcc.detach(), grads)
    assert calls == {"plain": 1, "ckpt": 2}  # the checkpointed block really ran again in backward
    assert torch.equal(results["plain"][0], results["ckpt"][0]) and torch.equal(results["plain"][1], results["ckpt"][1])
    g_plain, g_ckpt = results["plain"][2], results["ckpt"][2]
    assert g_plain.keys() == g_ckpt.keys() and any(k.startswith("transformer.blocks.") for k in g_plain)
    for k in g_plain:
        torch.testing.assert_close(g_ckpt[k], g_plain[k], atol=1e-6, rtol=1e-5, msg=k)


def test_diffusion_schedule_device_copies_are_cached() -> None:
    sched = DiffusionSchedule.cosine(1000, respacing="10")
    assert sched.to("cpu") is sched
    meta = sched.to("meta")
    assert meta is sched.to(torch.device("meta"))
    assert meta.alphas_cumprod.device.type == "meta" and meta.timestep_map.device.type == "meta"
    assert sched.alphas_cumprod.device.type == "cpu" and meta.num_timesteps == sched.num_timesteps == 10


def test_training_after_inference_in_one_process(astronaut) -> None:
    """Tables cached while upscaling under inference mode (RoPE, refiner schedule copies) must not be inference
    tensors: a checkpointed training step after an ``upscale`` in the same process (a notebook, the analyze
    stage) would otherwise fail with 'Inference tensors cannot be saved for backward'."""
    from methods.alignvar import rope

    rope._rope_table.cache_clear()
    model = make_tiny(grad_checkpointing=True)
    model.upscale(_lr(astronaut, 16))  # the first table of the 64 px schedule is built here, in inference mode
    cached = rope._rope_table.cache_info().currsize
    assert cached >= 1
    model.train()
    hr = _lr(astronaut, 64) * 2 - 1
    lr_up = F.interpolate(F.interpolate(hr, size=(16, 16), mode="area"), size=(64, 64), mode="bicubic")
    out = alignvar_losses(model, hr, lr_up, torch.tensor([0, 1]), generator=torch.Generator().manual_seed(1))
    out.total.backward()
    assert rope._rope_table.cache_info().hits >= 1  # the training step reused the table built in inference mode
    assert any(p.grad is not None for p in model.transformer.parameters())
