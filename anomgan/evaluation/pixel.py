"""Pixel metrics of anomaly maps against defect masks: pixel ROC-AUC and AUPRO (MVTec AD's per-region overlap).

Maps follow ``anomaly_score``'s direction (higher = more anomalous); masks are 1 on defect pixels. Both come as
lists of (H_i, W_i) arrays, one per image, sizes may differ between images (each map at its image's size).

AUPRO (Bergmann et al., "The MVTec Anomaly Detection Dataset", IJCV 2021): for every threshold, the PRO is the
mean over all connected defect regions (8-connectivity, across the whole test set) of the share of the region's
pixels scored above the threshold; the false-positive rate is the share of defect-free pixels (of every image)
scored above it. AUPRO is the area under PRO(FPR) for FPR in [0, ``max_fpr``] (0.3), divided by ``max_fpr``,
so 1 is perfect. Computed exactly by sorting every pixel once, as the reference implementation does.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

MAX_FPR = 0.3  # MVTec AD's integration limit for AUPRO


def _flat(maps: list, masks: list) -> tuple[np.ndarray, np.ndarray]:
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} anomaly maps but {len(masks)} masks")
    for i, (a, m) in enumerate(zip(maps, masks)):
        if np.shape(a) != np.shape(m):
            raise ValueError(f"map {i} is {np.shape(a)}, its mask {np.shape(m)}: they must have the same size")
    scores = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in maps])
    truth = np.concatenate([(np.asarray(m) > 0).ravel() for m in masks])
    return scores, truth


def pixel_roc_auc(maps: list, masks: list) -> float:
    """ROC-AUC of every pixel's map value against its mask value (NaN without both kinds of pixel)."""
    scores, truth = _flat(maps, masks)
    if truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth, scores))


def pro_curve(maps: list, masks: list) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, pro) at every distinct threshold, from (0, 0) to (1, 1), both non-decreasing."""
    from scipy.ndimage import label

    scores, _ = _flat(maps, masks)
    fp_step, pro_step = [], []
    n_ok, n_regions = 0, 0
    for m in masks:
        regions, n = label(np.asarray(m) > 0, structure=np.ones((3, 3), dtype=int))
        ok = regions == 0
        fp_step.append(ok.ravel().astype(np.float64))
        sizes = np.bincount(regions.ravel(), minlength=n + 1).astype(np.float64)
        weight = np.where(ok, 0.0, 1.0 / np.maximum(sizes[regions], 1.0))  # each region sums to 1
        pro_step.append(weight.ravel())
        n_ok += int(ok.sum())
        n_regions += n
    if n_regions == 0 or n_ok == 0:
        raise ValueError("AUPRO needs at least one defect region and one defect-free pixel")
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    fpr = np.cumsum(np.concatenate(fp_step)[order]) / n_ok
    pro = np.cumsum(np.concatenate(pro_step)[order]) / n_regions
    last_of_tie = np.append(np.diff(s) != 0, True)  # pixels with one score pass the threshold together
    fpr, pro = np.clip(fpr[last_of_tie], 0, 1), np.clip(pro[last_of_tie], 0, 1)
    return np.concatenate([[0.0], fpr, [1.0]]), np.concatenate([[0.0], pro, [1.0]])


def aupro(maps: list, masks: list, max_fpr: float = MAX_FPR) -> float:
    """Normalised area under the PRO curve up to ``max_fpr`` (1 = perfect, ~max_fpr / 2 = chance)."""
    fpr, pro = pro_curve(maps, masks)
    keep = fpr <= max_fpr
    x, y = fpr[keep], pro[keep]
    if x[-1] < max_fpr:  # close the area at max_fpr, interpolating between the points around it
        i = int(np.searchsorted(fpr, max_fpr))
        t = (max_fpr - fpr[i - 1]) / (fpr[i] - fpr[i - 1])
        x, y = np.append(x, max_fpr), np.append(y, pro[i - 1] + t * (pro[i] - pro[i - 1]))
    return float(np.trapezoid(y, x) / max_fpr)
