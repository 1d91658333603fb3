"""Choosing the best model: hyperparameter sweeps."""
