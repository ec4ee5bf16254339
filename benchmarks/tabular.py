"""Tabular check of the shipped score and its components on small real tables shipped with scikit-learn.

    python benchmarks/tabular.py --out reports/benchmarks/tabular.csv

The tables (``TABLES``): breast_cancer (benign rows normal, malignant anomalous), wine (cultivar 0 normal, the
others anomalous), iris (versicolor normal: setosa lies far off, virginica overlaps it) and digits as a 64-column
table (digits 0-4 normal, 5-9 anomalous: a normal class with five modes).

Per table and seed (``split``) the normal rows are shuffled into 55 % training, 15 % validation and 30 % test, and
the anomalous rows into two halves: one joins the validation rows, the other the test rows. ``configs/tabular.yaml``
trains on the training rows (its own normal-validation share of them calibrates); settings are decided on the
validation rows (``benchmarks/tabular_levers.py``), and this script reports the test rows only. Columns: each
weighted component's ROC-AUC and the calibrated score's under the config's weights ("default"), next to two peers
fitted on the same standardised training rows: kNN (mean distance to the 5 nearest training rows) and
IsolationForest (scikit-learn defaults).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from anomgan import AnoGAN
from anomgan.config import build_config
from anomgan.io import atomic_path

# name -> (loader, the normal class(es))
TABLES = {
    "breast_cancer": (load_breast_cancer, (1,)),
    "wine": (load_wine, (0,)),
    "iris": (load_iris, (1,)),
    "digits": (load_digits, (0, 1, 2, 3, 4)),
}


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(X float32, y: 1 = anomaly) of one table of ``TABLES``."""
    loader, normal = TABLES[name]
    X, y = loader(return_X_y=True)
    return X.astype(np.float32), (~np.isin(y, normal)).astype(np.int64)


def split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) row indices: normal rows 55 / 15 / 30 %, anomalous rows half to val, half to test."""
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(y == 0))
    anomalous = rng.permutation(np.flatnonzero(y == 1))
    n_test, n_val = len(normal) * 30 // 100, len(normal) * 15 // 100
    half = len(anomalous) // 2
    test = np.r_[normal[:n_test], anomalous[:half]]
    val = np.r_[normal[n_test:n_test + n_val], anomalous[half:]]
    return normal[n_test + n_val:], val, test


def knn_distance(train: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Mean distance of each of ``rows`` to its ``k`` nearest ``train`` rows."""
    return NearestNeighbors(n_neighbors=k).fit(train).kneighbors(rows)[0].mean(axis=1)


def peers(train: np.ndarray, test: np.ndarray, seed: int) -> dict:
    """Anomaly scores (higher = more anomalous) of the two peer methods, fitted on standardised ``train``."""
    scaler = StandardScaler().fit(train)
    tr, te = scaler.transform(train), scaler.transform(test)
    knn = knn_distance(tr, te, 5)
    forest = -IsolationForest(random_state=seed).fit(tr).score_samples(te)
    return {"peer_knn": knn, "peer_isolation_forest": forest}


def evaluate(config: str, name: str, seed: int, overrides: list[str] = (), parts=("test",)) -> list[dict]:
    """Train ``config`` (with ``overrides``) on one table's training rows; one row of ROC-AUCs per part."""
    X, y = load(name)
    train, val, test = split(y, seed)
    cfg = build_config(config, overrides=["train.device=cpu", f"train.seed={seed}", *overrides])
    det = AnoGAN(config=cfg).fit(X[train])
    rows = []
    for part, idx in (("val", val), ("test", test)):
        if part not in parts:
            continue
        comps = det.score_components(X[idx])
        row = {"table": name, "seed": seed, "part": part, "n_train": len(train), "n_normal": int((y[idx] == 0).sum()),
               "n_anomalous": int(y[idx].sum()),
               **{f"{c}_roc_auc": roc_auc_score(y[idx], comps[c]) for c in det.scorer_.components},
               "default": roc_auc_score(y[idx], comps["anomaly_score"])}
        for label, scores in peers(X[train], X[idx], seed).items():
            row[label] = roc_auc_score(y[idx], scores)
        rows.append(row)
    return rows


def table_arguments(doc: str) -> argparse.ArgumentParser:
    """The command line the tabular scripts share: --config, --tables, --seeds, --out."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/tabular.yaml")
    ap.add_argument("--tables", default=",".join(TABLES))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, required=True)
    return ap


def table_splits(tables: str, seeds: str) -> Iterator[tuple]:
    """(name, seed, X, y, train, val, test) for each of the comma-separated ``tables`` and ``seeds``: the loop the
    studies share, each table loaded once."""
    for name in tables.split(","):
        X, y = load(name)
        for seed in map(int, seeds.split(",")):
            yield (name, seed, X, y, *split(y, seed))


def write_variants(rows: list[dict], out: Path, worst: float) -> None:
    """Write the studies' rows (one per variant, table, seed and part, with ``roc_auc``) atomically to ``out``, then
    print how far the recomputed shipped score lies from the detector's own (``worst``) and each variant's mean
    ROC-AUC, sorted by the validation mean: the decision column."""
    frame = pd.DataFrame(rows)
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)
    print(f"shipped recomputed vs the detector's anomaly_score: largest difference {worst:.2e}")
    table = frame.groupby(["variant", "part", "table"])["roc_auc"].mean().unstack(["part", "table"]) * 100
    table[("val", "mean")] = table["val"].mean(axis=1)
    print(table.round(2).sort_values(("val", "mean"), ascending=False).to_string())


def main() -> None:
    args = table_arguments(__doc__).parse_args()
    rows = []
    for name in args.tables.split(","):
        for seed in map(int, args.seeds.split(",")):
            rows += evaluate(args.config, name, seed)
            print(name, seed, {k: round(v, 4) for k, v in rows[-1].items() if isinstance(v, float)}, flush=True)
    frame = pd.DataFrame(rows).drop(columns="part")
    frame.to_csv(args.out, index=False)
    print(frame.drop(columns=["seed", "n_train", "n_normal", "n_anomalous"]).groupby("table").mean().round(4).T)


if __name__ == "__main__":
    main()
