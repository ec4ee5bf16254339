"""Re-score the finished models of a benchmark with the current scoring (no retraining).

    python benchmarks/rescore.py --cases reports/benchmarks/mnist-cpu-one-class.csv --config configs/mnist.yaml \
        --data-root ../shared/data --out reports/benchmarks/mnist-cpu-one-class-maha.csv

For each case of ``--cases`` (a CSV written by ``anomgan benchmark``; ``--classes`` picks some), loads its final
model from the ``<cases>.runs/`` folder (or ``--runs-dir``) and gives its networks a new scorer with the score
settings of ``--config`` (``anomgan.training.fit.rescore_with``): the bank and Gaussians fitted from the case's
normal-training split (the samples a fresh run keeps: same split, same seeded subset), every component computed
(the unweighted ones for their own ROC-AUC columns), calibrated on the normal-validation split. Scores the test
split once and writes a CSV in the benchmark's format; ``train_seconds`` is the original plus the time to build the
new scorer.

When ``--config`` asks for other encoder epochs than a run was trained with, the run's encoder is trained anew
for that many epochs on its own G and D first (``epoch_split.train_on``: what a fresh run of the config trains,
since training is deterministic and resumes exactly), and ``train_seconds`` swaps the run's encoder epochs'
seconds for the new ones.
"""

from __future__ import annotations

import time

import pandas as pd
from epoch_split import train_on  # this script's folder is on sys.path
from score_levers import case_arguments, finished_runs

from anomgan import AnoGAN
from anomgan.benchmark import summarise
from anomgan.components import ANOMALY_MAP, COMPONENTS, NAMES
from anomgan.config import build_config
from anomgan.evaluation.metrics import evaluate_scores
from anomgan.run_format import load_run
from anomgan.runs import load_data, score_test_split, split_data
from anomgan.training.fit import model_space, rescore_with

SCORES = [c for c in NAMES if ANOMALY_MAP not in COMPONENTS[c].needs]  # map_max needs a run with anomaly maps


def main() -> None:
    ap = case_arguments(__doc__, decision_sets=False)
    ap.add_argument("--config", required=True, help="scoring settings (score.*) applied to every run, and its "
                    "encoder epochs when they differ from a run's")
    args = ap.parse_args()
    cfg = build_config(args.config, flags={"data.root": args.data_root})
    ds = load_data(cfg)
    rows, was = [], []
    for case, run in finished_runs(args):
        det = AnoGAN.load(run, device="cpu")
        det.config_.score = cfg.score
        splits = split_data(det.config_, ds)
        train_seconds = case["train_seconds"]
        if cfg.encoder.epochs != det.config_.encoder.epochs:
            state = load_run(run).training_state()
            xt, _ = model_space(det.preprocessor_, ds.x[splits.train], ds.x[splits.val])
            trainer = train_on(det.config_, state, xt, det.config_.train.epochs, cfg.encoder.epochs)
            det.scorer_.encoder.load_state_dict(trainer.encoder.state_dict())
            seconds = [sum(r["seconds"] for r in history if r["phase"] == "encoder")
                       for history in (state["history"], trainer.state.history[len(state["history"]):])]
            train_seconds += seconds[1] - seconds[0]
            det.config_.encoder.epochs = cfg.encoder.epochs
        start = time.perf_counter()
        det.scorer_ = rescore_with(det.scorer_, det.config_, ds.x[splits.train], ds.x[splits.val], SCORES)
        bank_seconds = time.perf_counter() - start
        frame, res, score_seconds = score_test_split(det, ds, splits, cfg.score.method)
        report = evaluate_scores(frame, float(res["threshold"][0]))
        overall = report[report["anomalous_class"] == "all"].set_index("component")
        row = {**case, "method": cfg.score.method,
               "roc_auc": overall.loc["anomaly_score", "roc_auc"],
               "average_precision": overall.loc["anomaly_score", "average_precision"],
               **{f"{c}_roc_auc": overall.loc[c, "roc_auc"] for c in SCORES},
               "f1": overall.loc["anomaly_score", "f1"], "train_seconds": train_seconds + bank_seconds,
               "score_seconds": score_seconds, "rescored_from": args.cases.name,
               "encoder_epochs": det.config_.encoder.epochs}
        rows.append(row)
        was.append(case["roc_auc"])
        print(f"{run.name}: ROC-AUC {row['roc_auc']:.4f} (was {case['roc_auc']:.4f}; feature_knn alone "
              f"{row['feature_knn_roc_auc']:.4f}, layer_maha alone {row['layer_maha_roc_auc']:.4f})", flush=True)
    out = pd.DataFrame(rows)
    out.to_csv(args.out, index=False)
    summarise(out).to_csv(args.out.with_name(f"{args.out.stem}.summary.csv"), index=False)
    print(f"mean ROC-AUC {out.roc_auc.mean():.4f} (was {sum(was) / len(was):.4f}) -> {args.out}")


if __name__ == "__main__":
    main()
