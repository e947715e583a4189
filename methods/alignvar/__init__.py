"""AlignVAR / VARSR re-implementation: visual autoregressive x4 super-resolution.

Model core (part A): ``scales`` (token-grid schedule), ``vqvae`` + ``quantizer`` (multi-scale residual VQ-VAE
tokenizer), ``refiner`` (diffusion head for the last-scale residual), ``colorfix`` and ``checkpoint`` (safe
loading of the official ``VQVAE.pth`` / ``VARSR.pth`` files). Transformer and method wrapper: ``transformer``,
``model``, ``method``.

This package ``__init__`` deliberately imports nothing heavy; import the submodules you need.
"""
