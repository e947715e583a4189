"""Token sampling from logits: greedy / top-k / top-p / temperature with an explicit ``torch.Generator``.

Semantics follow VAR/VARSR's ``sample_with_top_k_top_p_`` (``helpers.py:6-19``):

* top-k (k > 0): keep the logits >= the k-th largest (ties at the threshold are kept);
* top-p (0 < p): sort ascending, drop the tokens whose cumulative probability is <= 1 - p, always keep the top
  one;
* then draw one sample from the softmax of what is left.

Additions: ``temperature`` divides the logits first (VARSR has none, i.e. 1.0); ``top_k == 1`` or
``temperature == 0`` is plain argmax, which is what the multinomial draw returns for a unique maximum, without
touching the generator (greedy decoding is then deterministic and needs no random state). The official test
uses ``top_k=1, top_p=0.75``: greedy.

Generators: one ``torch.Generator`` for the whole batch, or a sequence of them, one per image (the batch is split
into equal consecutive groups of rows): then an image's draws do not depend on what it is batched with, which
makes a batched ``upscale`` equal to one call per image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Generators = torch.Generator | Sequence[torch.Generator] | None


def split_generators(generator: Generators, rows: int) -> list[tuple[slice, torch.Generator | None]]:
    """(row slice, generator) pairs: the whole batch for one generator, equal consecutive groups for a list."""
    if generator is None or isinstance(generator, torch.Generator):
        return [(slice(0, rows), generator)]
    gens = list(generator)
    if not gens or rows % len(gens):
        raise ValueError(f"{len(gens)} generators cannot split {rows} rows into equal per-image groups")
    per = rows // len(gens)
    return [(slice(i * per, (i + 1) * per), g) for i, g in enumerate(gens)]


def cfg_combine(logits_cond: torch.Tensor, logits_neg: torch.Tensor, t: float, inplace: bool = False) -> torch.Tensor:
    """VARSR's image-based guidance: ``(1 + t) * l_cond - t * l_neg`` (t = cfg * k / (K - 1) at scale k).

    ``inplace`` overwrites both inputs (same arithmetic, no temporaries; for logits nobody else holds).
    """
    if inplace:
        return logits_cond.mul_(1 + t).sub_(logits_neg.mul_(t))
    return (1 + t) * logits_cond - t * logits_neg


def guidance_ramp(cfg: float, num_scales: int) -> list[float]:
    """Per-scale guidance t_k = cfg * k / (K - 1), k = 0..K-1 (0 at the first scale, cfg at the last)."""
    if num_scales == 1:
        return [float(cfg)]
    return [cfg * k / (num_scales - 1) for k in range(num_scales)]


def filter_top_k_top_p(logits: torch.Tensor, top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """A copy of ``logits`` (..., V) with the filtered-out entries set to -inf (see module docstring)."""
    logits = logits.clone()
    vocab = logits.shape[-1]
    if top_k > 0 and top_k < vocab:
        kth = logits.topk(top_k, dim=-1, largest=True, sorted=False).values.amin(dim=-1, keepdim=True)
        logits.masked_fill_(logits < kth, -torch.inf)
    if top_p > 0:
        sorted_logits, sorted_idx = logits.sort(dim=-1, descending=False)
        remove_sorted = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
        remove_sorted[..., -1:] = False
        remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
        logits.masked_fill_(remove, -torch.inf)
    return logits


def sample_logits(
    logits: torch.Tensor,
    top_k: int = 0,
    top_p: float = 0.0,
    temperature: float = 1.0,
    generator: Generators = None,
) -> torch.Tensor:
    """Sample one token per position: logits (..., V) float -> indices (...) int64.

    ``generator`` is only used when sampling is not greedy; one on another device (a CPU generator for CUDA
    logits) works, at the cost of a copy. A sequence of generators (one per image) splits dim 0.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if not 0.0 <= top_p <= 1.0:
        raise ValueError(f"top_p must be in [0, 1], got {top_p}")
    if top_k == 1 or temperature == 0:
        return logits.argmax(dim=-1)
    if generator is not None and not isinstance(generator, torch.Generator):
        parts = split_generators(generator, logits.shape[0])
        return torch.cat([sample_logits(logits[sl], top_k, top_p, temperature, g) for sl, g in parts])
    scaled = logits.float() / temperature if temperature != 1.0 else logits.float()
    filtered = filter_top_k_top_p(scaled, top_k, top_p)
    probs = filtered.softmax(dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    if generator is not None and generator.device != flat.device:  # e.g. a CPU generator for CUDA logits
        return (
            torch.multinomial(flat.to(generator.device), 1, generator=generator).to(flat.device).view(probs.shape[:-1])
        )
    return torch.multinomial(flat, num_samples=1, generator=generator).view(probs.shape[:-1])


def planted_token_hook(scale: int, fraction: float, vocab: int, seed: int = 0):
    """A ``token_hook`` (``VARTransformer.generate``) that plants a degradation of known size: at scale ``scale``
    (0-based) it replaces ``fraction`` of the positions (at least one) by uniformly random codes, the same
    positions and codes in every image (so an image's output does not depend on its batch), drawn from a
    generator seeded with ``seed`` and ``scale``. Other scales are untouched. For the instrument controls
    (``experiments/tiny_controls.yaml``): the benchmark should find the planted method worse, and its
    error-accumulation curve should depart from the clean one at ``scale``."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"planted fraction must be in (0, 1], got {fraction}")
    if scale < 0:
        raise ValueError(f"planted scale must be >= 0 (0-based), got {scale}")

    def hook(k: int, idx: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if k != scale:
            return idx
        g = torch.Generator().manual_seed(int(seed) * 7919 + k)
        n = idx.shape[-1]
        pos = torch.randperm(n, generator=g)[: max(1, round(fraction * n))]
        out = idx.clone()
        out[:, pos.to(idx.device)] = torch.randint(vocab, (len(pos),), generator=g).to(idx)
        return out

    return hook
