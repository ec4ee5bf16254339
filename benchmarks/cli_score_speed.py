"""Encoder-path scoring speed as a user gets it: ``anomgan score --method encoder`` on a 20,000-image ``.npy`` to
CSV, process start-up aside (issue 20's speed target).

    python benchmarks/cli_score_speed.py --run runs/m3 --data-root ../shared/data \
        --variant shipped= --variant "coreset 1024=score.coreset_size=1024" \
        --out reports/benchmarks/cli-score-speed.csv

Each ``--variant NAME=KEY=VALUE[;KEY=VALUE]`` gives the run's networks a scorer with those score settings
(``rescore_with``: bank, Gaussians and calibration refitted from the run's own splits), saved as a run in a
temporary folder; an empty setting scores the run as it is. For each, the command runs ``--repeats`` times on
the first ``--n`` training images of MNIST (all digits, uint8, 28 x 28) and once per repeat on one image:
``images_per_s`` = n / (median full time - median one-image time), so import and model loading are left out.
``--input X.npy`` scores that array instead (e.g. real inspection images; ``--n`` is then its length).
``--run`` repeats as ``LABEL=PATH``: every variant is then timed on each run (e.g. models of two widths).
``--onnx`` times each also as a user scores its export: ``anomgan export``, then ``anomgan score --run M.onnx``
(onnxruntime; the ``backend`` column says which). Repeats go round-robin over all of them, so a drift in the
machine's speed reaches every row alike.
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torchvision
from common import machine_label, refit_score  # this script's folder is on sys.path

from anomgan import AnoGAN
from anomgan.export import export_run
from anomgan.runs import run_data


def timed_cli(run: Path, data: Path, out: Path) -> float:
    cmd = [str(Path(sys.executable).parent / "anomgan"), "score", "--run", str(run), "--input", str(data),
           "--out", str(out),
           "--method", "encoder", "--quiet", "--force", "--device", "cpu"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, help="PATH or LABEL=PATH (repeatable)")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--variant", action="append", default=None, help="NAME=KEY=VALUE[;KEY=VALUE] (repeatable)")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--input", type=Path, default=None, help="an .npy to score instead of MNIST's first --n images")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--onnx", action="store_true", help="also time each run's ONNX export (anomgan export)")
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/cli-score-speed.csv"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.input is not None:
            x = np.load(args.input)
            args.n = len(x)
        else:
            x = torchvision.datasets.MNIST(args.data_root, train=True, download=False).data[: args.n].numpy()
        np.save(tmp / "x.npy", x)
        np.save(tmp / "one.npy", x[:1])
        runs = [(r.partition("=")[0], Path(r.partition("=")[2])) if "=" in r else (Path(r).name, Path(r))
                for r in args.run]
        targets = []  # (label, variant, settings, backend, model)
        for (label, source), spec in itertools.product(runs, args.variant or ["shipped="]):
            name, _, settings = spec.partition("=")
            run, stem = source, f"{label}-{name}".replace(" ", "_").replace("/", "_")
            if settings:
                det = AnoGAN.load(source, device="cpu")
                ds, sp = run_data(det, args.data_root)
                refit_score(det, ds, sp, settings.split(";"))
                run = tmp / stem
                det.save(run)
            targets.append((label, name, settings, "torch", run))
            if args.onnx:
                export_run(run, tmp / f"{stem}.onnx", force=True)
                targets.append((label, name, settings, "onnx", tmp / f"{stem}.onnx"))
        full: dict = {t: [] for t in targets}
        one: dict = {t: [] for t in targets}
        for _ in range(args.repeats):  # round-robin: a drift in the machine's speed reaches every target alike
            for t in targets:
                full[t].append(timed_cli(t[4], tmp / "x.npy", tmp / "s.csv"))
                one[t].append(timed_cli(t[4], tmp / "one.npy", tmp / "s1.csv"))
        for t in targets:
            label, name, settings, backend, _ = t
            seconds = float(np.median(full[t]) - np.median(one[t]))
            rows.append({"variant": name, "settings": settings, "backend": backend, "n": args.n,
                         "seconds_full": float(np.median(full[t])), "seconds_startup": float(np.median(one[t])),
                         "images_per_s": args.n / seconds, "run": label, "repeats": args.repeats,
                         "machine": machine_label()})
            print(f"{label} {name:20s} {backend:5s} {rows[-1]['images_per_s']:8.0f} img/s "
                  f"(full {rows[-1]['seconds_full']:.1f} s, start-up {rows[-1]['seconds_startup']:.1f} s)",
                  flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
