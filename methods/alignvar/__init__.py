"""AlignVAR / VARSR re-implementation: visual autoregressive x4 super-resolution (the model core).

``from methods.alignvar import AlignVAR`` imports the model on first use; importing the package itself is
cheap. The submodules hold one concept each (``scales``, ``vqvae``, ``transformer``, ``sca``, ``hcc``, ...).
"""

from __future__ import annotations

from typing import Any

__all__ = ["AlignVAR"]


def __getattr__(name: str) -> Any:
    if name == "AlignVAR":
        from methods.alignvar.model import AlignVAR

        globals()[name] = AlignVAR
        return AlignVAR
    raise AttributeError(f"module 'methods.alignvar' has no attribute {name!r}")
