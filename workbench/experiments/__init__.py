"""Training as experiments: hyperparameter sweeps, suggestions from history, lineage of runs."""
