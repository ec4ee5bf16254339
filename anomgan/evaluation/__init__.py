"""Metrics on held-out anomalous classes and the plots beside the CSV reports."""

from anomgan.evaluation.metrics import evaluate_scores, threshold_metrics

__all__ = ["evaluate_scores", "threshold_metrics"]
