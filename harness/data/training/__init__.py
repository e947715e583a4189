"""Training data: HR sources, seeded crops and degradations, step-indexed device batches (``stream``)."""
