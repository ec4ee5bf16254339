"""Combining components into one ``anomaly_score`` and a threshold, from normal-validation data only.

Direction, fixed here once: higher ``anomaly_score`` = more anomalous.
The statistics come from the normal-validation split saved at training time, never from the batch
being scored, so a sample's score does not depend on its company.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anomgan.config import COMPONENTS, ScoreConfig
from anomgan.errors import RunError


@dataclass
class Calibration:
    """Component values of the normal-validation split for one inversion setting."""

    val_components: dict  # component name -> list of floats (normal-validation samples)

    def stats(self, name: str) -> tuple[float, float]:
        v = np.asarray(self.val_components[name], dtype=np.float64)
        std = float(v.std())
        return float(v.mean()), (std if std > 1e-12 else 1.0)

    def combine(self, components: dict, score: ScoreConfig) -> np.ndarray:
        """anogan: (1-lam)*residual + lam*feature_residual (paper); calibrated: weighted sum of z-scores."""
        if score.combination == "anogan":
            return (1.0 - score.lam) * np.asarray(components["residual"]) + score.lam * np.asarray(
                components["feature_residual"])
        total = sum(score.weights.get(c, 0.0) for c in COMPONENTS)
        out = np.zeros(len(components["residual"]), dtype=np.float64)
        for c in COMPONENTS:
            w = score.weights.get(c, 0.0)
            if w:
                if c not in components or c not in self.val_components:
                    raise RunError(f"score.weights gives '{c}' weight {w:g}, but this run has no {c} values (a run "
                                   f"saved before {c} existed, or with score.bank_size 0): set score.weights.{c} "
                                   f"to 0, retrain, or rebuild its bank with AnoGAN.fit_feature_bank")
                mean, std = self.stats(c)
                out += w * (np.asarray(components[c], dtype=np.float64) - mean) / std
        return out / total

    def threshold(self, score: ScoreConfig) -> float:
        """The ``threshold_quantile`` of normal-validation anomaly scores."""
        val = self.combine(self.val_components, score)
        return float(np.quantile(val, score.threshold_quantile))


def calibration_key(score: ScoreConfig, bank_tag: str = "") -> str:
    """Everything that changes component values (not weights or quantile, which apply afterwards).

    ``bank_tag`` names the ``feature_knn`` bank the values were measured against (see ``bank_fingerprint``), so
    a bank rebuilt in memory never reads or leaves values that belong to another bank.
    """
    knn = f"-k{score.knn_k}" + (f"-b{bank_tag}" if bank_tag else "")
    if score.method == "encoder":
        return f"encoder-{score.residual_norm}{knn}"
    if score.method == "hybrid":
        return f"hybrid-{score.refine_steps}-lr{score.lr:g}-lam{score.lam:g}-{score.residual_norm}{knn}"
    return f"iterative-{score.steps}-r{score.restarts}-lr{score.lr:g}-lam{score.lam:g}-{score.residual_norm}{knn}"
