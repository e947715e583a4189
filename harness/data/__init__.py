"""Data: image I/O, paired / single-image / bundled datasets, and degradations (LR synthesis)."""
