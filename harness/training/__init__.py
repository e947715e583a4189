"""Training infrastructure shared by the trainers: optimiser/schedule, EMA, checkpoints, DDP, the loop."""
