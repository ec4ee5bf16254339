"""Score levers on finished one-class runs, decided off the test split (issue 20).

    python benchmarks/score_levers.py --cases reports/benchmarks/mnist-s0.csv --data-root ../shared/data \
        --out reports/benchmarks/score-levers-mnist.csv

For each case of ``--cases`` (``anomgan benchmark`` output; its runs in ``<stem>.runs/`` or ``--runs-dir``) and
each variant below, the run's networks get a new scorer (``rescore_with``: bank, Gaussians and calibration
refitted from the case's own training / normal-validation splits, as a fresh run would) and score two sets:

- ``val``: the run's normal-validation images against 2,000 other-class images from the data set's *training*
  split (never seen in training, which holds only the normal class): the set decisions are made on;
- ``test``: the official test split, reported, never chosen from.

Besides the library's components, the script measures two candidate signals computed from the same networks
(``encoder_layer_maha``: the encoder's trunk layers, pooled 2x2, one Ledoit-Wolf Gaussian each, as
``layer_maha`` does for D; ``layer_maha_pool4``: D's layers pooled 4x4) and adds each to the shipped weighting
with the weight of ``layer_maha`` (z-scores on normal-validation, as the ``calibrated`` combination does).
Timings: ``fit_s`` builds the scorer; ``score_img_s`` is the test split's encoder-path scoring rate.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from anomgan import AnoGAN, Inversion
from anomgan.components import ANOMALY_MAP, COMPONENTS, NAMES
from anomgan.runs import run_data
from anomgan.training.fit import rescore_with
from anomgan.training.normal_stats import bank_indices, fit_gaussian
from anomgan.scoring.memory import mahalanobis_sq

IMAGE_SCORES = [c for c in NAMES if ANOMALY_MAP not in COMPONENTS[c].needs]  # every component but map_max
VARIANTS = {  # name -> score.* overrides of the run's config
    "shipped": {},
    "coreset 2048": {"coreset_size": 2048},
    "coreset 1024": {"coreset_size": 1024},
    "coreset 512": {"coreset_size": 512},
    "random bank 1024": {"bank_size": 1024},
    "knn k=1": {"knn_k": 1},
}


def trunk_layers(trunk: torch.nn.Module, x: torch.Tensor, pool: int) -> list[torch.Tensor]:
    """Every LeakyReLU output of a conv trunk, averaged to ``pool`` x ``pool`` (B, C * pool^2)."""
    out, h = [], x.contiguous(memory_format=torch.channels_last)
    for m in trunk.body:
        h = m(h)
        if isinstance(m, torch.nn.LeakyReLU):
            out.append(torch.nn.functional.adaptive_avg_pool2d(h, min(pool, h.shape[-1])).flatten(1).float())
    return out


@torch.no_grad()
def layer_maha(trunk, xb: torch.Tensor, xs: list, pool: int) -> list[np.ndarray]:
    """Sum over the trunk's layers of d^2 / dim to each layer's Gaussian fitted on ``xb``, for each set in ``xs``."""
    fits = [fit_gaussian(b) for b in trunk_layers(trunk, xb, pool)]
    res = []
    for x in xs:
        parts = [torch.cat(p) for p in zip(*(trunk_layers(trunk, x[i:i + 512], pool) for i in range(0, len(x), 512)))]
        res.append(sum(mahalanobis_sq(h, *g) / h.shape[1] for h, g in zip(parts, fits)).numpy())
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=Path, required=True)
    ap.add_argument("--runs-dir", type=Path, default=None)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    ap.add_argument("--n-anomalies", type=int, default=2000)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    cases = pd.read_csv(args.cases, dtype={"normal_classes": str})
    runs = args.runs_dir or args.cases.parent / f"{args.cases.stem}.runs"
    rows = []
    for case in cases.to_dict("records"):
        run = runs / f"{case['protocol']}-{case['normal_classes'].replace(',', '_')[:40]}-s{case['seed']}"
        det = AnoGAN.load(run, device="cpu")
        ds, sp = run_data(det, args.data_root)
        rng = np.random.default_rng(123)
        train_all = np.setdiff1d(np.arange(len(ds.x)), np.concatenate([sp.train, sp.val, sp.test]))
        other = train_all[~np.isin(ds.y[train_all], sp.normal_classes)]
        val_idx = np.concatenate([sp.val, rng.choice(other, min(args.n_anomalies, len(other)), replace=False)])
        sets = {"val": (ds.x[val_idx], np.r_[np.zeros(len(sp.val)), np.ones(len(val_idx) - len(sp.val))]),
                "test": (ds.x[sp.test], sp.test_targets(ds))}
        base = det.scorer_
        pre = det.preprocessor_
        xb = pre.transform(ds.x[sp.train[bank_indices(len(sp.train), det.config_.score.bank_size,
                                                      det.config_.train.seed).numpy()]])
        xs = [pre.transform(sets[k][0]) for k in sets]
        val_n = pre.transform(ds.x[sp.val])
        extra = {}
        with torch.no_grad():
            for name, trunk, pool in (("encoder_layer_maha", base.encoder.trunk, 2),
                                      ("layer_maha_pool4", base.discriminator.trunk, 4)):
                vals = layer_maha(trunk, xb, xs + [val_n], pool)
                extra[name] = dict(zip([*sets, "calib"], vals))
        for variant in args.variants.split(","):
            cfg = copy.deepcopy(det.config_)
            cfg.score = dataclasses.replace(cfg.score, **VARIANTS[variant])
            start = time.perf_counter()
            scorer = rescore_with(base, cfg, ds.x[sp.train], ds.x[sp.val], IMAGE_SCORES)
            fit_s = time.perf_counter() - start
            det.scorer_ = scorer
            cal = scorer.calibration(Inversion("encoder"))
            for set_name, (x, y) in sets.items():
                start = time.perf_counter()
                res = det.score_components(x, "encoder")
                seconds = time.perf_counter() - start
                row = {"case": run.name, "normal": case["normal_classes"], "seed": case["seed"], "variant": variant,
                       "set": set_name, "n": len(x), "roc_auc": roc_auc_score(y, res["anomaly_score"]),
                       "fit_s": fit_s, "score_img_s": len(x) / seconds, "bank_rows": len(scorer.bank)}
                for c in IMAGE_SCORES:
                    row[f"{c}_roc_auc"] = roc_auc_score(y, res[c])
                if variant == "shipped":  # candidates added to the shipped weighting with layer_maha's weight
                    comps = {c: torch.as_tensor(res[c]) for c in scorer.components}
                    z = scorer.combine(comps, cal).numpy() * float(scorer.weights.sum())
                    w = float(scorer.spec.weights["layer_maha"])
                    for name, v in extra.items():
                        c = v["calib"]
                        zc = (v[set_name] - c.mean()) / c.std()
                        row[f"{name}_roc_auc"] = roc_auc_score(y, v[set_name])
                        row[f"shipped + {name}_roc_auc"] = roc_auc_score(y, (z + w * zc) / (scorer.weights.sum() + w))
                rows.append(row)
                print(f"{run.name} {variant:18s} {set_name:4s} AUC {row['roc_auc']:.4f}  {row['score_img_s']:7.0f} img/s"
                      + "".join(f"  {k[:-8]} {v:.4f}" for k, v in row.items() if k.startswith("shipped +")), flush=True)
        frame = pd.DataFrame(rows)
        frame["machine"] = f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out, index=False)  # after every case: a stopped study keeps what it measured
    print(pd.DataFrame(rows).pivot_table(index="variant", columns="set", values="roc_auc").to_string())


if __name__ == "__main__":
    main()
