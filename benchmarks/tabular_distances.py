"""Plain distances on the four tables: how far the rows themselves separate the anomalies (issue 20, breast_cancer).

    python benchmarks/tabular_distances.py --out reports/benchmarks/tabular-distances.csv

On ``benchmarks/tabular.py``'s splits (3 seeds), rows standardised with the training rows' statistics: mean
distance to the k nearest training rows (k = 1, 3, 5, 10, 20), the same after Ledoit-Wolf whitening (k = 5, 10),
and one Ledoit-Wolf Mahalanobis distance. No GAN: the ceiling that ``input_knn`` and its relatives stand under.
One CSV row per table, seed and part with each distance's ROC-AUC.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from tabular import TABLES, knn_distance, table_splits  # this script's folder is on sys.path

from anomgan.io import atomic_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows = []
    for name, seed, X, y, train, val, test in table_splits(",".join(TABLES), args.seeds):
        scaler = StandardScaler().fit(X[train])
        a = scaler.transform(X[train])
        lw = LedoitWolf().fit(a)
        white = np.linalg.cholesky(lw.precision_)  # x^T P x = |x @ white|^2
        for part, idx in (("val", val), ("test", test)):
            b = scaler.transform(X[idx])
            row = {"table": name, "seed": seed, "part": part}
            row.update({f"knn {k}": roc_auc_score(y[idx], knn_distance(a, b, k)) for k in (1, 3, 5, 10, 20)})
            aw, bw = a @ white, b @ white
            row.update({f"whitened knn {k}": roc_auc_score(y[idx], knn_distance(aw, bw, k)) for k in (5, 10)})
            d = b - lw.location_
            row["mahalanobis"] = roc_auc_score(y[idx], np.einsum("ij,jk,ik->i", d, lw.precision_, d))
            rows.append(row)
    frame = pd.DataFrame(rows)
    with atomic_path(args.out) as tmp:
        frame.to_csv(tmp, index=False)
    print((frame.drop(columns="seed").groupby(["part", "table"]).mean() * 100).round(2).T.to_string())


if __name__ == "__main__":
    main()
