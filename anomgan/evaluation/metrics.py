"""ROC-AUC / average precision per component and per held-out anomalous class (scikit-learn)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from anomgan.components import NAMES
from anomgan.errors import DataError

SCORE_COLUMNS = (*NAMES, "anomaly_score")


def score_columns(frame_or_dict) -> list[str]:
    """The SCORE_COLUMNS present, in registry order (a run computes only the components it weighs)."""
    return [c for c in SCORE_COLUMNS if c in frame_or_dict]


def confusion_counts(target: np.ndarray, flagged: np.ndarray) -> dict:
    """tp, fp, tn, fn of the ``flagged`` samples against ``target`` (1 = anomaly)."""
    flagged = np.asarray(flagged, dtype=bool)
    return {"tp": int(np.sum(flagged & (target == 1))), "fp": int(np.sum(flagged & (target == 0))),
            "tn": int(np.sum(~flagged & (target == 0))), "fn": int(np.sum(~flagged & (target == 1)))}


def held_out_groups(frame: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """(name, row mask) per evaluation group: ``all`` first, then each held-out class with the normal samples."""
    normal = frame["target"].to_numpy() == 0
    labels = frame["label"].astype(str).to_numpy()
    return [("all", np.ones(len(frame), bool))] + [(str(c), normal | (labels == c))
                                                  for c in pd.unique(labels[~normal])]


def anomalies_by_score(frame: pd.DataFrame) -> np.ndarray:
    """Row positions of the anomalous samples, highest anomaly_score first (ties in row order)."""
    anomalous = np.flatnonzero(frame["target"].to_numpy() == 1)
    return anomalous[np.argsort(-frame["anomaly_score"].to_numpy()[anomalous], kind="stable")]


def threshold_metrics(target: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    """TPR, FPR, precision, F1 of ``score > threshold`` against ``target`` (1 = anomaly)."""
    c = confusion_counts(target, score > threshold)
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    tpr = tp / (tp + fn) if tp + fn else float("nan")
    fpr = fp / (fp + tn) if fp + tn else float("nan")
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * precision * tpr / (precision + tpr) if precision + tpr else 0.0
    return {"tpr": tpr, "fpr": fpr, "precision": precision, "f1": f1}


def evaluate_scores(frame: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """``frame``: one row per test sample with ``target`` (1 = anomaly), ``label`` (class) and SCORE_COLUMNS.

    Returns one row per (anomalous class or 'all', component): counts, roc_auc, average_precision,
    and for ``anomaly_score`` the threshold metrics (NaN for raw components, which have no threshold).
    """
    target = frame["target"].to_numpy()
    if len(np.unique(target)) < 2:
        only = "normal" if target.size and target[0] == 0 else "anomalous"
        raise DataError(f"the test set holds only {only} samples ({len(target)}): ROC-AUC is undefined; "
                        f"evaluation needs both normal and anomalous samples")
    rows = []
    for name, mask in held_out_groups(frame):
        t = target[mask]
        for comp in score_columns(frame):
            s = frame[comp].to_numpy()[mask]
            row = {"anomalous_class": name, "component": comp, "n_normal": int((t == 0).sum()),
                   "n_anomalous": int((t == 1).sum()), "roc_auc": roc_auc_score(t, s),
                   "average_precision": average_precision_score(t, s)}
            if comp == "anomaly_score":
                row.update(threshold=threshold, **threshold_metrics(t, s, threshold))
            else:
                row.update(threshold=np.nan, tpr=np.nan, fpr=np.nan, precision=np.nan, f1=np.nan)
            rows.append(row)
    return pd.DataFrame(rows)
