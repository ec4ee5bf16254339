"""Where a GAN training step of a config spends its time, part by part (issue 20's training-time target).

    python benchmarks/train_profile.py --config configs/mnist.yaml --data-root ../shared/data \
        --out reports/benchmarks/train-profile.csv

Builds the config's models (``Trainer``, as ``anomgan train`` does) on the normal class's training images and
times, each as the median of ``--repeats`` runs of ``--calls`` calls: G's forward for the critic's fakes, D's step on
the real + fake batch and the rows ``train.negatives`` adds (forward and backward), the WGAN-GP penalty on
``train.gp_fraction`` of the batch (its double backward included), G's step, and the
trainer's whole GAN step (``Trainer.gan_epoch`` over ``--steps`` batches, so optimisers, EMA and bookkeeping
included). Then ways to make the step or an epoch cheaper: bfloat16 autocast on the CPU for D's and G's steps (the
CPU has no AMX here, so oneDNN runs bf16 through AVX-512), the lazy penalty (``train.gp_every=4``) on the whole step,
and other batch sizes (``--batch-sizes``: an epoch costs ``ms_per_image`` times its images, whatever the batch).
``--with KEY=VALUE`` (repeatable) times the whole step again with that config value, e.g. ``train.rotation=1``.
One CSV row per part: milliseconds per call and, for the step's parts, their share of the whole step.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pandas as pd
import torch
from common import machine_label, timed  # this script's folder is on sys.path

from anomgan.config import build_config, with_values
from anomgan.data import load_source
from anomgan.data.preprocess import fit_preprocessor
from anomgan.io import atomic_path
from anomgan.progress import ProgressBar
from anomgan.training import losses
from anomgan.training.fit import model_args_for
from anomgan.training.stabilisers import negative_count
from anomgan.training.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/mnist.yaml")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--normal-class", default="8")
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-sizes", default="32,128", help="the whole step again at these train.batch_size values")
    ap.add_argument("--with", dest="variants", action="append", default=[], metavar="KEY=VALUE",
                    help="the whole step again with this config value (repeatable), e.g. train.rotation=1")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="change the config itself first (repeatable): the base every row is timed on")
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/train-profile.csv"))
    args = ap.parse_args()
    on_this_cpu = [*args.overrides, "train.device=cpu", f"data.root={args.data_root}"]
    cfg = build_config(args.config, overrides=on_this_cpu)
    data = load_source(cfg.data.source, root=cfg.data.root)
    x = data.x[data.y == args.normal_class]
    pre = fit_preprocessor(x, data.kind, image_size=cfg.data.image_size, channels=cfg.data.channels,
                           resize=cfg.data.resize)
    x_train = pre.transform(x)
    t = cfg.train

    def trainer(c=cfg) -> Trainer:
        return Trainer(c, model_args_for(c, pre), x_train[: c.train.batch_size * args.steps], torch.device("cpu"))

    tr = trainer()
    G, D, b, z_dim = tr.generator.train(), tr.discriminator.train(), t.batch_size, cfg.model.z_dim
    real = x_train[:b]
    with torch.no_grad():
        fake = G(torch.randn(b, z_dim))
    # the rows the trainer's passes hold: train.negatives adds its negatives to D's pass (their content does not
    # change the cost: real images stand in), and the penalty runs on train.gp_fraction of the batch
    n_neg = negative_count(t.negative_rows, t.negatives, b) if t.negatives > 0 and real.dim() == 4 else 0
    n_gp = max(1, round(t.gp_fraction * b))

    def g_forward():
        with torch.no_grad():
            G(torch.randn(b, z_dim))

    def d_step(amp=False):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = D(torch.cat([real, fake, real[:n_neg]])).float()
            loss = losses.d_loss(t.loss, out[:b], out[b:])
        D.zero_grad(set_to_none=True)
        loss.backward()

    def penalty():
        gp = losses.gradient_penalty(D, real[:n_gp], fake[:n_gp])
        D.zero_grad(set_to_none=True)
        gp.backward()

    def g_step(amp=False):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = losses.g_loss(t.loss, D(G(torch.randn(b, z_dim))).float())
        G.zero_grad(set_to_none=True)
        loss.backward()

    def calls(fn, *a):
        return lambda: [fn(*a) for _ in range(args.calls)]

    def whole_step(c=cfg):
        tr_ = trainer(c)
        bar = ProgressBar("profile", 0, enabled=False)
        tr_.gan_epoch(0, bar)  # warm-up
        return timed(lambda: tr_.gan_epoch(1, bar), args.repeats) / args.steps * 1000

    parts = {"G forward, no grad (critic's fakes)": (calls(g_forward), t.n_critic),
             "D step: real + fake batch (+ negatives), forward and backward": (calls(d_step), t.n_critic),
             "gradient penalty on train.gp_fraction of the batch, double backward":
                 (calls(penalty), t.n_critic if t.loss == "wgan-gp" else 0),
             "G step: G and D forward, backward": (calls(g_step), 1)}
    for fn, _ in parts.values():
        fn()  # warm-up
    step_ms = whole_step()
    rows = []
    for part, (fn, per_step) in parts.items():
        ms = timed(fn, args.repeats) / args.calls * 1000
        rows.append({"part": part, "ms_per_call": ms, "calls_per_step": per_step,
                     "share_of_step": ms * per_step / step_ms})
    rows.append({"part": "whole GAN step (Trainer.gan_epoch)", "ms_per_call": step_ms, "calls_per_step": 1,
                 "share_of_step": 1.0, "batch_size": b})
    for part, fn in (("D step under bf16 autocast", calls(d_step, True)), ("G step under bf16 autocast",
                                                                           calls(g_step, True))):
        fn()
        rows.append({"part": part, "ms_per_call": timed(fn, args.repeats) / args.calls * 1000})
    if t.loss == "wgan-gp":
        lazy = with_values(copy.deepcopy(cfg), {"train": {"gp_every": 4}})
        rows.append({"part": "whole GAN step, train.gp_every=4", "ms_per_call": whole_step(lazy), "calls_per_step": 1,
                     "batch_size": b})
    for size in (int(v) for v in args.batch_sizes.split(",") if v):  # per image: an epoch's cost at another batch
        other = with_values(copy.deepcopy(cfg), {"train": {"batch_size": size}})
        rows.append({"part": f"whole GAN step, train.batch_size={size}", "ms_per_call": whole_step(other),
                     "calls_per_step": 1, "batch_size": size})
    for flag in args.variants:  # the whole step with another value of one key, beside the shipped step above
        other = build_config(args.config, overrides=[*on_this_cpu, flag])
        rows.append({"part": f"whole GAN step, {flag}", "ms_per_call": whole_step(other), "calls_per_step": 1,
                     "batch_size": other.train.batch_size})
    frame = pd.DataFrame(rows).assign(config=args.config, normal_class=args.normal_class, machine=machine_label())
    frame["ms_per_image"] = frame["ms_per_call"] / frame["batch_size"]  # whole steps only
    with atomic_path(args.out) as tmp:
        frame.to_csv(tmp, index=False)
    print(frame[["part", "ms_per_call", "share_of_step"]].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
