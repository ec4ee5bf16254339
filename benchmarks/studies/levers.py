"""Lever study: the digits one-class benchmark with one setting changed at a time.

    python benchmarks/levers.py --classes 0-9 --out reports/benchmarks/levers-digits.csv
    python benchmarks/levers.py --classes 0-9 --variants shipped,shipped+encoder-epochs-25,shipped+encoder-epochs-50 \
        --out reports/benchmarks/levers-digits-encoder.csv

Each variant runs `anomgan benchmark` on the digits config (not on MNIST, whose test split only reports),
so choices made from this table do not look at the test split they are reported on.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
NS = ["train.loss=ns", "train.n_critic=1"]  # the study's baseline: non-saturating loss
VARIANTS = {
    "ns": NS,
    "wgan-gp": ["train.loss=wgan-gp", "train.n_critic=2"],  # configs/digits.yaml since this study
    # cheaper WGAN-GP (to fit MNIST in the CPU budget): lazy penalty on every 4th critic step, and one critic step
    "wgan-gp+lazy-gp": ["train.loss=wgan-gp", "train.n_critic=2", "train.gp_every=4"],
    "wgan-gp+n_critic-1+lazy-gp": ["train.loss=wgan-gp", "train.n_critic=1", "train.gp_every=4"],
    "wgan-gp+n_critic-1": ["train.loss=wgan-gp", "train.n_critic=1"],
    # the wgan-gp row again after the models moved to channels_last (same maths, other float rounding): noise
    "wgan-gp-rerun": ["train.loss=wgan-gp", "train.n_critic=2", "train.gp_every=1"],
    "hinge": ["train.loss=hinge", "train.n_critic=1"],
    "ns+no-spectral-norm": NS + ["model.spectral_norm=false"],
    "ns+no-ema": NS + ["train.ema_decay=0"],
    "ns+augment": NS + ["train.augment=true"],
    "ns+z_dim-32": NS + ["model.z_dim=32"],
    # encoder training length, on the shipped config (WGAN-GP, bank components): levers-digits-encoder.csv
    "shipped": [],
    "shipped+encoder-epochs-25": ["encoder.epochs=25"],
    "shipped+encoder-epochs-50": ["encoder.epochs=50"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", default="0-9")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/levers-digits.csv"))
    args = ap.parse_args()
    work = args.out.parent / f"{args.out.stem}.work"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.variants.split(","):
        case_csv = work / f"{name}.csv"
        cmd = [sys.executable, str(ROOT / "cli.py"), "benchmark", "--config", str(ROOT / "configs/digits.yaml"),
               "--protocol", "one-class", "--classes", args.classes, "--out", str(case_csv), "--quiet",
               "--runs-dir", str(work / f"{name}.runs")]
        for s in VARIANTS[name]:
            cmd += ["--set", s]
        subprocess.run(cmd, check=True)  # resumable: finished cases are skipped on a rerun
        cases = pd.read_csv(case_csv)
        rows.append({"variant": name, "settings": " ".join(VARIANTS[name]),
                     "roc_auc": cases.roc_auc.mean(), "d_score_roc_auc": cases.d_score_roc_auc.mean(),
                     "residual_roc_auc": cases.residual_roc_auc.mean(),
                     "feature_residual_roc_auc": cases.feature_residual_roc_auc.mean(),
                     **{f"{c}_roc_auc": cases[f"{c}_roc_auc"].mean() for c in ("feature_knn", "layer_maha")
                        if f"{c}_roc_auc" in cases},
                     "worst_class_roc_auc": cases.roc_auc.min(), "train_seconds": cases.train_seconds.mean(),
                     "classes": args.classes})
        pd.DataFrame(rows).to_csv(args.out, index=False)
        print(rows[-1], flush=True)


if __name__ == "__main__":
    main()
