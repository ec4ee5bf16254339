"""The per-location variance floor of the anomaly maps, refitted on one finished run (no retraining).

    python benchmarks/variance_floor.py --run runs/mvtec-gray/bottle-s0 --floors none,1e-3,1e-2 \
        --out reports/benchmarks/variance-floor-bottle-gray.csv

For each floor the run's networks get a new scorer (``rescore_with``: bank, Gaussians and per-location Gaussians
fitted from the run's normal-training split, calibrated on its normal-validation split) whose per-location
covariances carry ``floor x`` the layer's mean variance on their diagonal (``none``: the former 1e-12 jitter);
the test split is scored once per floor. ``max_precision`` is the largest diagonal entry of the precisions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import anomgan.training.normal_stats as normal_stats
from anomgan import AnoGAN
from anomgan.evaluation.metrics import evaluate_scores
from anomgan.runs import add_pixel_metrics, original_size_maps, run_data, score_test_split
from anomgan.training.fit import rescore_with


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--floors", default="none,1e-3,1e-2")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    det = AnoGAN.load(args.run, device="cpu")
    cfg = det.config_
    ds, splits = run_data(det)
    shipped = normal_stats.VARIANCE_FLOOR
    rows = []
    for text in args.floors.split(","):
        floor = None if text == "none" else float(text)
        normal_stats.VARIANCE_FLOOR = 0.0 if floor is None else floor  # 0: only the 1e-12 jitter is left
        det.scorer_ = rescore_with(det.scorer_, cfg, ds.x[splits.train], ds.x[splits.val])
        frame, res, _ = score_test_split(det, ds, splits)
        report = evaluate_scores(frame, float(res["threshold"][0]))
        maps = original_size_maps(res["anomaly_map"], ds.sizes[splits.test])
        report = add_pixel_metrics(report, frame, maps, list(ds.masks[splits.test]))
        top = report[(report.component == "anomaly_score") & (report.anomalous_class == "all")].iloc[0]
        precision = det.scorer_.location_gaussians[0].precision.diagonal(dim1=1, dim2=2)
        rows.append({"run": str(args.run), "floor": text, "shipped": floor == shipped,
                     "image_roc_auc": top.roc_auc, "pixel_roc_auc": top.pixel_roc_auc, "aupro": top.aupro,
                     "max_precision": float(precision.max())})
        print(rows[-1], flush=True)
    normal_stats.VARIANCE_FLOOR = shipped
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
