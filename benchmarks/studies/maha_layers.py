"""Which of D's layers ``feature_maha``'s Gaussian should see: the last one (shipped) or several, pooled.

    python benchmarks/maha_layers.py --runs reports/benchmarks/mnist-cpu-e6.runs --pattern 'one-class-*' \
        --config configs/mnist.yaml --data-root ../shared/data --out reports/benchmarks/maha-layers-mnist-val.csv

Off MNIST's test split, as ``knn_select.py --eval train-anomalies``: each run's normal-validation images against
2,000 other-digit images from the official *training* split. Each candidate fits a Ledoit-Wolf Gaussian
(``fit_gaussian``, the shipped code) to the same seeded bank of up to 4,096 normal-training images as the run's
``feature_maha`` and scores by Mahalanobis distance. ``L<i>_gap`` is the i-th LeakyReLU output of D's trunk
averaged over space (one value per channel), ``L<i>_pool<p>`` the same pooled to p x p (``pool4`` of the last
layer is ``feature_maha`` itself). Sums add z-scores from the normal-validation part, as the ``calibrated``
combination does; "default" is the weighting of the time (0.5 / 1 / 1 / knn 5 / maha 5) and "default, maha ->"
puts a candidate in ``feature_maha``'s place with the same weight. ``all layers pool2 (sum d^2/dim)`` is what
became ``layer_maha``. The idea is the per-layer Gaussian of Rippel et
al. (2020), which sums Mahalanobis distances over the layers of a pretrained classifier; here the layers are
those of the GAN's own critic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from knn_features import trunk_layers  # this script's folder is on sys.path
from knn_select import auc_rows, eval_set, study_parser, study_runs

from anomgan.scoring.memory import bank_indices, fit_gaussian, mahalanobis

POOLS = {"gap": 1, "pool2": 2, "pool4": 4}


def main() -> None:
    ap = study_parser(__doc__, "one-class-*-s0", "configs/mnist.yaml")
    ap.add_argument("--eval", choices=["test", "train-anomalies"], default="train-anomalies",
                    help="test: the data set's test split (digits, which has no official one to keep apart)")
    args = ap.parse_args()
    cfg, ds, runs = study_runs(args, adopt_score=True)
    rows = []
    for run, det, sp in runs:
        idx, target = eval_set(ds, sp, args.eval, 2000, seed=123)  # normal-validation first
        n_val = len(sp.val)
        bank = sp.train[bank_indices(len(sp.train), cfg.score.bank_size, det.config_.train.seed).numpy()]
        xb, xe = det.preprocessor_.transform(ds.x[bank]), det.preprocessor_.transform(ds.x[idx])
        comps: dict[str, np.ndarray] = {}
        layers = list(zip(trunk_layers(det, xb), trunk_layers(det, xe)))
        for i, (b, e) in enumerate(layers):
            for name, p in POOLS.items():
                if p > b.shape[-1]:
                    continue
                pool = lambda t: torch.nn.functional.adaptive_avg_pool2d(t, p).flatten(1)  # noqa: E731
                comps[f"L{i}_{name}"] = mahalanobis(pool(e), fit_gaussian(pool(b))).numpy()
        last = len(layers) - 1
        pooled = {}  # (bank, eval) per layer, 2x2-pooled, and the ways of adding their distances
        for i, (b, e) in enumerate(layers):
            pb, pe = (torch.nn.functional.adaptive_avg_pool2d(t, 2).flatten(1) for t in (b, e))
            fit = fit_gaussian(pb)
            pooled[i] = (mahalanobis(pb, fit).numpy(), mahalanobis(pe, fit).numpy(), pb.shape[1])
        comps["all layers pool2 (sum d^2/dim)"] = sum(de ** 2 / dim for _, de, dim in pooled.values())
        comps["all layers pool2 (sum d/mean bank d)"] = sum(de / db.mean() for db, de, _ in pooled.values())
        comps["all layers pool2 (sum z by bank)"] = sum((de - db.mean()) / db.std() for db, de, _ in pooled.values())
        for name, p in (("pixel_pool2", 2), ("pixel_pool4", 4), ("pixel_pool8", 8)):
            pool = lambda t: torch.nn.functional.adaptive_avg_pool2d(t, p).flatten(1)  # noqa: E731
            if p <= xb.shape[-1]:
                comps[name] = mahalanobis(pool(xe), fit_gaussian(pool(xb))).numpy()
        det.fit_feature_bank(ds.x[sp.train])
        comps.update({k: v for k, v in det.score_components(ds.x[idx], "encoder").items()
                      if k in ("d_score", "residual", "feature_residual", "feature_knn", "feature_maha",
                               "anomaly_score")})
        z = {k: (v - v[:n_val].mean()) / (v[:n_val].std() + 1e-12) for k, v in comps.items()}
        base = 0.5 * z["d_score"] + z["residual"] + z["feature_residual"] + 5 * z["feature_knn"]
        multi = {
            "all layers gap (sum)": sum(z[f"L{j}_gap"] for j in range(last + 1)),
            "all layers pool2 (sum)": sum(z[f"L{j}_pool2"] for j in range(last + 1)),
            "all layers pool4 (sum)": sum(z[f"L{j}_pool4"] for j in range(last + 1)),
            "last two pool4 (sum)": z[f"L{last - 1}_pool4"] + z[f"L{last}_pool4"],
            "last three pool4 (sum)": sum(z[f"L{j}_pool4"] for j in range(last - 2, last + 1)),
        }
        combos: dict[str, np.ndarray] = {"default": base + 5 * z["feature_maha"]}
        for name, v in multi.items():
            zv = (v - v[:n_val].mean()) / (v[:n_val].std() + 1e-12)
            combos[name] = v
            combos[f"default, maha -> {name}"] = base + 5 * zv
            combos[f"default + {name}"] = base + 5 * z["feature_maha"] + 5 * zv
        zp = z["all layers pool2 (sum d^2/dim)"]
        combos["default, maha -> pool2 d^2/dim, weight 10"] = base + 10 * zp
        combos["default, maha -> pool2 d^2/dim, weight 20"] = base + 20 * zp
        combos["knn 1 + pool2 d^2/dim 1"] = z["feature_knn"] + zp
        combos["default + pool2 d^2/dim 10"] = base + 5 * z["feature_maha"] + 10 * zp
        rows += auc_rows(run, sp, target, {**comps, **combos})
        print(run.name, flush=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out, index=False)
    table = frame.pivot_table(index="score", columns="normal_classes", values="roc_auc", sort=False) * 100
    table["mean"] = table.mean(1)
    print(table.round(2).to_string())


if __name__ == "__main__":
    main()
