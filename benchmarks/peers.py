"""Peer baselines on the same one-class splits as anomgan: scikit-learn (kNN, IsolationForest, OC-SVM, PCA)
and, with ``--pyod`` and the optional ``peers`` extra (``pip install -e ".[peers]"``), PyOD's deep detectors
with their default settings (AutoEncoder, DeepSVDD, and PyOD's AnoGAN where ``--pyod-anogan`` asks for it:
it needs minutes per class).

    python benchmarks/peers.py --data digits --pyod --pyod-anogan --out reports/benchmarks/peers-digits.csv
    python benchmarks/peers.py --data mnist --data-root ../shared/data --max-train 2000 --pyod \
        --out reports/benchmarks/peers-mnist.csv

Raw pixels in [0,1], flattened; splits come from anomgan's own split code with the same seed and
config, so the test samples are exactly those anomgan is evaluated on. Higher score = more anomalous.
PyOD is an optional extra, used only here: the library itself never imports it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.neighbors import NearestNeighbors
from sklearn.svm import OneClassSVM

from anomgan.config import build_config
from anomgan.runs import load_data, split_data


def knn(train, test):
    nn = NearestNeighbors(n_neighbors=5).fit(train)
    return nn.kneighbors(test)[0][:, -1]


def iforest(train, test):
    return -IsolationForest(random_state=0).fit(train).score_samples(test)


def ocsvm(train, test):
    return -OneClassSVM(gamma="scale", nu=0.1).fit(train).score_samples(test)


def pca(train, test):
    model = PCA(n_components=0.9, random_state=0).fit(train)
    return ((test - model.inverse_transform(model.transform(test))) ** 2).sum(1)


def _pyod_peer(name: str):
    """A PyOD detector with PyOD's defaults (fixed seeds where PyOD takes one); score = decision_function."""
    def run(train, test):
        try:
            import torch
            from pyod.models.anogan import AnoGAN
            from pyod.models.auto_encoder import AutoEncoder
            from pyod.models.deep_svdd import DeepSVDD
        except ImportError as exc:
            raise SystemExit(f"--pyod needs PyOD: pip install -e '.[peers]' ({exc})") from None
        torch.manual_seed(0)
        model = {"pyod_autoencoder": lambda: AutoEncoder(verbose=0, random_state=0),
                 "pyod_deepsvdd": lambda: DeepSVDD(n_features=train.shape[1], verbose=0, random_state=0),
                 "pyod_anogan": lambda: AnoGAN(verbose=0)}[name]()
        model.fit(train)
        return model.decision_function(test)

    return run


PEERS = {"knn": knn, "isolation_forest": iforest, "ocsvm": ocsvm, "pca": pca}
PYOD_PEERS = {name: _pyod_peer(name) for name in ("pyod_autoencoder", "pyod_deepsvdd")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--config", default=None)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--classes", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-train", type=int, default=None, help="cap normal-train (OC-SVM is quadratic)")
    ap.add_argument("--pyod", action="store_true", help="also run PyOD's AutoEncoder and DeepSVDD")
    ap.add_argument("--pyod-anogan", action="store_true", help="also run PyOD's AnoGAN (slow)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    peers = dict(PEERS)
    if args.pyod:
        peers.update(PYOD_PEERS)
    if args.pyod_anogan:
        peers["pyod_anogan"] = _pyod_peer("pyod_anogan")
    cfg_path = args.config or f"configs/{'digits' if args.data == 'digits' else args.data}.yaml"
    flags = {"data.source": args.data, "data.root": args.data_root, "train.seed": args.seed,
             "data.max_train": args.max_train}
    cfg = build_config(cfg_path, flags=flags)
    ds = load_data(cfg)
    classes = args.classes.split(",") if args.classes else ds.classes
    rows = []
    for c in classes:
        cfg.data.normal_classes = [c]
        sp = split_data(cfg, ds)
        train = ds.x[sp.train].reshape(len(sp.train), -1)
        test = ds.x[sp.test].reshape(len(sp.test), -1)
        target = sp.test_targets(ds)
        for name, fn in peers.items():
            start = time.perf_counter()
            score = fn(train, test)
            rows.append({"dataset": ds.name, "normal_classes": c, "seed": args.seed, "method": name,
                         "roc_auc": roc_auc_score(target, score),
                         "average_precision": average_precision_score(target, score),
                         "seconds": time.perf_counter() - start, "n_train": len(train)})
            print(f"{c} {name:17s} AUC {rows[-1]['roc_auc']:.4f}", flush=True)
    frame = pd.DataFrame(rows)
    if args.pyod or args.pyod_anogan:
        import pyod

        frame["pyod_version"] = frame.method.str.startswith("pyod").map({True: pyod.__version__, False: None})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(frame.groupby("method")["roc_auc"].mean().to_string())


if __name__ == "__main__":
    main()
