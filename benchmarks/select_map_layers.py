"""Choose the critic layer of the anomaly map on normal data only: synthetic defects on normal-validation images.

    python benchmarks/select_map_layers.py --run runs/mvtec/bottle-s0 \
        --out reports/benchmarks/select-map-layers-bottle.csv

The real defects of the test split must not choose a setting. Here each normal-validation image gets a
CutPaste-style defect (a rectangle of another normal image, 8-25 % of the side, pasted elsewhere; seeded) and
its mask; for each candidate layer a scorer with the run's networks and that ``score.map_layers`` is fitted on
the normal-training images (``rescore_with``) and its maps are measured against the pasted masks: pixel ROC-AUC
and AUPRO. The layer with the best AUPRO on these synthetic defects is the one to ship.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from anomgan import AnoGAN
from anomgan.evaluation.pixel import aupro, pixel_roc_auc
from anomgan.runs import run_data
from anomgan.training.fit import rescore_with


def cut_paste(images: np.ndarray, copies: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N * copies, C, H, W) images with one pasted rectangle each (from another image), and (N * copies, H, W)."""
    rng = np.random.default_rng(seed)
    n, _, h, w = images.shape
    out, masks = [], []
    for _ in range(copies):
        for i in range(n):
            x = images[i].copy()
            ph, pw = (int(rng.uniform(0.08, 0.25) * s) for s in (h, w))
            src = images[(i + 1 + rng.integers(n - 1)) % n] if n > 1 else images[i]
            sy, sx = rng.integers(0, h - ph), rng.integers(0, w - pw)
            dy, dx = rng.integers(0, h - ph), rng.integers(0, w - pw)
            x[:, dy:dy + ph, dx:dx + pw] = src[:, sy:sy + ph, sx:sx + pw]
            m = np.zeros((h, w), np.uint8)
            m[dy:dy + ph, dx:dx + pw] = 1
            out.append(x)
            masks.append(m)
    return np.stack(out), np.stack(masks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--copies", type=int, default=3, help="synthetic defects per normal-validation image")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    det = AnoGAN.load(args.run, device="cpu")
    cfg = det.config_
    ds, splits = run_data(det)
    x, masks = cut_paste(ds.x[splits.val], args.copies, cfg.train.seed)
    n_layers = int(np.log2(det.preprocessor_.image_size)) - 1
    rows = []
    for layer in range(n_layers):
        c = copy.deepcopy(cfg)
        c.score.map_layers = [layer]
        scorer = rescore_with(det.scorer_, c, ds.x[splits.train], ds.x[splits.val])
        with torch.no_grad():
            xm = scorer.preprocess(torch.from_numpy(x))
            maps = scorer.score(xm, scorer.default_inversion())["anomaly_map"].numpy()
        rows.append({"layer": layer, "layer_from_deepest": layer - n_layers, "n_synthetic": len(x),
                     "pixel_roc_auc": pixel_roc_auc(list(maps), list(masks)), "aupro": aupro(list(maps), list(masks)),
                     "run": args.run.name})
        print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out, index=False)
    best = frame.loc[frame.aupro.idxmax()]
    print(frame.round(4).to_string(index=False))
    print(f"best on synthetic defects: layer {int(best.layer)} (score.map_layers: [{int(best.layer)}])")


if __name__ == "__main__":
    main()
