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


def threshold_metrics(target: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    """TPR, FPR, precision, F1 of ``score > threshold`` against ``target`` (1 = anomaly)."""
    pred = score > threshold
    tp = int(np.sum(pred & (target == 1)))
    fp = int(np.sum(pred & (target == 0)))
    fn = int(np.sum(~pred & (target == 1)))
    tn = int(np.sum(~pred & (target == 0)))
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
    normal = target == 0
    groups = [("all", np.ones(len(frame), bool))]
    labels = frame["label"].astype(str).to_numpy()
    for cls in pd.unique(labels[~normal]):
        groups.append((str(cls), normal | (labels == cls)))
    rows = []
    for name, mask in groups:
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
