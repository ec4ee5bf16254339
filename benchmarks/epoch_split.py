"""Encoder epochs against GAN epochs at equal training time (issue 20), on finished one-class runs.

    python benchmarks/epoch_split.py --cases reports/benchmarks/mnist-cpu-shipped-s2.csv --classes 8,2,3 \
        --data-root ../shared/data --out reports/benchmarks/epoch-split.csv

Each case's run (the shipped config: 6 GAN epochs, then 10 encoder epochs) is taken up again from its stored
training state, as ``anomgan train`` takes up a finished run given more epochs, except that the encoder always
starts anew from its seeded initialisation, as a fresh run's does:

- ``gan 6``: the run's own GAN; the encoder trained for up to 20 epochs;
- ``gan 8``: the GAN trained 2 epochs more first (its optimisers and RNG continue where the run stopped, so it
  is what an 8-epoch run trains from scratch), then the same encoder schedule.

After 2, 5, 10 and 20 encoder epochs the detector is built as a fresh run builds it (bank, coreset, Gaussians,
calibration: ``build_scorer``) and scores ``score_levers.py``'s two sets: ``val`` (normal-validation images
against 2,000 other-class training images, where decisions are made) and ``test`` (the test split, reported).
Training is deterministic on the CPU, so ``gan 6`` after 10 encoder epochs is the run itself: its test ROC-AUC
must equal the case's row (the difference is printed). ``train_seconds`` adds the epochs' own seconds (the run's
metrics for its 6 GAN epochs, this process for the rest); the bank and calibration (~20 s) are left out.
"""

from __future__ import annotations

import copy
import time

import pandas as pd
import torch
from common import machine_label  # this script's folder is on sys.path
from score_levers import case_arguments, decision_sets, finished_runs
from sklearn.metrics import roc_auc_score

from anomgan import AnoGAN
from anomgan.run_format import load_run
from anomgan.runs import run_data
from anomgan.training.fit import build_scorer, model_space
from anomgan.training.trainer import Trainer, build_seeded_models

ENCODER_EPOCHS = (2, 5, 10, 20)
EXTRA_GAN_EPOCHS = (0, 2)


def fresh_encoder(state: dict, seed: int) -> dict:
    """``state`` with the encoder, its optimiser and its epoch count as a new run starts them."""
    encoder = build_seeded_models(state["model_args"], seed)[2]
    return {**state, "encoder": encoder.state_dict(), "encoder_epoch": 0, "phase": "encoder",
            "opt_e": {"state": {}, "param_groups": state["opt_e"]["param_groups"]}}


def train_on(cfg, state: dict, xt: torch.Tensor, gan_epochs: int, encoder_epochs: int,
             on_epoch=None) -> Trainer:
    """The run at ``state`` trained on to ``gan_epochs`` GAN epochs, then a new encoder for ``encoder_epochs``
    (what a fresh run of those epochs trains: training is deterministic and resumes exactly)."""
    vcfg = copy.deepcopy(cfg)
    vcfg.train.epochs, vcfg.encoder.epochs = gan_epochs, encoder_epochs
    trainer = Trainer(vcfg, state["model_args"], xt, torch.device("cpu"), on_epoch=on_epoch,
                      preprocess=state["preprocess"])
    trainer.load_state_dict(fresh_encoder(state, cfg.train.seed))
    trainer.run()
    return trainer


class Probe:
    """``on_epoch`` hook: after each of ``ENCODER_EPOCHS`` encoder epochs, the detector built from the trainer's
    networks as a fresh run builds it, and scored on the decision sets: one row each."""

    def __init__(self, case: dict, det: AnoGAN, state: dict, sets: dict, xt, xv):
        self.case, self.det, self.state, self.sets, self.xt, self.xv = case, det, state, sets, xt, xv
        self.rows: list[dict] = []

    def __call__(self, trainer: Trainer) -> None:
        s = trainer.state
        if s.phase != "encoder" or s.encoder_epoch not in ENCODER_EPOCHS:
            return
        before = self.state["history"]  # the run's own epochs: its GAN's seconds, and an encoder trained anew here
        seconds = (sum(r["seconds"] for r in before if r["phase"] == "gan")
                   + sum(r["seconds"] for r in s.history[len(before):]))
        det, case = self.det, self.case
        det.scorer_ = build_scorer(trainer.cfg, det.preprocessor_, self.state["model_args"], trainer.scorer_networks(),
                                   self.xt, self.xv, torch.device("cpu"))
        row = {"dataset": case["dataset"], "normal_classes": case["normal_classes"], "seed": case["seed"],
               "gan_epochs": s.epoch, "encoder_epochs": s.encoder_epoch, "train_seconds": seconds}
        for name in ("val", "test"):
            x, y = self.sets[name]
            res = det.score_components(x, "encoder")
            row[f"{name}_roc_auc"] = 100 * roc_auc_score(y, res["anomaly_score"])
            row[f"{name}_residual_roc_auc"] = 100 * roc_auc_score(y, res["residual"])
        self.rows.append({**row, "machine": machine_label()})
        print({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
        if (s.epoch, s.encoder_epoch) == (det.config_.train.epochs, det.config_.encoder.epochs):
            print(f"  the run itself: test {row['test_roc_auc']:.4f} against its row {100 * case['roc_auc']:.4f}",
                  flush=True)


def main() -> None:
    args = case_arguments(__doc__).parse_args()
    rows = []
    for case, run in finished_runs(args):
        det = AnoGAN.load(run, device="cpu")
        pre, cfg = det.preprocessor_, det.config_
        state = load_run(run).training_state()
        ds, sp = run_data(det, args.data_root)
        xt, xv = model_space(pre, ds.x[sp.train], ds.x[sp.val])
        probe = Probe(case, det, state, decision_sets(ds, sp, args.n_anomalies), xt, xv)
        for extra in EXTRA_GAN_EPOCHS:
            start = time.perf_counter()
            train_on(cfg, state, xt, cfg.train.epochs + extra, max(ENCODER_EPOCHS), on_epoch=probe)
            print(f"{run.name} gan +{extra}: {time.perf_counter() - start:.0f} s", flush=True)
        rows += probe.rows
        args.out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(args.out, index=False)  # after each case: a stopped study keeps what it has


if __name__ == "__main__":
    main()
