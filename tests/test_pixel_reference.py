"""AUPRO and pixel ROC-AUC against the official MVTec AD evaluation code, re-implemented here as a test oracle.

Reference: MVTec's evaluation scripts for MVTec AD (Bergmann & Sattlegger, 2021, shipped with the dataset), read as
vendored in GitHub Hwa-Jong/MVTec_AD ``mvtec_ad_evaluation/pro_curve_util.py`` (``compute_pro``) and
``mvtec_ad_evaluation/evaluate_experiment.py`` (``calculate_au_pro_au_roc``: ``trapezoid(fprs, pros,
x_max=integration_limit) / integration_limit``), and TonyLinX/MediCLIP ``mvtec_ad_evaluation/generic_util.py``
(``trapezoid``). ``_mvtec_compute_pro`` / ``_mvtec_trapezoid`` below are short ports of those, written for this
test, keeping the reference's choices: 8-connected regions over the whole set, every pixel sorted once (descending),
only the last point of each run of tied scores kept, FPRs stored as float32, values clipped at 1, the curve framed by
(0, 0) and (1, 1), and the area closed at ``x_max`` by interpolating between the points around it. Two liberties: the
reference stacks maps with ``np.array(maps)`` (one size for all), the port concatenates raveled maps so images of
different sizes work too (same order, so same result for equal sizes); its non-finite filter and prints are left out.
"""

from bisect import bisect

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, label
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from anomgan.evaluation.pixel import aupro, pixel_roc_auc, pro_curve

# anomgan keeps FPRs in float64, the reference rounds them to float32 (at most 2**-25 ~ 3.0e-8 off below 1); otherwise
# both walk the same exactly sorted curve. Measured over every case and limit below: max |AUPRO difference| 1.6e-09
# (ties case, limit 0.05), max pointwise curve difference 3.0e-08 (float32 FPR rounding, nothing else). Tolerances:
# AUPRO 1e-8 (~6x the measured max), curve 1e-7 (~3x the float32 rounding bound). For scale, variants of the reference
# that get one rule wrong move AUPRO (limit 0.3) on these cases by: no interpolation at the limit >= 1.4e-5,
# FPR over all pixels >= 2.4e-2, 4-connected regions or unmerged ties 3.6e-3..3.5e-2 (ties and constant cases).
AUPRO_TOL = 1e-8
CURVE_TOL = 1e-7
LIMITS = (0.3, 0.05, 1.0)  # MVTec's default integration limit, a tight one, and the whole curve


def _mvtec_compute_pro(anomaly_maps, ground_truth_maps):
    """Port of MVTec AD's ``pro_curve_util.compute_pro``: (fprs, pros) at every distinct score, exactly."""
    structure = np.ones((3, 3), dtype=int)
    fp_changes, pro_changes = [], []
    num_ok_pixels = num_gt_regions = 0
    for gt_map in ground_truth_maps:
        labeled, n_components = label(gt_map, structure)
        num_gt_regions += n_components
        ok_mask = labeled == 0
        num_ok_pixels += int(ok_mask.sum())
        fp_changes.append(ok_mask.astype(np.uint32).ravel())  # each ok pixel adds one false positive
        pro_change = np.zeros(np.shape(gt_map), dtype=np.float64)
        for k in range(1, n_components + 1):
            region_mask = labeled == k
            pro_change[region_mask] = 1.0 / region_mask.sum()  # a whole region adds 1 to the PRO sum
        pro_changes.append(pro_change.ravel())
    scores = np.concatenate([np.asarray(a).ravel() for a in anomaly_maps])
    order = np.argsort(scores)[::-1]
    scores = scores[order]
    fprs = (np.cumsum(np.concatenate(fp_changes)[order]) / num_ok_pixels).astype(np.float32)
    pros = np.cumsum(np.concatenate(pro_changes)[order]) / num_gt_regions
    keep_mask = np.append(np.diff(scores) != 0, True)  # last point of each run of equal scores
    fprs, pros = np.minimum(fprs[keep_mask], 1.0), np.minimum(pros[keep_mask], 1.0)
    return np.concatenate(([0.0], fprs, [1.0])), np.concatenate(([0.0], pros, [1.0]))


def _mvtec_trapezoid(x, y, x_max):
    """Port of MVTec AD's ``generic_util.trapezoid``: trapezoidal area under y(x) for x in [x[0], x_max]."""
    x, y = np.asarray(x), np.asarray(y)
    correction = 0.0
    if x_max not in x:  # close the area at x_max with y interpolated between its neighbours
        ins = bisect(x, x_max)
        assert 0 < ins < len(x)
        y_interp = y[ins - 1] + (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1])
        correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
    keep = x <= x_max
    x, y = x[keep], y[keep]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction)


def _mvtec_au_pro(anomaly_maps, ground_truth_maps, integration_limit=0.3):
    """As ``evaluate_experiment.calculate_au_pro_au_roc`` does: area up to the limit, divided by the limit."""
    fprs, pros = _mvtec_compute_pro(anomaly_maps, ground_truth_maps)
    return _mvtec_trapezoid(fprs, pros, x_max=integration_limit) / integration_limit


def _blob_masks(rng, shapes, n_defective):
    """Masks with 1-3 random ellipses each (they may merge or touch the border); images past n_defective stay clean."""
    masks = []
    for i, (h, w) in enumerate(shapes):
        m = np.zeros((h, w), np.uint8)
        yy, xx = np.mgrid[:h, :w]
        for _ in range(rng.integers(1, 4) if i < n_defective else 0):
            cy, cx = rng.integers(0, h), rng.integers(0, w)
            ry, rx = rng.uniform(1.5, 9, size=2)
            m[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = 1
        masks.append(m)
    return masks


def _noisy_maps(rng, masks, strength):
    """Smoothed noise plus a blurred copy of the defects scaled by strength (larger = easier)."""
    return [
        gaussian_filter(rng.normal(size=m.shape), 2.0) * 3 + strength * gaussian_filter(m.astype(float), 1.5)
        for m in masks
    ]


def _blobs(seed, strength, n_defective=6):
    rng = np.random.default_rng(seed)
    masks = _blob_masks(rng, [(64, 64)] * 6, n_defective)
    return _noisy_maps(rng, masks, strength), masks


def _ties_and_constant_regions():
    """Maps quantised to 0.25 steps (many ties, some spanning defect and clean pixels), a constant block across a
    defect's edge, diagonal-only contacts (one region under 8-connectivity), 0/255 masks as PNGs give them."""
    rng = np.random.default_rng(7)
    masks = _blob_masks(rng, [(64, 64)] * 6, 6)
    masks[0][40:44, 40:44] = 1
    masks[0][44:48, 44:48] = 1  # touches the square above only at a corner
    masks[1][:] = 0
    masks[1][10, 10] = masks[1][11, 11] = masks[1][12, 12] = 1  # a 3-pixel diagonal line: one region
    maps = _noisy_maps(rng, masks, 1.5)
    maps = [np.round(a * 4) / 4 for a in maps]
    maps[2][20:40, 20:40] = 0.5  # constant over part of a defect and its surroundings
    return maps, [m * 255 for m in masks]


def _constant_maps():
    """No ranking at all: the curve is (0, 0) -> (1, 1) in one step, AUPRO = 0.15 at a 0.3 limit."""
    rng = np.random.default_rng(3)
    masks = _blob_masks(rng, [(64, 64)] * 4, 4)
    return [np.full(m.shape, 0.5) for m in masks], masks


def _fpr_hits_the_limit():
    """8000 clean pixels and distinct scores: some threshold leaves exactly 2400 false positives, fpr == 0.3."""
    rng = np.random.default_rng(11)
    masks = [np.zeros((64, 64), np.uint8) for _ in range(2)]
    masks[0][5:13, 30:42] = 1
    masks[1][50:58, 0:12] = 1  # 2 x 96 defect pixels
    return _noisy_maps(rng, masks, 2.0), masks


def _different_sizes():
    """Images of different sizes, float32 maps (the port concatenates where the reference would stack)."""
    rng = np.random.default_rng(5)
    masks = _blob_masks(rng, [(64, 64), (48, 80), (70, 50), (32, 32)], 3)
    return [a.astype(np.float32) for a in _noisy_maps(rng, masks, 2.5)], masks


CASES = {
    "blobs_seed0": lambda: _blobs(0, 2.0),
    "blobs_seed1_hard": lambda: _blobs(1, 0.8),
    "blobs_seed2_easy": lambda: _blobs(2, 4.0),
    "blobs_with_defect_free_images": lambda: _blobs(4, 2.0, n_defective=2),
    "ties_and_constant_regions": _ties_and_constant_regions,
    "constant_maps": _constant_maps,
    "fpr_hits_the_limit": _fpr_hits_the_limit,
    "different_sizes": _different_sizes,
}


@pytest.mark.parametrize("case", CASES)
def test_aupro_matches_the_mvtec_reference(case):
    maps, masks = CASES[case]()
    for limit in LIMITS:
        want = _mvtec_au_pro(maps, masks, integration_limit=limit)
        assert aupro(maps, masks, max_fpr=limit) == pytest.approx(want, abs=AUPRO_TOL), f"limit {limit}"
    if case == "constant_maps":
        assert aupro(maps, masks) == pytest.approx(0.15)


@pytest.mark.parametrize("case", CASES)
def test_pro_curve_matches_the_mvtec_reference_point_by_point(case):
    maps, masks = CASES[case]()
    fpr, pro = pro_curve(maps, masks)
    ref_fpr, ref_pro = _mvtec_compute_pro(maps, masks)
    assert len(fpr) == len(ref_fpr)  # same thresholds: one point per distinct score, plus both ends
    np.testing.assert_allclose(fpr, ref_fpr, rtol=0, atol=CURVE_TOL)
    np.testing.assert_allclose(pro, ref_pro, rtol=0, atol=CURVE_TOL)


def test_the_cases_are_not_trivial():
    """The comparisons above mean something only if the AUPROs spread out and the blob masks hold many regions."""
    values = [_mvtec_au_pro(*CASES[c]()) for c in ("blobs_seed0", "blobs_seed1_hard", "blobs_seed2_easy")]
    assert min(values) < 0.6 and max(values) > 0.85
    n_regions = sum(label(m, np.ones((3, 3), int))[1] for m in CASES["blobs_seed0"]()[1])
    assert n_regions >= 8


@pytest.mark.parametrize("case", [c for c in CASES if c != "constant_maps"])
def test_pixel_roc_auc_matches_sklearn_and_the_rank_sum_on_flattened_pixels(case):
    maps, masks = CASES[case]()
    scores = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in maps])
    truth = np.concatenate([m.ravel() > 0 for m in masks])
    got = pixel_roc_auc(maps, masks)
    assert got == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)
    # Mann-Whitney: AUC = (rank sum of defect pixels - n_pos (n_pos + 1) / 2) / (n_pos n_neg), ties at mid-rank
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    rank_auc = (rankdata(scores)[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    assert got == pytest.approx(rank_auc, abs=1e-9)
