"""Training and scoring throughput on a CUDA device, with and without bf16 autocast (MNIST, 32x32).

    python benchmarks/gpu_throughput.py --data-root ../shared/data --out reports/benchmarks/gpu_throughput.csv

Training images/s is the mean of epochs 2..N from metrics.csv (epoch 1 includes CUDA warm-up);
scoring images/s times each method on the same test images after a warm-up batch.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from anomgan import AnoGAN
from anomgan.config import build_config
from anomgan.runs import load_data, split_data, train_run
from anomgan.training.fit import inversion_for


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--n-score", type=int, default=4096)
    ap.add_argument("--n-iterative", type=int, default=1024)
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/gpu_throughput.csv"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark measures GPU throughput only")
    rows = []
    tmp = Path(tempfile.mkdtemp())
    for amp in (False, True):
        cfg = build_config("configs/mnist.yaml", flags={
            "data.root": args.data_root, "data.normal_classes": [3], "train.epochs": args.epochs,
            "encoder.epochs": 1, "train.device": "cuda", "train.amp": amp, "score.amp": amp,
            "score.batch_size": 1024})
        res = train_run(cfg, tmp / f"amp{int(amp)}")
        m = pd.read_csv(res.run_dir / "metrics.csv")
        gan = m[m.phase == "gan"]
        rows.append({"stage": "train", "method": "gan", "amp": amp, "steps": "",
                     "images_per_s": gan.images_per_s.iloc[1:].mean()})
        det = AnoGAN.load(res.run_dir, device="cuda")
        det.scorer_.spec.amp = amp
        ds = load_data(cfg)
        x = ds.x[split_data(cfg, ds).test]
        for method, n, steps in (("encoder", args.n_score, None), ("hybrid", args.n_score, None),
                                 ("iterative", args.n_iterative, 500)):
            det.score_components(x[:64], method, steps)  # calibrates this setting, and warms up
            torch.cuda.synchronize()
            start = time.perf_counter()
            det.score_components(x[:n], method, steps)
            torch.cuda.synchronize()
            inv = inversion_for(cfg, method, steps)
            rows.append({"stage": "score", "method": method, "amp": amp,
                         "steps": inv.steps if method == "iterative" else
                         (inv.refine_steps if method == "hybrid" else 0),
                         "images_per_s": n / (time.perf_counter() - start)})
        for r in rows[-4:]:
            print(r, flush=True)
    frame = pd.DataFrame(rows)
    frame["device"] = torch.cuda.get_device_name(0)
    frame["torch"] = torch.__version__
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(frame.to_string(index=False))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
