"""What the feature bank and its ``feature_maha`` Gaussian cost at the end of training, on one finished run.

    python benchmarks/bank_fit.py --run reports/benchmarks/mnist-cpu-one-class.runs/one-class-3-s0 \
        --config configs/mnist.yaml --data-root ../shared/data --out reports/benchmarks/bank_fit.csv

Times (median of ``--repeats``) ``fit_feature_bank`` on the run's normal-training split (the D pass that builds
the bank plus its Gaussian, as at the end of ``fit``), the Gaussian fit alone as it ships (``fit_gaussian``:
scikit-learn's Ledoit-Wolf shrinkage, Cholesky inverse in float64) and, for comparison, scikit-learn's full
``LedoitWolf().fit`` on the same bank, with the largest relative difference between the two precision matrices.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.covariance import LedoitWolf

from anomgan import AnoGAN
from anomgan.config import build_config
from anomgan.runs import load_data, split_data
from anomgan.scoring.memory import fit_gaussian


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    cfg = build_config(args.config, flags={"data.root": args.data_root})
    ds = load_data(cfg)
    det = AnoGAN.load(args.run, device="cpu")
    det.config_.score = cfg.score
    x = ds.x[split_data(det.config_, ds).train]
    total_s, _ = timed(lambda: det.fit_feature_bank(x), args.repeats)  # what the end of fit does: bank + Gaussian
    bank = det.feature_bank_
    fit_s, fit = timed(lambda: fit_gaussian(bank), args.repeats)
    sk_s, lw = timed(lambda: LedoitWolf().fit(bank.double().numpy()), args.repeats)
    diff = float(np.abs(fit.precision.double().numpy() - lw.precision_).max() / np.abs(lw.precision_).max())
    row = {"run": args.run.name, "n_bank": len(bank), "n_features": bank.shape[1], "bank_and_gaussian_seconds": total_s,
           "gaussian_seconds": fit_s, "sklearn_ledoitwolf_seconds": sk_s, "shrinkage": float(lw.shrinkage_),
           "precision_max_rel_diff": diff, "torch_threads": torch.get_num_threads(), "repeats": args.repeats}
    pd.DataFrame([row]).to_csv(args.out, index=False)
    print(row)


if __name__ == "__main__":
    main()
