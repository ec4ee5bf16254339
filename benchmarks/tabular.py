"""Tabular check of the shipped score and its components on two small real tables shipped with scikit-learn.

    python benchmarks/tabular.py --out reports/benchmarks/tabular.csv

breast_cancer: benign rows are normal, malignant rows anomalous; wine: cultivar 0 normal, the others anomalous.
Per seed, 30% of the normal rows are held out for the test; ``configs/tabular.yaml`` trains on the rest
(its own normal-validation share calibrates). Reports each weighted component's ROC-AUC and the calibrated score
under the config's weights ("default"), next to two peers fitted on the same standardised training rows:
kNN (mean distance to the 5 nearest training rows) and IsolationForest (scikit-learn defaults).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from anomgan import AnoGAN
from anomgan.config import build_config

TABLES = {"breast_cancer": (load_breast_cancer, 1), "wine": (load_wine, 0)}

def peers(train: np.ndarray, test: np.ndarray, seed: int) -> dict:
    """Anomaly scores (higher = more anomalous) of the two peer methods, fitted on standardised ``train``."""
    scaler = StandardScaler().fit(train)
    tr, te = scaler.transform(train), scaler.transform(test)
    knn = NearestNeighbors(n_neighbors=5).fit(tr).kneighbors(te)[0].mean(axis=1)
    forest = -IsolationForest(random_state=seed).fit(tr).score_samples(te)
    return {"peer_knn": knn, "peer_isolation_forest": forest}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/tabular.yaml")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows = []
    for name, (loader, normal) in TABLES.items():
        X, y = loader(return_X_y=True)
        X = X.astype(np.float32)
        for seed in map(int, args.seeds.split(",")):
            rng = np.random.default_rng(seed)
            normal_idx = rng.permutation(np.flatnonzero(y == normal))
            n_test = len(normal_idx) * 3 // 10
            train = normal_idx[n_test:]
            test = np.r_[normal_idx[:n_test], np.flatnonzero(y != normal)]
            target = (y[test] != normal).astype(np.int64)
            cfg = build_config(args.config, overrides=["train.device=cpu", f"train.seed={seed}"])
            det = AnoGAN(config=cfg).fit(X[train])
            comps = det.score_components(X[test])
            row = {"table": name, "seed": seed, "n_train": len(train), "n_test": len(test),
                   **{f"{c}_roc_auc": roc_auc_score(target, comps[c]) for c in det.scorer_.components}}
            row["default"] = roc_auc_score(target, comps["anomaly_score"])
            for label, scores in peers(X[train], X[test], seed).items():
                row[label] = roc_auc_score(target, scores)
            rows.append(row)
            print(name, seed, {k: round(v, 4) for k, v in row.items() if isinstance(v, float)}, flush=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out, index=False)
    print(frame.drop(columns=["seed", "n_train", "n_test"]).groupby("table").mean().round(4).T)


if __name__ == "__main__":
    main()
