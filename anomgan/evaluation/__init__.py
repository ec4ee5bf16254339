"""Metrics on held-out anomalous classes, CSV reports, plots and benchmark protocols."""

from anomgan.evaluation.metrics import evaluate_scores, threshold_metrics

__all__ = ["evaluate_scores", "threshold_metrics"]
