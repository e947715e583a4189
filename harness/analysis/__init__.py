"""Analysis of VAR-style SR models: pure functions on tensors, plus thin adapters to capture them.

* ``attention``: token geometry of the multi-scale sequence, attention distance / mass within a radius per
  layer, head and scale, per-scale heatmaps, and ``AttentionRecorder`` (the protocol an attention module
  follows so that its exact attention probabilities can be captured for a sample of queries). It gathers
  ``attention_geometry``, ``attention_stats``, ``attention_capture`` and ``attention_tables``.
* ``accumulation``: per-scale latent / image errors of the accumulated reconstruction, teacher-forced vs
  free-running, and perturbation-injection curves (error at every later scale after a perturbation at
  scale j).
* ``sca_masks``: panels of SCA structure maps and gates per scale.
* ``options``: ``AnalysisOptions``, the experiment's ``analysis:`` block; ``stage``: the ``analyze`` stage;
  ``probes``: the adapters that run the model.

Nothing here imports the model; the model calls into these functions (or hands them tensors). Plotting lives
in ``reports.figures`` and ``harness.analysis.sca_masks``; this ``__init__`` imports nothing heavy.
"""
