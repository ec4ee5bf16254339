"""How much several networks trained on the same normal data would add (issue 20: is it the features of one
network that stand between the score and its target?), on the values ``score_levers.py --values`` saved for the
same cases from runs of different configs, decided on ``val``, never on ``test``.

    python benchmarks/score_levers.py --cases reports/benchmarks/mnist-cpu-r14-s0.csv --classes 8,2,3 \
        --data-root ../shared/data --shipped-only --values runs/r14-values-w16 --out /tmp/w16.csv   # also -w24, -w32
    python benchmarks/score_ensemble.py --values "16=runs/r14-values-w16" --values "24=runs/r14-values-w24" \
        --values "32=runs/r14-values-w32" --out reports/benchmarks/score-ensemble-mnist-r14.csv

Every ``--values LABEL=DIR`` holds one ``<case>.npz`` per case (the same case names and seeds in every folder, so
the same split and the same ``val`` / ``test`` images). Each run's score is its own calibrated combination
(``combine``: equal to its ``anomaly_score``); an ensemble is the mean of its members' scores, every one already
on the scale of its calibration samples. Every subset of the folders is a row, singletons included, so each
ensemble stands next to its own members. Not a shipped component: a study of what the next lever could reach.
"""

from __future__ import annotations

import argparse
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from common import combine, mnist_weights, parse_weights, read_weighted_values  # this script's folder is on sys.path
from sklearn.metrics import roc_auc_score

from anomgan.io import atomic_path


def labelled_folder(text: str) -> tuple[str, Path]:
    label, sep, folder = text.partition("=")
    if not sep or not label or not folder:
        raise argparse.ArgumentTypeError(f"expected LABEL=DIR, got {text!r}")
    return label, Path(folder)


def run_scores(folder: Path, case: str, weights: dict) -> tuple[dict, dict]:
    values, targets = read_weighted_values(folder / f"{case}.npz", weights)
    return combine(values, weights), targets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--values", type=labelled_folder, action="append", required=True, metavar="LABEL=DIR",
                    help="a folder score_levers.py --values wrote (repeat: two or more)")
    ap.add_argument("--weights", default=mnist_weights(), help="component weights (default: configs/mnist.yaml's)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if len(args.values) < 2:
        raise SystemExit("give two or more --values folders: an ensemble needs members")
    weights = parse_weights(args.weights)
    cases = [sorted(p.stem for p in folder.glob("*.npz")) for _, folder in args.values]
    if not cases[0] or any(c != cases[0] for c in cases):
        raise SystemExit("every --values folder must hold the same, non-empty set of <case>.npz files")
    rows = []
    for case in cases[0]:
        scores, targets = {}, None
        for label, folder in args.values:
            scores[label], t = run_scores(folder, case, weights)
            if targets is not None and any(not np.array_equal(targets[s], t[s]) for s in ("val", "test")):
                raise SystemExit(f"{case}: the folders' val / test labels differ (other splits?)")
            targets = t
        for size in range(1, len(scores) + 1):
            for members in combinations(scores, size):
                for s in ("val", "test"):
                    mean = np.mean([scores[m][s] for m in members], axis=0)
                    rows.append({"case": case, "members": "+".join(members), "n_members": size, "set": s,
                                 "n": len(targets[s]), "roc_auc": roc_auc_score(targets[s], mean)})
    frame = pd.DataFrame(rows)
    with atomic_path(args.out) as tmp:
        frame.to_csv(tmp, index=False)
    table = frame.pivot_table(index="members", columns=["set", "case"], values="roc_auc")
    print((100 * table).round(2).to_string())


if __name__ == "__main__":
    main()
