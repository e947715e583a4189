"""Degradations: HR batch -> LR batch, seeded. ``bicubic`` and the Real-ESRGAN presets are registered here."""
