"""Inference of the next-scale transformer: KV-cached autoregressive sampling with VARSR's image-based CFG.

``generate(model, lr, quantizer, ...)`` is ``VARTransformer.generate`` (bound there as a method); the training
forward and the parameters live in ``transformer.py``. How it is made fast (each step bit-identical to the plain
computation) is summarised in ``generate``'s docstring and docs/PERFORMANCE.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from methods.alignvar.blocks import KVCache
from methods.alignvar.sampling import Generators, cfg_combine, guidance_ramp, sample_logits
from methods.alignvar.scales import ScaleSchedule

if TYPE_CHECKING:
    from methods.alignvar.transformer import VARTransformer

# (scale k, sampled idx (B, n), guided logits (B, n, V)) -> the idx to use
TokenHook = Callable[[int, Tensor, Tensor], Tensor]
# (scale k, input tokens (B, n, Cvae)) -> SCA gate m (B, n, 1)
ScaGateFn = Callable[[int, Tensor], Tensor]


@dataclass
class Generation:
    """Result of ``VARTransformer.generate`` (latent space; decoding is the VQ-VAE's job).

    f_hat:        (B, Cvae, H, W) final latent (token sum plus the refiner residual when used).
    f_hat_tokens: (B, Cvae, H, W) the latent from the tokens alone (before the refiner).
    tokens:       per scale (B, h_k*w_k) int64.
    refiner_z:    (B, h_K*w_K, C) conditional-branch refiner condition
                  ``decoder_norm(h_last + word_embed(E[idx_K]))``.
    """

    f_hat: Tensor
    f_hat_tokens: Tensor
    tokens: list[Tensor] = field(default_factory=list)
    refiner_z: Tensor | None = None


def _step(
    model: VARTransformer,
    x: Tensor,
    cond: Tensor,
    mods: list[Tensor],
    rope: Tensor,
    cache: KVCache,
    tail: int | None = None,
) -> Tensor:
    """All blocks on the new tokens x (B', n, C) with the KV cache; ``tail``: rows the last block returns."""
    last = len(model.blocks) - 1
    for i, block in enumerate(model.blocks):
        x = block(x, cond, rope, None, cache, i, tail if i == last else None, mods[i])
    return x


def _recompute(
    model: VARTransformer, seq: list[Tensor], cond: Tensor, mods: list[Tensor], rope: Tensor, mask: Tensor, n: int
) -> Tensor:
    """Reference step: the whole sequence so far through all blocks with the block-causal mask (no cache);
    returns the last ``n`` rows."""
    x = torch.cat(seq, dim=1)
    L = x.shape[1]
    rope, mask = rope[:, :L], mask[:L, :L]
    for block, mod in zip(model.blocks, mods):
        x = block(x, cond, rope, mask, mod=mod)
    return x[:, -n:]


@torch.no_grad()
def generate(
    model: VARTransformer,
    lr: Tensor,
    quantizer: nn.Module,
    schedule: ScaleSchedule | None = None,
    *,
    cfg: float = 6.0,
    top_k: int = 1,
    top_p: float = 0.75,
    temperature: float = 1.0,
    generator: Generators = None,
    label: int = 0,
    neg_label: int = 1,
    use_refiner: bool = True,
    refiner_temperature: float = 1.0,
    sca: ScaGateFn | None = None,
    token_hook: TokenHook | None = None,
    kv_cache: bool = True,
) -> Generation:
    """KV-cached next-scale sampling with VARSR's image-based CFG.

    Both CFG branches run in one batch of 2B (shared LR prefix; class token and AdaLN condition ``label``
    vs ``neg_label``); at scale k the logits are ``(1 + t_k) l_cond - t_k l_neg`` with
    ``t_k = cfg * k / (K - 1)`` (``cfg == 0`` skips the negative branch). Tokens are drawn by
    ``sample_logits`` (top_k=1: argmax) from ``generator`` (one, or one per image: then an image's tokens
    and refiner noise do not depend on the rest of the batch); ``token_hook(k, idx, logits)`` may replace
    them (used to force reference tokens at near-ties). ``quantizer`` (``MultiScaleQuantizer``) turns
    tokens into the next input. ``sca(k, tokens)`` gates the scale-k input tokens (``None``: plain
    VARSR). With ``use_refiner`` the diffusion refiner adds the last-scale continuous residual, sampled
    with guidance t_{K-1} from ``generator``.

    Performance (docs/PERFORMANCE.md): the KV cache is one preallocated buffer written in place, sized up to
    the second-to-last scale (the last scale's keys are never attended to later, so they are not written)
    and released before the refiner runs; the AdaLN parameters of every block (a function of the class
    only) are computed once, not re-read from the weights at every scale; at step 0 only the class-token
    row of the last block is computed (the only logits used); without autograd the blocks update their
    temporaries in place; no host-device synchronisation inside the scale loop. All of this is
    bit-identical to the plain computation. ``kv_cache=False`` is the straightforward reference path
    (``generate_reference``): every scale recomputes the whole prefix with the block-causal mask; it
    yields the same tokens and is only for checking and benchmarking.
    """
    schedule = model.schedule_for(lr, schedule)
    B, K = lr.shape[0], schedule.num_scales
    guided = cfg > 0
    nb = 2 * B if guided else B
    labels = torch.full((B,), label, dtype=torch.long, device=lr.device)
    if guided:
        labels = torch.cat([labels, torch.full_like(labels, neg_label)])
    ctx, cond, n_prefix = model._context(lr, labels)
    rows = model._levels(schedule)
    lvl = model.lvl_embed.weight
    x = ctx.add_(lvl[rows[0]])
    rope = model.rope_for(schedule, lr.device)
    ramp = guidance_ramp(cfg, K)
    steps = [n_prefix + 1] + list(schedule.tokens_per_scale[1:])  # tokens fed at every step
    cache = KVCache(len(model.blocks), sum(steps) - steps[-1]) if kv_cache else None
    mask = None if kv_cache else model.block_causal_mask(schedule, n_prefix, lr.device)
    seq: list[Tensor] = []  # reference path: every input so far
    # AdaLN parameters depend on the class only: computed once (or read from the frozen per-class tables),
    # not re-read from the weights every scale
    mods, head_mod = model._modulations(labels, cond)
    f_hat = lvl.new_zeros(B, model.cfg.cvae, *schedule.latent_hw)
    tokens: list[Tensor] = []
    cur = 0
    hidden = x
    for k, hw in enumerate(schedule.patch_nums):
        n = x.shape[1]
        n_out = 1 if k == 0 else n  # step 0: only the class token's output is ever read
        if cache is not None:
            cache.store = k < K - 1  # nothing attends to the last scale's keys
            hidden = _step(model, x, cond, mods, rope[:, cur : cur + n], cache, tail=n_out if k == 0 else None)
        else:
            seq.append(x)
            hidden = _recompute(model, seq, cond, mods, rope, mask, n_out)
        cur += n
        logits = model.head_logits(hidden, cond, head_mod)
        if guided:
            logits = cfg_combine(logits[:B], logits[B:], ramp[k], inplace=True)
        idx = sample_logits(logits, top_k, top_p, temperature, generator)
        if token_hook is not None:
            idx = token_hook(k, idx, logits)
        tokens.append(idx)
        del logits  # not held into the next (larger) step
        f_hat, nxt = quantizer.next_ar_input(k, f_hat, quantizer.lookup(idx, hw), schedule)
        if nxt is None:
            break
        tok = nxt.flatten(2).transpose(1, 2)  # (B, n_{k+1}, Cvae)
        if sca is not None:
            tok = tok * (1 + sca(k + 1, tok))
        x = model.word_embed(tok) + lvl[rows[k + 1]]
        if guided:
            x = x.repeat(2, 1, 1)
    if cache is not None:
        cache.clear()  # the refiner and the decoder need the memory more
    del cache, seq, x, mods
    f_hat_tokens = f_hat
    # last block output at the positions that predicted scale K (the class token when K == 1)
    h_last = hidden[:, -schedule.tokens_per_scale[-1] :]
    z = model.decoder_norm(h_last + model.word_embed(quantizer.embedding(tokens[-1])).repeat(nb // B, 1, 1))
    if use_refiner:
        if model.diffloss is None:
            raise ValueError("use_refiner=True but this transformer has no diffusion refiner (diffloss)")
        delta = model.diffloss.sample(
            z.reshape(-1, z.shape[-1]),
            cfg=ramp[-1] if guided else None,
            temperature=refiner_temperature,
            generator=generator,
        )
        delta = delta[: B * z.shape[1]].reshape(B, z.shape[1], model.cfg.cvae)
        f_hat = f_hat + delta.transpose(1, 2).reshape(B, model.cfg.cvae, *schedule.latent_hw)
    return Generation(f_hat=f_hat, f_hat_tokens=f_hat_tokens, tokens=tokens, refiner_z=z[:B])
