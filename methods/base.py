"""The one interface every SR method implements, so the runner treats all methods on equal terms."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class SRMethod:
    """A super-resolution method: a batch of LR images in [0, 1] -> SR images in [0, 1].

    ``upscale(lr, keys)`` takes ``lr`` of shape (B, 3, h, w), float32 in [0, 1] on ``self.device``, and the
    image keys (file stems) of the batch (used by adapters that look up precomputed outputs), and returns
    (B, 3, h*scale, w*scale) in [0, 1]. Subclasses set ``scale`` and may override ``to``/``parameter_counts``.
    """

    scale: int = 4
    inference_steps: int | None = None  # e.g. 10 for VAR (scales), 1 for feed-forward, None if unknown
    # True when the method returns results computed elsewhere (no meaningful latency / parameters here)
    precomputed: bool = False

    def __init__(self) -> None:
        self.device = torch.device("cpu")

    def to(self, device: torch.device | str) -> SRMethod:
        self.device = torch.device(device)
        for module in self.modules().values():
            module.to(self.device)
        return self

    def modules(self) -> dict[str, torch.nn.Module]:
        """Named torch modules (for ``to`` and per-component parameter counts); empty for non-networks."""
        return {}

    def for_dataset(self, name: str) -> SRMethod:
        """The method to check and run on dataset ``name`` (its name in the experiment and in the results).

        For the runner to call once per dataset, before ``check``/``upscale``; the default returns ``self``.
        Methods whose inputs differ per dataset (``output_folder`` with ``{dataset}`` in its path) return a
        view bound to that dataset, which shares the device and is not closed separately.
        """
        return self

    def parameter_counts(self) -> dict[str, int]:
        return {name: sum(p.numel() for p in m.parameters()) for name, m in self.modules().items()}

    def parameter_total(self) -> int:
        """Parameters of the method's networks, each tensor once (``modules()`` may overlap). Methods that free
        weights inference never reads override this to report the model they run (e.g. AlignVAR)."""
        seen: dict[int, int] = {}
        for module in self.modules().values():
            for p in module.parameters():
                seen[id(p)] = p.numel()
        return sum(seen.values())

    @torch.inference_mode()
    def upscale(self, lr: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (GPU memory, subprocesses)."""
