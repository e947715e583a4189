"""SR methods: AlignVAR/VARSR (``methods.alignvar``) and baseline adapters (``methods.baselines``)."""
