"""Peak memory of `anomgan score` on growing inputs: it should not grow with the input size.

    python benchmarks/stream_memory.py --rows 10000,1000000 --images 2000,20000 \
        --out reports/benchmarks/stream_memory.csv

Trains a tiny tabular run and a tiny image run, writes generated inputs (CSV rows / PNG files) into a
temporary folder, scores each in a fresh subprocess and records its peak RSS (ru_maxrss of the child).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]




def score_cmd(run: Path, inp: Path, out: Path, batch: int) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), "score", "--run", str(run), "--input", str(inp), "--out", str(out),
            "--method", "encoder", "--batch-size", str(batch), "--quiet", "--device", "cpu", "--force"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="10000,1000000")
    ap.add_argument("--images", default="2000,20000")
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/stream_memory.csv"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    train_args = ["--epochs", "1", "--quiet", "--device", "cpu", "--set", "encoder.epochs=1", "--set", "model.width=16"]
    pd.DataFrame(rng.normal(size=(2000, 8)), columns=[f"f{i}" for i in range(8)]).to_csv(tmp / "t.csv", index=False)
    subprocess.run([sys.executable, str(ROOT / "cli.py"), "train", "--data", str(tmp / "t.csv"), "--out",
                    str(tmp / "tab"), *train_args], check=True)
    subprocess.run([sys.executable, str(ROOT / "cli.py"), "train", "--data", "digits", "--normal-classes", "0",
                    "--out", str(tmp / "img"), *train_args, "--set", "data.image_size=8"], check=True)
    rows = []
    # each score runs under its own small wrapper process, so the peak RSS reported is that run's alone
    for n in sorted(int(v) for v in args.rows.split(",")):
        path = tmp / f"rows{n}.csv"
        with open(path, "w") as fh:
            fh.write(",".join(f"f{i}" for i in range(8)) + "\n")
            for start in range(0, n, 100_000):
                block = rng.normal(size=(min(100_000, n - start), 8))
                np.savetxt(fh, block, delimiter=",", fmt="%.5f")
        mib, sec = _isolated(score_cmd(tmp / "tab", path, tmp / "s.csv", args.batch_size))
        rows.append({"input": "csv_rows", "n": n, "file_mib": path.stat().st_size / 2**20, "peak_rss_mib": mib,
                     "seconds": sec, "samples_per_s": n / sec})
        print(rows[-1], flush=True)
        path.unlink()
    from PIL import Image

    for n in sorted(int(v) for v in args.images.split(",")):
        folder = tmp / f"img{n}"
        folder.mkdir()
        pixels = (rng.random((min(n, 500), 8, 8)) * 255).astype(np.uint8)
        for i in range(n):
            Image.fromarray(pixels[i % len(pixels)]).save(folder / f"{i:07d}.png")
        mib, sec = _isolated(score_cmd(tmp / "img", folder, tmp / "s.csv", 1024) + ["--num-workers", "1"])
        rows.append({"input": "image_folder", "n": n, "file_mib": float("nan"), "peak_rss_mib": mib, "seconds": sec,
                     "samples_per_s": n / sec})
        print(rows[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)


def _isolated(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` under a wrapper that reports the child's own peak RSS."""
    wrapper = ("import resource,subprocess,sys,time;t=time.perf_counter();r=subprocess.run(sys.argv[1:]);"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024, time.perf_counter()-t);"
               "sys.exit(r.returncode)")
    proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    mib, sec = proc.stdout.strip().splitlines()[-1].split()
    return float(mib), float(sec)


if __name__ == "__main__":
    main()
