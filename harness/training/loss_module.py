"""Wrap "model + loss function" as one module so that DistributedDataParallel sees the whole loss computation.

DDP synchronises gradients only for computations that go through the wrapped module's ``forward``; a loss that
calls sub-modules of the model directly would silently skip the all-reduce. ``LossModule.forward(batch)``
returns ``(loss, logs)``; its only child is ``model``, so state-dict keys are ``model.*``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class LossModule(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], tuple[torch.Tensor, dict]]):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        return self.loss_fn(self.model, batch)
