"""Training randomness as pure functions of the seed and the position in training (so resumes are exact).

``mix_seed`` turns (seed, purpose, epoch/step, index/rank, ...) into a stable 63-bit seed; ``shard_indices``
gives a rank's image order for an epoch (``DistributedSampler`` semantics).
"""

from __future__ import annotations

import hashlib
import math

import torch

from harness.data.degradations.base import make_generator
from harness.data.pairing import DatasetError


def mix_seed(*parts: int | str) -> int:
    """A 63-bit seed from ``parts`` (stable across processes and Python versions, unlike ``hash``)."""
    text = ":".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)


def shard_indices(n: int, seed: int, epoch: int, rank: int, world_size: int, shuffle: bool = True) -> list[int]:
    """This rank's image indices for ``epoch`` (DistributedSampler semantics).

    A permutation seeded by (seed, epoch), padded to a multiple of ``world_size`` by repeating its head, then
    every ``world_size``-th element starting at ``rank``.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    if n < 1:
        raise DatasetError("the training set is empty")
    order = (
        torch.randperm(n, generator=make_generator(mix_seed(seed, "order", epoch))).tolist()
        if shuffle
        else list(range(n))
    )
    total = math.ceil(n / world_size) * world_size
    order = (order * math.ceil(total / n))[:total]
    return order[rank:total:world_size]
