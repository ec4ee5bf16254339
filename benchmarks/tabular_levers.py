"""Levers of ``configs/tabular.yaml``, decided on validation rows, never on the test split (issue 20).

    python benchmarks/tabular_levers.py --out reports/benchmarks/tabular-levers.csv

Each variant is the config with the 0.3 weights and a few keys overridden (``VARIANTS``), trained per table and seed of
``benchmarks/tabular.py`` on its training rows and scored on its validation rows (15 % of the normal rows and half
of the anomalous ones) and its test rows (reported, never chosen from). One CSV row per variant, table, seed and
part with each component's ROC-AUC, the calibrated score's ("default") and the two peers'.
"""

from __future__ import annotations

import time

import pandas as pd
from tabular import evaluate, table_arguments  # this script's folder is on sys.path

from anomgan.io import atomic_path

NO_D = "score.weights={residual: 1.0, feature_residual: 1.0, feature_knn: 5.0, layer_maha: 10.0}"
WEIGHTS_03 = "d_score: 0.5, residual: 1.0, feature_residual: 1.0, feature_knn: 5.0, layer_maha: 10.0"
BASE = f"score.weights={{{WEIGHTS_03}}}"  # every variant starts from the 0.3 weights, whatever the config says
VARIANTS = {
    "0.3 default": [],
    "- d_score": [NO_D],
    "300 epochs": ["train.epochs=300", "encoder.epochs=300"],
    "wgan-gp": ["train.loss=wgan-gp", "train.n_critic=2"],
    "width 128": ["model.width=128"],
    "width 32": ["model.width=32"],
    "depth 3": ["model.depth=3"],
    "val_fraction 0.25": ["data.val_fraction=0.25"],
    "method encoder": ["score.method=encoder"],
    "+ input_knn 5": [f"score.weights={{{WEIGHTS_03}, input_knn: 5.0}}"],
    "+ input_knn 10": [f"score.weights={{{WEIGHTS_03}, input_knn: 10.0}}"],
    "+ input_knn 20": [f"score.weights={{{WEIGHTS_03}, input_knn: 20.0}}"],
    "+ input_knn 40": [f"score.weights={{{WEIGHTS_03}, input_knn: 40.0}}"],
    "+ input_knn 20 & val_fraction 0.25": [f"score.weights={{{WEIGHTS_03}, input_knn: 20.0}}",
                                           "data.val_fraction=0.25"],
    "input_knn alone": ["score.weights={input_knn: 1.0}"],
}


def main() -> None:
    ap = table_arguments(__doc__)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    args = ap.parse_args()
    done = pd.read_csv(args.out) if args.out.exists() else pd.DataFrame(columns=["variant"])
    rows = done.to_dict("records")
    for variant in args.variants.split(","):
        if variant in set(done["variant"]):
            continue  # resumable: a variant's rows are written once it has run on every table and seed
        for name in args.tables.split(","):
            for seed in map(int, args.seeds.split(",")):
                start = time.perf_counter()
                for row in evaluate(args.config, name, seed, [BASE, *VARIANTS[variant]], parts=("val", "test")):
                    rows.append({"variant": variant, **row, "fit_score_s": time.perf_counter() - start})
        frame = pd.DataFrame(rows)
        with atomic_path(args.out) as tmp:
            frame.to_csv(tmp, index=False)
        mean = frame[frame.variant == variant].groupby(["part", "table"])["default"].mean().unstack("table")
        print(variant, mean.round(4).to_dict("index"), flush=True)
    frame = pd.DataFrame(rows)
    print(frame.groupby(["variant", "part", "table"])["default"].mean().unstack("table").round(4))


if __name__ == "__main__":
    main()
