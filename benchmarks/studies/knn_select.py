"""How much weight the bank components (``feature_knn``, ``feature_maha``, ``layer_maha``) get, and how big the
bank is: chosen without MNIST's test split.

    # digits: a different data set, test split of its one-class runs
    python benchmarks/knn_select.py --runs reports/benchmarks/digits-one-class-noknn.runs --config configs/digits.yaml \
        --eval test --out reports/benchmarks/knn-select-digits.csv
    # MNIST: normal-validation split vs 2,000 other-digit images from MNIST's *training* split
    python benchmarks/knn_select.py --runs reports/benchmarks/mnist-cpu-one-class.runs --config configs/mnist.yaml \
        --data-root ../shared/data --pattern 'one-class-*-s0' --eval train-anomalies \
        --out reports/benchmarks/knn-select-mnist-val.csv
    # feature_maha's weight, on all three seeds, the full bank only
    python benchmarks/knn_select.py --runs reports/benchmarks/mnist-cpu-one-class.runs --config configs/mnist.yaml \
        --data-root ../shared/data --eval train-anomalies --bank-sizes 4096 \
        --out reports/benchmarks/bank-select-mnist-val.csv
    # layer_maha's weight: the shipped 6-epoch models, all three seeds; and on digits
    python benchmarks/knn_select.py --runs reports/benchmarks/mnist-cpu-e6.runs --config configs/mnist.yaml \
        --data-root ../shared/data --eval train-anomalies --bank-sizes 4096 \
        --out reports/benchmarks/layer-select-mnist-val.csv
    python benchmarks/knn_select.py --runs reports/benchmarks/digits-one-class-maha.runs --config configs/digits.yaml \
        --eval test --bank-sizes 4096 --out reports/benchmarks/layer-select-digits.csv

Both evaluations stay off MNIST's test split: ``train-anomalies`` scores the run's normal-validation samples
(never trained on) against other classes drawn from the official *training* split (never seen by a one-class
run). Every weighting uses the calibration statistics of normal-validation data, as the library does.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from anomgan import AnoGAN
from anomgan.config import build_config
from anomgan.runs import load_data, split_data

WEIGHTS = {
    "d0.5-r1-f1 (previous default)": {"d_score": 0.5, "residual": 1.0, "feature_residual": 1.0},
    "knn only": {"feature_knn": 1.0},
    "d0.5-r1-f1-knn1": {"d_score": 0.5, "residual": 1.0, "feature_residual": 1.0, "feature_knn": 1.0},
    "d0.5-r1-f1-knn2.5 (default)": {"d_score": 0.5, "residual": 1.0, "feature_residual": 1.0, "feature_knn": 2.5},
    "r1-f1-knn1": {"residual": 1.0, "feature_residual": 1.0, "feature_knn": 1.0},
    "f1-knn1": {"feature_residual": 1.0, "feature_knn": 1.0},
    # feature_maha: the same bank seen as one Gaussian (Ledoit-Wolf) instead of its nearest neighbours
    "maha only": {"feature_maha": 1.0},
    "knn1-maha1": {"feature_knn": 1.0, "feature_maha": 1.0},
    "d0.5-r1-f1-maha2.5": {"d_score": 0.5, "residual": 1.0, "feature_residual": 1.0, "feature_maha": 2.5},
    "d0.5-r1-f1-knn1.25-maha1.25": {"d_score": 0.5, "residual": 1.0, "feature_residual": 1.0, "feature_knn": 1.25,
                                    "feature_maha": 1.25},
    "d0.5-r1-f1-knn2.5-maha2.5": {"d_score": 0.5, "residual": 1.0, "feature_residual": 1.0, "feature_knn": 2.5,
                                  "feature_maha": 2.5},
    "d0.5-r1-f1-knn5-maha5": {"d_score": 0.5, "residual": 1.0, "feature_residual": 1.0, "feature_knn": 5.0,
                              "feature_maha": 5.0},
    # layer_maha: one Gaussian per D layer of 2x2-pooled activations (benchmarks/maha_layers.py found it)
    "layer only": {"layer_maha": 1.0},
    "knn1-layer1": {"feature_knn": 1.0, "layer_maha": 1.0},
    "d0.5-r1-f1-knn5-layer5": {"d_score": 0.5, "residual": 1.0, "feature_residual": 1.0, "feature_knn": 5.0,
                               "layer_maha": 5.0},
    "d0.5-r1-f1-knn5-layer10": {"d_score": 0.5, "residual": 1.0, "feature_residual": 1.0, "feature_knn": 5.0,
                                "layer_maha": 10.0},
    "d0.5-r1-f1-knn5-maha5-layer10": {"d_score": 0.5, "residual": 1.0, "feature_residual": 1.0, "feature_knn": 5.0,
                                      "feature_maha": 5.0, "layer_maha": 10.0},
}


def eval_set(ds, splits, how: str, n_anomalies: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if how == "test":
        return splits.test, splits.test_targets(ds)
    if ds.official_test is None:
        raise SystemExit("--eval train-anomalies needs a data set with an official test split (e.g. MNIST)")
    pool = np.flatnonzero(~np.isin(ds.y, splits.normal_classes) & ~ds.official_test)
    anomalies = np.random.default_rng(seed).choice(pool, min(n_anomalies, len(pool)), replace=False)
    idx = np.concatenate([splits.val, anomalies])
    return idx, np.r_[np.zeros(len(splits.val), np.int64), np.ones(len(anomalies), np.int64)]


def study_parser(doc: str, pattern: str, config: Optional[str] = None) -> argparse.ArgumentParser:
    """The options every study over a folder of finished runs takes (this one, knn_features, maha_layers)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--config", default=config, required=config is None)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--pattern", default=pattern)
    ap.add_argument("--out", type=Path, required=True)
    return ap


def study_runs(args: argparse.Namespace, adopt_score: bool) -> tuple:
    """(config, data set, iterator of (run folder, detector, splits)) over the finished runs of ``--runs``
    matching ``--pattern``, in name order; ``adopt_score`` gives each detector ``--config``'s score settings."""
    cfg = build_config(args.config, flags={"data.root": args.data_root})
    ds = load_data(cfg)

    def runs():
        for run in sorted(p for p in args.runs.glob(args.pattern) if (p / "checkpoint.pt").is_file()):
            det = AnoGAN.load(run, device="cpu")
            if adopt_score:
                det.config_.score = cfg.score
            yield run, det, split_data(det.config_, ds)

    return cfg, ds, runs()


def auc_rows(run: Path, splits, target: np.ndarray, scores: dict) -> list[dict]:
    """One CSV row per named score of a run: its ROC-AUC on ``target``."""
    return [{"run": run.name, "normal_classes": ",".join(splits.normal_classes), "score": name,
             "roc_auc": roc_auc_score(target, v)} for name, v in scores.items()]


def main() -> None:
    ap = study_parser(__doc__, "one-class-*")
    ap.add_argument("--eval", choices=["test", "train-anomalies"], required=True)
    ap.add_argument("--n-anomalies", type=int, default=2000)
    ap.add_argument("--bank-sizes", default="4096,2048,1024")
    args = ap.parse_args()
    _, ds, runs = study_runs(args, adopt_score=False)
    rows = []
    for run, det, splits in runs:
        idx, target = eval_set(ds, splits, args.eval, args.n_anomalies, seed=123)
        for bank_size in map(int, args.bank_sizes.split(",")):
            det.config_.score.bank_size = bank_size
            det.fit_feature_bank(ds.x[splits.train])
            comps = det.score_components(ds.x[idx], "encoder")
            for name, weights in WEIGHTS.items():
                rows.append({"run": run.name, "normal_classes": ",".join(splits.normal_classes), "eval": args.eval,
                             "bank_size": bank_size, "n_bank": len(det.feature_bank_), "weights": name,
                             "roc_auc": roc_auc_score(target, det.recombine(comps, weights, "encoder"))})
        print(run.name, flush=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out, index=False)
    print(frame.pivot_table(index="weights", columns="bank_size", values="roc_auc", aggfunc="mean").round(4))


if __name__ == "__main__":
    main()
