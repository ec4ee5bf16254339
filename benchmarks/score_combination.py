"""Other ways of combining a run's score components, on the values ``score_levers.py --values`` saved (issue 20's
"score combination" lever), decided on ``val``, never on ``test``.

    python benchmarks/score_levers.py --cases reports/benchmarks/mnist-cpu-r13.csv --data-root ../shared/data \
        --shipped-only --values runs/r13-values --out /tmp/shipped.csv
    python benchmarks/score_combination.py --values runs/r13-values \
        --out reports/benchmarks/score-combination-mnist-r13.csv

Each ``<case>.npz`` holds every weighted component of one run on three sets: ``calib`` (the scorer's own
normal-validation calibration samples), ``val`` (the run's normal-validation images against other-class *training*
images) and ``test`` (the official test split), with the ``val`` and ``test`` labels. Every variant keeps the
run's weights and changes how a component becomes a number on one scale before the weighted mean:

- ``shipped``: the ``calibrated`` combination, (c - mean) / std over ``calib`` (equals the scorer's
  ``anomaly_score``, which ``score_levers.py`` checks);
- ``log distances``: the distance components (all but ``d_score``, which can be negative) as log(c) first;
- ``median / MAD``: (c - median) / (1.4826 MAD) over ``calib``, robust to calib's own tail;
- ``log distances, median / MAD``: both;
- ``mean / std of the upper half``: location and scale from calib's values above its median only (the tail the
  threshold lives in).

``--sweep COMPONENT=W1,W2,...`` adds one variant per weight, ``COMPONENT Wi``: the shipped combination with that
component's weight set to Wi (round fifteen: ``d_score``'s weight once D trains with negatives).

    python benchmarks/score_combination.py --values runs/values-nda15 --sweep "d_score=0.5,2,5,7.5,10,15,20,30" \
        --out reports/benchmarks/score-combination-mnist-nda15-s0.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from common import (  # this script's folder is on sys.path
    calibration_scale,
    combine,
    mean_std,
    mnist_weights,
    parse_weights,
    read_weighted_values,
)
from sklearn.metrics import roc_auc_score

from anomgan.io import atomic_path

SIGNED = {"d_score"}  # components that may be negative: never log-transformed


def median_mad(calib: np.ndarray) -> tuple[float, float]:
    med = np.median(calib)
    return med, calibration_scale(1.4826 * np.median(np.abs(calib - med)))


def upper_half(calib: np.ndarray) -> tuple[float, float]:
    top = calib[calib >= np.median(calib)]
    return top.mean(), calibration_scale(top.std())


VARIANTS = {  # label: (log-transform distances, standardiser of the calib values)
    "shipped": (False, mean_std),
    "log distances": (True, mean_std),
    "median / MAD": (False, median_mad),
    "log distances, median / MAD": (True, median_mad),
    "mean / std of the upper half": (False, upper_half),
}


def log_distances(values: dict) -> dict:
    """Every component but the signed ones as its log (distances are >= 0; floored at 1e-12)."""
    return {name: {c: v if c in SIGNED else np.log(np.maximum(v, 1e-12)) for c, v in per_set.items()}
            for name, per_set in values.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--values", type=Path, required=True, help="the folder score_levers.py --values wrote")
    ap.add_argument("--weights", default=mnist_weights(), help="component weights (default: configs/mnist.yaml's)")
    ap.add_argument("--sweep", default=None, help="COMPONENT=W1,W2,...: the shipped combination at each weight")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    weights = parse_weights(args.weights)
    variants = {label: (log, standardise, weights) for label, (log, standardise) in VARIANTS.items()}
    if args.sweep:
        component, _, ws = args.sweep.partition("=")
        for w in ws.split(","):
            variants[f"{component} {float(w):g}"] = (False, mean_std, {**weights, component: float(w)})
    files = sorted(args.values.glob("*.npz"))
    if not files:
        raise SystemExit(f"no .npz files in {args.values} (run score_levers.py --values first)")
    rows = []
    for path in files:
        values, targets = read_weighted_values(path, {c for v in variants.values() for c in v[2]})
        logged = log_distances(values)
        for label, (log, standardise, w) in variants.items():
            scores = combine(logged if log else values, w, standardise)
            for s in ("val", "test"):
                rows.append({"case": path.stem, "variant": label, "set": s, "n": len(targets[s]),
                             "roc_auc": roc_auc_score(targets[s], scores[s])})
    frame = pd.DataFrame(rows)
    with atomic_path(args.out) as tmp:
        frame.to_csv(tmp, index=False)
    table = frame.pivot_table(index="variant", columns="set", values="roc_auc")
    print((100 * table).round(3).sort_values("val", ascending=False).to_string())


if __name__ == "__main__":
    main()
