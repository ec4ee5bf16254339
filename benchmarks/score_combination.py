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
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from anomgan.io import atomic_path

SETS = ("calib", "val", "test")
SIGNED = {"d_score"}  # components that may be negative: never log-transformed


def _scale(v: np.ndarray) -> float:
    return float(v) if v > 1e-12 else 1.0


def standardisers() -> dict:
    """``{name: f(calib values) -> (location, scale)}``."""
    def mean_std(c):
        return c.mean(), _scale(c.std())

    def median_mad(c):
        med = np.median(c)
        return med, _scale(1.4826 * np.median(np.abs(c - med)))

    def upper_half(c):
        top = c[c >= np.median(c)]
        return top.mean(), _scale(top.std())

    return {"mean/std": mean_std, "median/MAD": median_mad, "upper half": upper_half}


VARIANTS = {  # label: (log-transform distances, standardiser)
    "shipped": (False, "mean/std"),
    "log distances": (True, "mean/std"),
    "median / MAD": (False, "median/MAD"),
    "log distances, median / MAD": (True, "median/MAD"),
    "mean / std of the upper half": (False, "upper half"),
}


def combine(values: dict, weights: dict, log: bool, standardise) -> dict:
    """Weighted mean of the standardised components, per set."""
    out = {}
    for c, w in weights.items():
        per_set = {s: np.log(np.maximum(values[s][c], 1e-12)) if log and c not in SIGNED else values[s][c]
                   for s in SETS}
        loc, scale = standardise(per_set["calib"])
        for s in SETS:
            out[s] = out.get(s, 0.0) + w * (per_set[s] - loc) / scale
    total = sum(weights.values())
    return {s: v / total for s, v in out.items()}


def read_values(path: Path) -> tuple[dict, dict]:
    z = np.load(path)
    values: dict = {s: {} for s in SETS}
    targets = {}
    for key in z.files:
        s, _, c = key.partition(".")
        if c == "target":
            targets[s] = z[key]
        elif s in values:
            values[s][c] = z[key].astype(np.float64)
    return values, targets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--values", type=Path, required=True, help="the folder score_levers.py --values wrote")
    ap.add_argument("--weights", default="d_score=0.5,feature_knn=5,layer_maha=10,layer_knn=5",
                    help="component weights (default: configs/mnist.yaml's)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    weights = {c: float(w) for c, w in (p.split("=") for p in args.weights.split(","))}
    files = sorted(args.values.glob("*.npz"))
    if not files:
        raise SystemExit(f"no .npz files in {args.values} (run score_levers.py --values first)")
    std = standardisers()
    rows = []
    for path in files:
        values, targets = read_values(path)
        missing = set(weights) - set(values["calib"])
        if missing:
            raise SystemExit(f"{path.name}: no values of {', '.join(sorted(missing))}")
        for label, (log, how) in VARIANTS.items():
            scores = combine(values, weights, log, std[how])
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
