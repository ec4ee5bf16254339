"""Scoring speed and ROC-AUC per inversion method, measured in one run on the same samples.

    python benchmarks/score_speed.py --run runs/m3 --data-root ../shared/data --n 256 \
        --out reports/benchmarks/score_speed.csv

``--config`` scores with that config's ``score.*`` settings instead of the run's own, rebuilding the run's bank
(not timed) when it predates a bank component, as ``rescore.py`` does. Uses a balanced subset of the run's test
split (half normal, half anomalous) so the 500-step iterative inversion stays affordable on a CPU; every
method scores exactly the same samples.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from anomgan import AnoGAN
from anomgan.runs import load_data, split_data
from anomgan.training.fit import inversion_for


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--n", type=int, default=256, help="samples (balanced normal/anomalous)")
    ap.add_argument("--iterative-steps", type=int, default=500)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--config", default=None, help="score with this config's score.* settings (default: the run's)")
    ap.add_argument("--repeats", type=int, default=5, help="timings per method (median), while under 10 s")
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/score_speed.csv"))
    args = ap.parse_args()

    det = AnoGAN.load(args.run, device=args.device)
    cfg = det.config_
    if args.data_root:
        cfg.data.root = args.data_root
    ds = load_data(cfg)
    splits = split_data(cfg, ds)
    if args.config:
        from anomgan.config import build_config
        from anomgan.training.fit import rescore_with

        cfg.score = build_config(args.config).score
        det.scorer_ = rescore_with(det.scorer_, cfg, ds.x[splits.train], ds.x[splits.val])
    target = splits.test_targets(ds)
    rng = np.random.default_rng(0)
    half = args.n // 2
    idx = np.concatenate([rng.choice(splits.test[target == 0], half, replace=False),
                          rng.choice(splits.test[target == 1], half, replace=False)])
    x, y = ds.x[idx], np.r_[np.zeros(half), np.ones(half)]
    rows = []
    for method, steps in (("encoder", None), ("hybrid", None), ("iterative", args.iterative_steps)):
        det.score_components(x[:1], method, steps)  # calibrates this setting: not part of the timed scoring
        det.score_components(x[:8], method, steps)  # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times = []
        while True:  # fast methods are timed several times (median): sub-second timings are noisy here
            start = time.perf_counter()
            res = det.score_components(x, method, steps)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            if len(times) >= args.repeats or sum(times) > 10:
                break
        seconds = float(np.median(times))
        inv = inversion_for(cfg, method, steps)
        rows.append({"method": method, "steps": inv.steps if method == "iterative" else
                     (inv.refine_steps if method == "hybrid" else 0), "n": len(x), "seconds": seconds,
                     "images_per_s": len(x) / seconds, "timings": len(times),
                     "roc_auc": roc_auc_score(y, res["anomaly_score"]),
                     "device": args.device, "torch_threads": torch.get_num_threads(),
                     "machine": platform.processor() or platform.machine(), "run": args.run.name})
        print(f"{method:10s} {rows[-1]['images_per_s']:10.1f} img/s  AUC {rows[-1]['roc_auc']:.4f}", flush=True)
    frame = pd.DataFrame(rows)
    it = frame.set_index("method").loc["iterative", "images_per_s"]
    frame["speedup_vs_iterative"] = frame["images_per_s"] / it
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(frame[["method", "steps", "images_per_s", "speedup_vs_iterative", "roc_auc"]].to_string(index=False))


if __name__ == "__main__":
    main()
