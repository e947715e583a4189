"""Step-indexed access to a ``TrainData`` stream, backed by DataLoader workers.

The training loop asks for "the batch of step s"; this keeps one epoch's loader iterator open and serves steps in
order from it (images decoded by workers), and re-opens the loader at the right position when asked for any
other step (a resumed run), so the batches are exactly those of an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from harness.data.training.stream import TrainBatch, TrainData


class StepBatches:
    def __init__(self, data: TrainData) -> None:
        self.data = data
        self._iter: Iterator[TrainBatch] | None = None
        self._next_step: int | None = None
        self._epoch_end: int | None = None

    def get(self, step: int, rank: int, world_size: int, device: torch.device) -> TrainBatch:
        if self.data.cfg.num_workers == 0:
            return self.data.batch_at(step, rank, world_size, device)
        if self._iter is None or step != self._next_step or step >= (self._epoch_end or 0):
            per_epoch = self.data.batches_per_epoch(world_size)
            epoch, position = divmod(step, per_epoch)
            self._iter = iter(self.data.loader(epoch, rank, world_size, device, start_batch=position))
            self._epoch_end = (epoch + 1) * per_epoch
        batch = next(self._iter)
        self._next_step = step + 1
        return batch
