"""Training: the FFNN and the baseline, fitting, run directories, metrics, evaluation and figures."""
