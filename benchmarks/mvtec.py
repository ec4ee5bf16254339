"""MVTec AD categories with the shipped ``configs/mvtec.yaml``: image ROC-AUC / AP, pixel ROC-AUC, AUPRO, per
defect type, training and scoring time; beside them a raw-pixel 1-nearest-neighbour on the same split.

    python benchmarks/mvtec.py --root ../shared/data/mvtec_ad --categories bottle --seeds 0 \
        --out reports/benchmarks/mvtec.csv

Each case trains a run from scratch (``anomgan.runs.train_run``) and evaluates it once on the official test
split (``evaluate_run``): the figures are those of the final model. Rows: one per (category, seed, held-out
class), the class ``all`` first.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from anomgan.config import build_config
from anomgan.runs import evaluate_run, load_data, split_data, train_run


def raw_pixel_knn(cfg, size: int = 32) -> float:
    """Image ROC-AUC of the distance to the nearest normal-training image on raw pixels at ``size`` px."""
    ds = load_data(cfg)
    splits = split_data(cfg, ds)
    small = F.interpolate(torch.from_numpy(ds.x), size=(size, size), mode="bilinear", antialias=True).flatten(1)
    d = torch.cdist(small[splits.test].double(), small[np.r_[splits.train, splits.val]].double()).min(1).values
    return float(roc_auc_score(splits.test_targets(ds), d.numpy()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="../shared/data/mvtec_ad")
    ap.add_argument("--categories", default="bottle")
    ap.add_argument("--config", default="configs/mvtec.yaml")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override section.key=v")
    ap.add_argument("--runs", type=Path, default=Path("runs/mvtec"))
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/mvtec.csv"))
    args = ap.parse_args()
    rows = []
    for category in args.categories.split(","):
        for seed in map(int, args.seeds.split(",")):
            source = f"mvtec:{Path(args.root) / category}"
            cfg = build_config(args.config, flags={"data.source": source, "train.seed": seed, "train.device": "cpu"},
                               overrides=args.overrides)
            run = args.runs / f"{category}-s{seed}"
            start, cpu_start = time.perf_counter(), time.process_time()
            train_run(cfg, run, force=run.exists())
            train_seconds = time.perf_counter() - start
            train_cpu_seconds = time.process_time() - cpu_start  # all threads: comparable under contention
            ev = evaluate_run(run, device="cpu")
            knn = raw_pixel_knn(cfg)
            comps = ev.report[ev.report.anomalous_class == "all"].set_index("component").roc_auc
            for r in ev.report[ev.report.component == "anomaly_score"].itertuples():
                rows.append({"category": category, "seed": seed, "anomalous_class": r.anomalous_class,
                             "n_normal": r.n_normal, "n_anomalous": r.n_anomalous, "image_roc_auc": r.roc_auc,
                             "image_ap": r.average_precision, "pixel_roc_auc": getattr(r, "pixel_roc_auc", np.nan),
                             "aupro": getattr(r, "aupro", np.nan), "train_seconds": train_seconds,
                             "train_cpu_seconds": train_cpu_seconds,
                             "score_seconds": ev.seconds, "images_per_s": len(ev.scores) / ev.seconds,
                             "raw_pixel_knn_roc_auc": knn if r.anomalous_class == "all" else np.nan,
                             "image_size": cfg.data.image_size, "overrides": " ".join(args.overrides),
                             **({f"{c}_roc_auc": v for c, v in comps.items() if c != "anomaly_score"}
                                if r.anomalous_class == "all" else {})})
            print(f"{category} s{seed}: {rows[-len(ev.report.anomalous_class.unique())]} ", flush=True)
    frame = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(frame.to_string(index=False))


if __name__ == "__main__":
    main()
