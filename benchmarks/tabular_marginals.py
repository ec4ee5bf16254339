"""Per-column tail scores next to the shipped tabular score, decided on validation rows (issue 20, breast_cancer).

    python benchmarks/tabular_marginals.py --out reports/benchmarks/tabular-marginals.csv     # ~40 s

IsolationForest leads on breast_cancer through axis-aligned splits on skewed columns. The GAN-free way to borrow
that edge is a score built from each column alone. Three of them, computed here in numpy from the fitted
detector's own training rows (its ``input_bank``, model space) and calibrated on its own normal-validation rows
(``calibration_x``), as a score component would be:

- ``tails``: sum over columns of -log of the larger of the two empirical tail probabilities ((n + 1)-smoothed);
- ``ecod``: ECOD (Li et al. 2022): the largest of the left-tail, right-tail and skewness-chosen-tail sums;
- ``hbos``: HBOS (Goldstein & Dengel 2012): sum over columns of -log of a 10-bin histogram density.

Each is reported alone and added to the shipped weighted z-score combination at weight W (its own z-score on the
normal-validation rows), on ``benchmarks/tabular.py``'s splits and 3 seeds. ``shipped`` recomputed here equals the
detector's own ``anomaly_score`` (largest difference printed).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import skew
from sklearn.metrics import roc_auc_score
from tabular import table_arguments, table_splits, write_variants  # this script's folder is on sys.path

from anomgan import AnoGAN
from anomgan.config import build_config

WEIGHTS = (5.0, 10.0, 20.0, 40.0)


def tail_logs(train: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-log of each column's left and right empirical tail probability of ``rows`` under ``train``, (N, D) each."""
    n, srt = len(train), np.sort(train, axis=0)
    left = np.stack([np.searchsorted(srt[:, j], rows[:, j], side="right") for j in range(train.shape[1])], 1)
    right = n - np.stack([np.searchsorted(srt[:, j], rows[:, j], side="left") for j in range(train.shape[1])], 1)
    return -np.log((left + 1) / (n + 1)), -np.log((right + 1) / (n + 1))


def tails(train: np.ndarray, rows: np.ndarray) -> np.ndarray:
    left, right = tail_logs(train, rows)
    return np.maximum(left, right).sum(1)


def ecod(train: np.ndarray, rows: np.ndarray) -> np.ndarray:
    left, right = tail_logs(train, rows)
    auto = np.where(skew(train, axis=0) < 0, left, right)
    return np.maximum.reduce([left.sum(1), right.sum(1), auto.sum(1)])


def hbos(train: np.ndarray, rows: np.ndarray, bins: int = 10) -> np.ndarray:
    score = np.zeros(len(rows))
    for j in range(train.shape[1]):
        counts, edges = np.histogram(train[:, j], bins=bins)
        width = np.maximum(np.diff(edges), 1e-12)
        density = (counts + 1) / (len(train) + bins) / width
        outside = (rows[:, j] < edges[0]) | (rows[:, j] > edges[-1])
        idx = np.clip(np.searchsorted(edges, rows[:, j], side="right") - 1, 0, bins - 1)
        score -= np.log(np.where(outside, 1 / (len(train) + bins) / width.mean(), density[idx]))
    return score


MARGINALS = {"tails": tails, "ecod": ecod, "hbos": hbos}


def main() -> None:
    args = table_arguments(__doc__).parse_args()
    rows, worst = [], 0.0
    for name, seed, X, y, train, val, test in table_splits(args.tables, args.seeds):
        cfg = build_config(args.config, overrides=["train.device=cpu", f"train.seed={seed}"])
        det = AnoGAN(config=cfg).fit(X[train])
        scorer, pre = det.scorer_, det.preprocessor_
        bank, cal_x = scorer.input_bank.double().numpy(), scorer.calibration_x.double().numpy()
        names = list(scorer.components)
        w = np.array([scorer.spec.weights.get(c, 0.0) for c in names])
        cal = next(iter(scorer.calibrations.values()))
        loc, scale = cal.loc.numpy(), cal.scale.numpy()
        normal = {k: f(bank, cal_x) for k, f in MARGINALS.items()}
        for part, idx in (("val", val), ("test", test)):
            comps = det.score_components(X[idx])
            values = np.stack([np.asarray(comps[c], dtype=np.float64) for c in names], 1)
            weighted = ((values - loc) / scale) @ w
            worst = max(worst, float(np.abs(weighted / w.sum() - np.asarray(comps["anomaly_score"])).max()))
            x = pre.transform(X[idx]).double().numpy().reshape(len(idx), -1)
            scores = {"shipped": weighted / w.sum()}
            for k, f in MARGINALS.items():
                m = f(bank, x)
                scores[k] = m
                z = (m - normal[k].mean()) / max(normal[k].std(), 1e-12)
                scores.update({f"shipped + {k} {wk:g}": (weighted + wk * z) / (w.sum() + wk) for wk in WEIGHTS})
            rows += [{"variant": v, "table": name, "seed": seed, "part": part, "roc_auc": roc_auc_score(y[idx], s)}
                     for v, s in scores.items()]
        print(name, seed, flush=True)
    write_variants(rows, args.out, worst)


if __name__ == "__main__":
    main()
