"""``run.py bench``: prepare (check paths, build and cross-check components), evaluate every method on every
dataset, write the run folder (``layout``), efficiency (Table 2) and regression checks against a reference run."""
