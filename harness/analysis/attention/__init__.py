"""Attention distance of multi-scale (VAR/VARSR) transformers: token ``geometry``, pure ``stats`` on attention
probabilities, ``capture`` of exact probabilities from a running model, and ``tables`` (CSV I/O, comparisons)."""
