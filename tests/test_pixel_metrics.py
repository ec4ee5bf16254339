"""Pixel ROC-AUC and AUPRO against hand-computed values and a brute-force threshold sweep."""

import numpy as np
import pytest
from scipy.ndimage import label

from anomgan.evaluation.pixel import aupro, pixel_roc_auc, pro_curve


def _brute_pro(maps, masks, thresholds):
    """Per threshold: (fpr, mean overlap of every 8-connected region) by direct counting."""
    points = []
    for t in thresholds:
        ok_hit = ok_all = 0
        overlaps = []
        for a, m in zip(maps, masks):
            regions, n = label(m > 0, structure=np.ones((3, 3)))
            ok_hit += int(((a >= t) & (regions == 0)).sum())
            ok_all += int((regions == 0).sum())
            overlaps += [float((a[regions == k] >= t).mean()) for k in range(1, n + 1)]
        points.append((ok_hit / ok_all, float(np.mean(overlaps))))
    return points


def test_pro_and_aupro_by_hand():
    # image 1: a 2-pixel region scored 0.9 / 0.5; image 2: a 1-pixel region scored 0.7; defect-free pixels 0.1..0.6
    a1 = np.array([[0.9, 0.5, 0.1], [0.2, 0.3, 0.6]])
    m1 = np.array([[1, 1, 0], [0, 0, 0]])
    a2 = np.array([[0.7, 0.4], [0.15, 0.25]])
    m2 = np.array([[1, 0], [0, 0]])
    fpr, pro = pro_curve([a1, a2], [m1, m2])
    # thresholds from the top: 0.9 -> region A half (pro 0.25), 0.7 -> region B whole (0.75), 0.6 -> first fp (1/7)
    np.testing.assert_allclose(fpr[:5], [0, 0, 0, 1 / 7, 1 / 7])
    np.testing.assert_allclose(pro[:5], [0, 0.25, 0.75, 0.75, 1.0])
    # area up to fpr 0.3: [0, 1/7] at pro 0.75 (jump to 1 at 1/7), then pro 1 up to 0.3
    want = (0.75 * (1 / 7) + 1.0 * (0.3 - 1 / 7)) / 0.3
    assert aupro([a1, a2], [m1, m2]) == pytest.approx(want)
    # pixel ROC-AUC: 3 defect pixels (0.9, 0.5, 0.7) against 7 clean ones; 0.5 loses to 0.6 only
    assert pixel_roc_auc([a1, a2], [m1, m2]) == pytest.approx(1 - 1 / 21)


def test_pro_curve_matches_a_threshold_sweep_on_random_maps():
    rng = np.random.default_rng(0)
    maps, masks = [], []
    for h, w in ((12, 9), (7, 15), (10, 10)):  # images of different sizes
        m = np.zeros((h, w), int)
        m[2:5, 1:4] = 1
        m[6:, -3:] = 1  # two regions, one touching the border
        maps.append(rng.random((h, w)) + 0.6 * m)
        masks.append(m)
    fpr, pro = pro_curve(maps, masks)
    scores = np.unique(np.concatenate([a.ravel() for a in maps]))[::-1]
    brute = _brute_pro(maps, masks, scores)
    np.testing.assert_allclose(fpr[1:-1], [p[0] for p in brute], atol=1e-12)
    np.testing.assert_allclose(pro[1:-1], [p[1] for p in brute], atol=1e-12)
    perfect = [m * 2.0 + 0.5 for m in masks]
    assert aupro(perfect, masks) == pytest.approx(1.0)
    assert pixel_roc_auc(perfect, masks) == 1.0


def test_pixel_metrics_refuse_mismatched_inputs():
    with pytest.raises(ValueError, match="same size"):
        pixel_roc_auc([np.zeros((2, 2))], [np.zeros((3, 2))])
    with pytest.raises(ValueError, match="defect region"):
        aupro([np.zeros((2, 2))], [np.zeros((2, 2))])
    assert np.isnan(pixel_roc_auc([np.zeros((2, 2))], [np.zeros((2, 2))]))
