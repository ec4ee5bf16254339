"""Scoring-side levers without retraining: inversion method and combination weights, on finished runs.

    python benchmarks/weights.py --runs reports/benchmarks/levers-digits.work/wgan-gp.runs \
        --config configs/digits.yaml --out reports/benchmarks/weights-digits.csv

Loads every case run of a one-class benchmark, scores its test split once per method, and recomputes
the ROC-AUC of the calibrated score under several weightings (statistics from normal-validation only).
Run it on digits: choices taken from it never look at MNIST's test split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

from anomgan import AnoGAN
from anomgan.config import build_config
from anomgan.runs import load_data, split_data

WEIGHTS = {
    "d0.5-r1-f1 (default)": {"d_score": 0.5, "residual": 1.0, "feature_residual": 1.0},
    "r1-f1": {"d_score": 0.0, "residual": 1.0, "feature_residual": 1.0},
    "f1": {"d_score": 0.0, "residual": 0.0, "feature_residual": 1.0},
    "d1-r1-f1": {"d_score": 1.0, "residual": 1.0, "feature_residual": 1.0},
    "d0.25-r0.5-f1": {"d_score": 0.25, "residual": 0.5, "feature_residual": 1.0},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--methods", default="encoder,hybrid")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    cfg = build_config(args.config, flags={"data.root": args.data_root})
    ds = load_data(cfg)
    rows = []
    for run in sorted(p for p in args.runs.iterdir() if (p / "checkpoint.pt").is_file()):
        det = AnoGAN.load(run, device="cpu")
        splits = split_data(det.config_, ds)
        target = splits.test_targets(ds)
        for method in args.methods.split(","):
            comps = det.score_components(ds.x[splits.test], method)
            for name, weights in WEIGHTS.items():
                rows.append({"run": run.name, "normal_classes": ",".join(splits.normal_classes), "method": method,
                             "weights": name, "roc_auc": roc_auc_score(target, det.recombine(comps, weights, method))})
        print(run.name, flush=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out, index=False)
    print(frame.pivot_table(index="weights", columns="method", values="roc_auc", aggfunc="mean").round(4))


if __name__ == "__main__":
    main()
