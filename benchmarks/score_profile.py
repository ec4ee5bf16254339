"""Where encoder-path scoring spends its time, stage by stage, on one run (the first step of issue 20's speed goal).

    python benchmarks/score_profile.py --run runs/m3 --data-root ../shared/data --n 20000 \
        [--set "score.weights={...}"] --out reports/benchmarks/score_profile.csv

Scores ``--n`` inputs of the run's data in batches of ``--batch-size`` through the scorer's own stages, timing
each over all batches (median of ``--repeats`` passes): preprocessing, D's pass (with the pooled layers), the
encoder and G (the inversion), D's features of the reconstruction, then each component and the combination.
``total`` is ``Scorer.score`` end to end on the same batches; ``reading`` is loading the .npy chunks.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from common import refit_score, timed  # this script's folder is on sys.path

from anomgan import AnoGAN, Inversion
from anomgan.components import COMPONENTS
from anomgan.runs import run_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="score settings to refit the run's scorer with first (rescore_with), repeatable")
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/score_profile.csv"))
    args = ap.parse_args()
    det = AnoGAN.load(args.run, device="cpu")
    ds, split = run_data(det, args.data_root)
    if args.set:
        refit_score(det, ds, split, args.set)
    scorer = det.scorer_
    x = ds.x[: args.n]
    batches = [torch.from_numpy(np.ascontiguousarray(x[i:i + args.batch_size]))
               for i in range(0, len(x), args.batch_size)]
    inv = Inversion("encoder")
    cal = scorer.calibration(inv)
    stages: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", (x[:, 0] * 255).astype(np.uint8))
        stages["reading .npy"] = timed(lambda: [np.asarray(np.load(Path(tmp) / "x.npy", mmap_mode="r")[i:i + 512])
                                                for i in range(0, len(x), 512)], args.repeats)
    xm = [scorer.preprocess(b) for b in batches]
    stages["preprocess"] = timed(lambda: [scorer.preprocess(b) for b in batches], args.repeats)
    with torch.no_grad():
        stages["D pass with pooled layers"] = timed(
            lambda: [scorer.discriminator.forward_with_maps(b, keep_maps=False) for b in xm], args.repeats)
        stages["encoder + G (inversion)"] = timed(lambda: [scorer.generator(scorer.encoder(b)) for b in xm],
                                                  args.repeats)
        x_hat = [scorer.generator(scorer.encoder(b)) for b in xm]
        stages["D features of G(E(x))"] = timed(lambda: [scorer.discriminator.features(h) for h in x_hat],
                                                args.repeats)
        passes = [scorer.scoring_pass(b, inv) for b in xm]
        for c in scorer.components:
            stages[f"component {c}"] = timed(lambda c=c: [COMPONENTS[c].compute(p, scorer) for p in passes],
                                             args.repeats)
        values = [{c: COMPONENTS[c].compute(p, scorer) for c in scorer.components} for p in passes]
        stages["combine"] = timed(lambda: [scorer.combine(v, cal) for v in values], args.repeats)
        total = timed(lambda: [scorer.score(b, inv) for b in xm], args.repeats)
    rows = [{"stage": k, "seconds": v, "share_of_total": v / total} for k, v in stages.items()]
    rows.append({"stage": "total (Scorer.score)", "seconds": total, "share_of_total": 1.0})
    frame = pd.DataFrame(rows)
    frame["images_per_s_total"] = len(x) / total
    frame["n"], frame["batch_size"] = len(x), args.batch_size
    frame["machine"] = f"{platform.machine()} {os.cpu_count()} cores, CPU, torch {torch.__version__}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(frame.to_string(index=False))


if __name__ == "__main__":
    main()
