"""Combination and input-scaling levers of ``configs/tabular.yaml`` on the four tables, decided on validation rows.

    python benchmarks/tabular_combination.py --out reports/benchmarks/tabular-combination.csv

The issue 20 levers that need no new component, measured on ``benchmarks/tabular.py``'s splits (3 seeds):

- how the components are combined, recomputed from one fit per table and seed: the shipped ``calibrated`` mean of
  z-scores; ``rank`` (each component as its empirical CDF on the normal-validation samples); ``robust`` (median /
  IQR instead of mean / std); ``d_score two-sided W`` (|D's verdict - its normal median|, weight W: on tables D
  calls anomalies *more* real, see the ``d_score`` column); ``min-variance weights`` (weights learned on the
  normal-validation samples only: the non-negative weights, summing to 1, that minimise the variance of the
  normal scores, with and without ``d_score``);
- how the rows reach the model, each a separate fit: ``yeo-johnson`` / ``quantile`` (scikit-learn's
  PowerTransformer / QuantileTransformer to a normal distribution, fitted on the training rows, before the
  config's own standardisation), next to the peers fitted on the same transformed rows.

One CSV row per variant, table, seed and part (val / test) with the ROC-AUC of the score and, for each fit, of
its ``d_score`` and the two peers. ``shipped`` recomputed here equals the detector's own ``anomaly_score``
(checked, largest difference printed).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import PowerTransformer, QuantileTransformer
from tabular import peers, table_arguments, table_splits, write_variants  # this script's folder is on sys.path

from anomgan import AnoGAN
from anomgan.config import build_config

TRANSFORMS = {
    "shipped": None,
    "yeo-johnson": lambda x: PowerTransformer(method="yeo-johnson").fit(x),
    "quantile": lambda x: QuantileTransformer(output_distribution="normal", n_quantiles=min(1000, len(x))).fit(x),
}


def min_variance_weights(z: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise the variance of ``z @ w`` over normal samples ``z``."""
    cov = np.cov(z.T) + 1e-3 * np.eye(z.shape[1])
    k = z.shape[1]
    res = minimize(lambda w: w @ cov @ w, np.full(k, 1.0 / k), bounds=[(0.0, 1.0)] * k,
                   constraints={"type": "eq", "fun": lambda w: w.sum() - 1.0})
    return res.x


def combinations(names: list, weights: dict, calibration, values: np.ndarray) -> dict:
    """Anomaly scores of ``values`` (N, K) under each combination, from the scorer's ``calibration``: its
    normal-validation values (M, K) and the location / scale the shipped combination uses."""
    w = np.array([weights.get(c, 0.0) for c in names])
    cal = calibration.values.double().numpy()
    loc, scale = calibration.loc.numpy(), calibration.scale.numpy()
    z, z_cal = (values - loc) / scale, (cal - loc) / scale
    out = {"shipped": z @ w / w.sum()}
    cdf = np.stack([np.searchsorted(np.sort(cal[:, k]), values[:, k], side="right") / len(cal)
                    for k in range(len(names))], 1)
    out["rank"] = cdf @ w / w.sum()
    med, iqr = np.median(cal, 0), np.quantile(cal, 0.75, 0) - np.quantile(cal, 0.25, 0)
    out["robust"] = ((values - med) / np.where(iqr > 1e-12, iqr, 1.0)) @ w / w.sum()
    d = names.index("d_score")
    d_median = np.median(cal[:, d])
    side_cal, side = np.abs(cal[:, d] - d_median), np.abs(values[:, d] - d_median)
    for wd in (0.5, 5.0, 20.0):
        zz = z.copy()
        zz[:, d] = (side - side_cal.mean()) / max(side_cal.std(), 1e-12)
        w2 = w.copy()
        w2[d] = wd
        out[f"d_score two-sided {wd:g}"] = zz @ w2 / w2.sum()
    used = [i for i, c in enumerate(names) if weights.get(c, 0.0) > 0]
    no_d = [i for i in used if i != d]
    for label, cols in (("min-variance weights", used), ("min-variance weights, no d_score", no_d)):
        out[label] = z[:, cols] @ min_variance_weights(z_cal[:, cols])
    return out


def main() -> None:
    args = table_arguments(__doc__).parse_args()
    rows, worst = [], 0.0
    for name, seed, X, y, train, val, test in table_splits(args.tables, args.seeds):
        for transform, make in TRANSFORMS.items():
            fitted = make(X[train]) if make else None

            def f(a: np.ndarray, fitted=fitted) -> np.ndarray:
                return fitted.transform(a).astype(np.float32) if fitted else a
            cfg = build_config(args.config, overrides=["train.device=cpu", f"train.seed={seed}"])
            det = AnoGAN(config=cfg).fit(f(X[train]))
            names = list(det.scorer_.components)
            calibration = next(iter(det.scorer_.calibrations.values()))
            for part, idx in (("val", val), ("test", test)):
                comps = det.score_components(f(X[idx]))
                values = np.stack([np.asarray(comps[c], dtype=np.float64) for c in names], 1)
                base = {"table": name, "seed": seed, "part": part,
                        "d_score_roc_auc": roc_auc_score(y[idx], comps["d_score"]),
                        **{k: roc_auc_score(y[idx], v) for k, v in peers(f(X[train]), f(X[idx]), seed).items()}}
                if transform != "shipped":  # a transform is scored by the detector's own combination
                    scores = {transform: np.asarray(comps["anomaly_score"])}
                else:
                    scores = combinations(names, det.scorer_.spec.weights, calibration, values)
                    worst = max(worst, float(np.abs(scores["shipped"] - np.asarray(comps["anomaly_score"])).max()))
                rows += [{"variant": v, **base, "roc_auc": roc_auc_score(y[idx], s)} for v, s in scores.items()]
        print(name, seed, flush=True)
    write_variants(rows, args.out, worst)


if __name__ == "__main__":
    main()
