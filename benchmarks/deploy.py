"""Deployment: ONNX parity per run kind, and scoring throughput of torch, onnxruntime and Ray (1 and 2 workers).

    python benchmarks/deploy.py --mnist-run runs/m3 --digits-run runs/d0 --image-run runs/mvtec/bottle-s0 \
        --data-root ../shared/data --out reports/benchmarks/deploy.csv

Runs: ``anomgan train --config configs/mnist.yaml --data-root ../shared/data --normal-classes 3 --out runs/m3``,
the README quickstart (runs/d0) and ``benchmarks/mvtec.py`` (bottle). The tabular run is trained here on a
synthetic 20-column table (``configs/tabular.yaml``), whose 1,000,000-row test table is scored.

Rows ``parity``: for each run, ``anomgan export`` then onnxruntime against ``score --method encoder`` on the same
inputs (MNIST / digits / bottle: their test split; tabular: 20,000 rows): max |difference| of anomaly_score and of
the map over the scores' standard deviation (the bar: 1e-3).
Rows ``throughput``: 20,000 MNIST test-split images (28x28, .npy) and the 1M-row table (.parquet), scored to CSV
through the library calls behind ``anomgan score`` (process start-up aside): ``seconds`` is the scoring itself;
for Ray, ``total_seconds`` adds starting the local cluster and the actors, the overhead a cluster job pays once.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from anomgan import AnoGAN
from anomgan.config import build_config
from anomgan.export import OnnxDetector, export_run
from anomgan.ray_engine import score_with_ray
from anomgan.runs import run_data, score_input, train_run


def test_inputs(run: Path, data_root, n: int) -> np.ndarray:
    ds, splits = run_data(AnoGAN.load(run, device="cpu"), data_root)
    idx = splits.test
    if len(idx) < n:  # MNIST's test split is 10,000: parity and speed need inputs, not labels: add other rows
        idx = np.r_[idx, np.setdiff1d(np.arange(len(ds.x)), idx)[: n - len(idx)]]
    return ds.x[idx[:n]]


def parity(name: str, run: Path, x: np.ndarray, tmp: Path) -> dict:
    path = tmp / f"{name}.onnx"
    start = time.perf_counter()
    export_run(run, path, force=True)
    export_seconds = time.perf_counter() - start
    ref = AnoGAN.load(run, device="cpu").score_components(x, method="encoder")
    got = next(OnnxDetector(path).iter_scores([x], batch_size=256))
    row = {"kind": "parity", "case": name, "n": len(x), "export_seconds": export_seconds,
           "onnx_mb": path.stat().st_size / 2**20,
           "score_diff_over_std": float(np.abs(got["anomaly_score"] - ref["anomaly_score"]).max()
                                        / ref["anomaly_score"].std()),
           "flag_agreement": float((got["is_anomaly"] == ref["is_anomaly"]).mean())}
    if "anomaly_map" in ref:
        row["map_diff_over_std"] = float(np.abs(got["anomaly_map"] - ref["anomaly_map"]).max()
                                         / ref["anomaly_map"].std())
    print(row, flush=True)
    return row


def throughput(case: str, run: Path, onnx: Path, source: Path, tmp: Path, batch: int) -> list[dict]:
    rows = []
    for engine, fn in (
        ("torch", lambda out: score_input(run, str(source), out, method="encoder", batch_size=batch, force=True,
                                          device="cpu")),
        ("onnxruntime", lambda out: score_input(onnx, str(source), out, batch_size=batch, force=True)),
        ("ray-1", lambda out: score_with_ray(run, str(source), out, workers=1, batch_size=batch, force=True)),
        ("ray-2", lambda out: score_with_ray(run, str(source), out, workers=2, batch_size=batch, force=True)),
    ):
        out = tmp / f"{case}-{engine}.csv"
        start = time.perf_counter()
        res = fn(out)
        total = time.perf_counter() - start
        rows.append({"kind": "throughput", "case": case, "engine": engine, "n": res.n, "batch_size": batch,
                     "seconds": res.seconds, "total_seconds": total, "rows_per_s": res.n / res.seconds,
                     "rows_per_s_total": res.n / total})
        print(rows[-1], flush=True)
    ref = pd.read_csv(tmp / f"{case}-torch.csv")
    for r in rows:  # every engine scored the same rows in the same order
        other = pd.read_csv(tmp / f"{case}-{r['engine']}.csv")
        r["max_abs_diff_vs_torch"] = float(np.abs(other["anomaly_score"] - ref["anomaly_score"]).max())
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist-run", type=Path, required=True)
    ap.add_argument("--digits-run", type=Path, required=True)
    ap.add_argument("--image-run", type=Path, required=True)
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/deploy.csv"))
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rng = np.random.default_rng(0)
        cols = [f"f{i}" for i in range(20)]
        mix = rng.normal(size=(20, 20)) / 4
        pd.DataFrame(rng.normal(size=(5_000, 20)) @ mix, columns=cols).to_csv(tmp / "train.csv", index=False)
        cfg = build_config("configs/tabular.yaml", flags={"data.source": str(tmp / "train.csv"),
                                                         "data.normal_classes": None, "train.device": "cpu"})
        train_run(cfg, tmp / "tab")
        table = rng.normal(size=(args.rows, 20)) @ mix
        table[::100] += 3.0  # 1 % shifted rows
        pd.DataFrame(table.astype(np.float32), columns=cols).to_parquet(tmp / "table.parquet")

        rows.append(parity("digits", args.digits_run, test_inputs(args.digits_run, args.data_root, 2000), tmp))
        mnist_x = test_inputs(args.mnist_run, args.data_root, 20_000)
        rows.append(parity("mnist", args.mnist_run, mnist_x, tmp))
        rows.append(parity("tabular", tmp / "tab", table[:20_000].astype(np.float32), tmp))
        rows.append(parity("mvtec-bottle", args.image_run, test_inputs(args.image_run, args.data_root, 83), tmp))

        np.save(tmp / "mnist.npy", (mnist_x[:, 0] * 255).round().astype(np.uint8))
        rows += throughput("mnist-20k", args.mnist_run, tmp / "mnist.onnx", tmp / "mnist.npy", tmp, 512)
        rows += throughput(f"table-{args.rows // 1000}k", tmp / "tab", tmp / "tabular.onnx", tmp / "table.parquet",
                           tmp, 8192)
    frame = pd.DataFrame(rows)
    frame["machine"] = f"{platform.machine()} {os.cpu_count()} cores, CPU"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(frame.to_string(index=False))


if __name__ == "__main__":
    main()
