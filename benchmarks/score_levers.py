"""Score levers on finished one-class runs, decided off the test split (issue 20).

    python benchmarks/score_levers.py --cases reports/benchmarks/mnist-s0.csv --data-root ../shared/data \
        --out reports/benchmarks/score-levers-mnist.csv

For each case of ``--cases`` (``anomgan benchmark`` output; its runs in ``<stem>.runs/`` or ``--runs-dir``) the
run's scorer scores two sets once:

- ``val``: the run's normal-validation images against 2,000 other-class images from the data set's *training*
  split (never seen in training, which holds only the normal class): the set decisions are made on;
- ``test``: the official test split, reported, never chosen from.

Each variant then changes one part of the score and recombines the components as the ``calibrated``
combination does (weighted z-scores, location and scale from the scorer's own normal-validation calibration
samples):

- ``coreset N``: ``feature_knn`` against N rows of the run's bank picked by greedy k-center selection
  (``score.coreset_size``, ``coreset_indices``: the library's code on the run's stored bank, as a fresh run with
  that setting would build it); ``random N``: N rows drawn at random instead (the control). Only N below the
  stored bank's rows: a run with ``score.coreset_size`` stores its coreset, so there N rows are a k-center
  selection out of that coreset;
- ``+ encoder_layer_maha``: the encoder's trunk layers pooled 2x2, one Ledoit-Wolf Gaussian each on the bank's
  images, d^2/dim summed (``layer_maha``'s recipe on E), added with ``layer_maha``'s weight;
- ``+ layer_maha_pool4``: D's layers pooled 4x4 instead of 2x2, added likewise;
- ``- feature_residual``: without the component that costs the second D pass (on the reconstruction);
- ``+ input_knn W``: ``input_knn`` (kNN on the images themselves, model space, the run's coreset size) added at
  weight W.
- ``+ map_max layer L W``: the per-location Gaussians of critic layer L (``layer_maha_map``, the real-image map)
  fitted on the run's bank, the map's top 1 % pooled by ``map_max`` (``rescore_with``, as a fresh run with
  ``score.map_weights``/``map_layers`` would build it) and added at weight W;
- ``knn_k K``: ``feature_knn`` over the run's own coreset (``score.coreset_size`` rows) with K neighbours instead
  of ``score.knn_k``; ``feature_knn cosine``: the same search with D's features and the bank scaled to unit length
  (its own coreset), so only their direction counts.
- ``+ layer_knn pool P W``: ``feature_knn``'s recipe on every D layer (``layer_maha``'s input, pooled P x P): per
  layer a ``score.coreset_size``-row coreset of the bank images' activations, the mean distance to the
  ``score.knn_k`` nearest, over that layer's mean on the calibration samples, averaged over layers; added at
  weight W. ``layer_knn pool P for layer_maha`` puts it in ``layer_maha``'s place at its weight;
  ``+ whitened layer_knn W`` measures the distances after whitening each layer by its Ledoit-Wolf Gaussian
  (a nearest-neighbour Mahalanobis distance: many modes, each layer's own metric).

``--levers coreset,knn_k,...`` computes only those groups of variants (default: all): ``coreset``, ``knn_k``,
``layer_maha``, ``input_knn``, ``map_max``, ``layer_knn``.

``--set KEY=VALUE`` (repeatable) first gives each run's networks a scorer with those score settings
(``rescore_with``: bank, Gaussians and calibration refitted from the run's own splits, as a fresh run with them
would build it): the levers are then measured on top of that score, e.g. a newer shipped one.
``--shipped-only`` skips the variants: the val and test ROC-AUC of runs trained with another config.
``--weights "LABEL:comp=w,comp=w"`` (repeatable) adds a variant that recombines the run's own components with
these weights in place of the shipped ones (a component left out keeps its shipped weight; weight 0 drops it).
``shipped`` recomputed this way equals the scorer's own ``anomaly_score`` (checked: largest difference printed).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from common import combine, machine_label, parse_weights, refit_score, save_values  # this script's folder: sys.path
from sklearn.metrics import roc_auc_score

from anomgan import AnoGAN
from anomgan.benchmark import case_run_dir, default_runs_dir, read_cases
from anomgan.runs import run_data
from anomgan.scoring.memory import knn_distance, mahalanobis_sq
from anomgan.training.fit import MAX_CALIBRATION, rescore_with
from anomgan.training.normal_stats import bank_indices, coreset_indices, fit_gaussian

CORESETS = (2048, 1024, 512, 256, 128)
RANDOM = (1024, 512)
INPUT_KNN_WEIGHTS = (2.0, 5.0)
KNN_K = (1, 3, 10, 20)
MAP_LAYERS = (0, 1)  # the critic's first two layers: 16 x 16 and 8 x 8 at 32 px
MAP_MAX_WEIGHTS = (2.0, 5.0, 10.0)


def trunk_layers(trunk: torch.nn.Module, x: torch.Tensor, pool: int) -> list[torch.Tensor]:
    """Every LeakyReLU output of a conv trunk, averaged to ``pool`` x ``pool`` (B, C * pool^2)."""
    out, h = [], x.contiguous(memory_format=torch.channels_last)
    for m in trunk.body:
        h = m(h)
        if isinstance(m, torch.nn.LeakyReLU):
            out.append(torch.nn.functional.adaptive_avg_pool2d(h, min(pool, h.shape[-1])).flatten(1).float())
    return out


def batched(fn, x: torch.Tensor, size: int = 512):
    parts = [fn(x[i:i + size]) for i in range(0, len(x), size)]
    return [torch.cat(p) for p in zip(*parts)] if isinstance(parts[0], list) else torch.cat(parts)


@torch.no_grad()
def layer_maha(trunk, xb: torch.Tensor, xs: dict, pool: int) -> dict:
    """Sum over the trunk's layers of d^2 / dim to each layer's Gaussian fitted on ``xb``, for each set of ``xs``."""
    fits = [fit_gaussian(b) for b in batched(lambda t: trunk_layers(trunk, t, pool), xb)]
    out = {}
    for name, x in xs.items():
        layers = batched(lambda t: trunk_layers(trunk, t, pool), x)
        out[name] = sum(mahalanobis_sq(h, *g) / h.shape[1] for h, g in zip(layers, fits)).numpy()
    return out


def decision_sets(ds, sp, n_anomalies: int) -> dict:
    """``{name: (images, targets)}``: ``calib`` (the run's calibration samples, no targets), ``val`` (its
    normal-validation images against ``n_anomalies`` other-class *training* images) and ``test`` (the test split)."""
    rng = np.random.default_rng(123)
    unused = np.setdiff1d(np.arange(len(ds.x)), np.concatenate([sp.train, sp.val, sp.test]))
    other = unused[~np.isin(ds.y[unused], sp.normal_classes)]  # other classes' training images
    val_idx = np.concatenate([sp.val, rng.choice(other, min(n_anomalies, len(other)), replace=False)])
    return {"calib": (ds.x[sp.val[:MAX_CALIBRATION]], None),
            "val": (ds.x[val_idx], np.r_[np.zeros(len(sp.val)), np.ones(len(val_idx) - len(sp.val))]),
            "test": (ds.x[sp.test], sp.test_targets(ds))}


def case_arguments(description: str, decision_sets: bool = True) -> argparse.ArgumentParser:
    """The command line of a study on a benchmark's finished runs: which cases, where their runs and data are
    (and, with ``decision_sets``, how many other-class images its val set holds)."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=Path, required=True, help="an 'anomgan benchmark' CSV")
    ap.add_argument("--runs-dir", type=Path, default=None, help="the cases' runs (default: <cases>.runs/)")
    ap.add_argument("--data-root", default=None)
    if decision_sets:
        ap.add_argument("--n-anomalies", type=int, default=2000, help="other-class training images in the val set")
    ap.add_argument("--classes", default=None, help="only these normal classes, e.g. 8,2,3 (default: every case)")
    ap.add_argument("--out", type=Path, required=True)
    return ap


def finished_runs(args) -> Iterator[tuple[dict, Path]]:
    """Each case of ``args.cases`` that ``args.classes`` selects, with its run directory."""
    cases = read_cases(args.cases)
    if args.classes:
        cases = cases[cases["normal_classes"].isin(args.classes.split(","))]
    runs = args.runs_dir or default_runs_dir(args.cases)
    for case in cases.to_dict("records"):
        yield case, case_run_dir(runs, case["protocol"], case["normal_classes"], case["seed"])


LAYER_KNN_POOLS = (2, 4)
LAYER_KNN_WEIGHTS = (2.5, 5.0, 7.5, 10.0)
LEVER_GROUPS = ("coreset", "knn_k", "layer_maha", "input_knn", "map_max", "layer_knn")


def whitener(bank: torch.Tensor):
    """``h -> (h - mean) L`` for ``bank``'s Ledoit-Wolf Gaussian (precision = L L^T): its length is h's
    Mahalanobis distance."""
    mean, precision = fit_gaussian(bank)
    chol = torch.linalg.cholesky(precision.double()).float()
    return lambda h: (h - mean) @ chol


@torch.no_grad()
def layer_knn(trunk, xb: torch.Tensor, xs: dict, pool: int, size: int, k: int, whiten: bool = False) -> dict:
    """Per trunk layer (pooled ``pool`` x ``pool``): the mean distance to the ``k`` nearest rows of a ``size``-row
    coreset of ``xb``'s activations, over its mean on ``xs["calib"]``, averaged over layers; for each set of ``xs``.
    ``whiten``: distances after whitening each layer by its Ledoit-Wolf Gaussian of ``xb``."""
    banks = batched(lambda t: trunk_layers(trunk, t, pool), xb)
    per_set = {name: batched(lambda t: trunk_layers(trunk, t, pool), x) for name, x in xs.items()}
    out = {name: 0.0 for name in xs}
    for i, bank in enumerate(banks):
        project = whitener(bank) if whiten else torch.nn.Identity()
        rows = project(bank)
        rows = rows[coreset_indices(rows, size)]
        d = {name: knn_distance(project(layers[i]), rows, k).double() for name, layers in per_set.items()}
        for name in xs:
            out[name] = out[name] + d[name] / d["calib"].mean() / len(banks)
    return {name: v.numpy() for name, v in out.items()}


def lever_variants(det: AnoGAN, ds, sp, sets: dict, comps: dict, weights: dict, groups=LEVER_GROUPS) -> dict:
    """``{variant: (component values per set, weights)}`` for ``shipped`` (``comps``, the run's own component values
    per set, and ``weights``) and every lever of ``groups`` above on one finished run, each changing one part of
    them."""
    scorer, pre = det.scorer_, det.preprocessor_
    xm = {k: pre.transform(x) for k, (x, _) in sets.items()}
    with torch.no_grad():
        feats = {k: batched(scorer.discriminator.features, x) for k, x in xm.items()}
    variants = {"shipped": (comps, weights)}
    bank, size, k_nn = scorer.bank, det.config_.score.coreset_size, scorer.spec.knn_k

    def with_component(name: str, values: dict) -> dict:  # the run's components, one of them new or replaced
        return {k: {**v, name: values[k]} for k, v in comps.items()}

    if "coreset" in groups:
        for label, idx in ([(f"coreset {n}", coreset_indices(bank, n)) for n in CORESETS if n < len(bank)]
                           + [(f"random {n}", bank_indices(len(bank), n, 0)) for n in RANDOM if n < len(bank)]):
            knn = {k: knn_distance(f, bank[idx], k_nn).double().numpy() for k, f in feats.items()}
            variants[label] = (with_component("feature_knn", knn), weights)
    if "knn_k" in groups:
        sub = bank[coreset_indices(bank, size)]
        for n_neighbours in KNN_K:
            knn = {k: knn_distance(f, sub, n_neighbours).double().numpy() for k, f in feats.items()}
            variants[f"knn_k {n_neighbours}"] = (with_component("feature_knn", knn), weights)
        unit = torch.nn.functional.normalize(bank, dim=1)  # the angle only: each row scaled to length 1
        unit = unit[coreset_indices(unit, size)]
        knn = {k: knn_distance(torch.nn.functional.normalize(f, dim=1), unit, k_nn).double().numpy()
               for k, f in feats.items()}
        variants["feature_knn cosine"] = (with_component("feature_knn", knn), weights)
    xb = pre.transform(ds.x[sp.train[bank_indices(len(sp.train), det.config_.score.bank_size,
                                                  det.config_.train.seed).numpy()]])
    if "layer_maha" in groups:
        for name, trunk, pool in (("encoder_layer_maha", scorer.encoder.trunk, 2),
                                  ("layer_maha_pool4", scorer.discriminator.trunk, 4)):
            extra = layer_maha(trunk, xb, xm, pool)
            variants[f"+ {name}"] = (with_component(name, extra), {**weights, name: weights["layer_maha"]})
    if "input_knn" in groups:
        flat = xb.flatten(1)  # input_knn as the library builds it: the bank samples in model space, own coreset
        inputs = flat[coreset_indices(flat, size)]
        knn = {k: knn_distance(x.flatten(1), inputs, k_nn).double().numpy() for k, x in xm.items()}
        for w in INPUT_KNN_WEIGHTS:
            variants[f"+ input_knn {w:g}"] = (with_component("input_knn", knn), {**weights, "input_knn": w})
    if "map_max" in groups:
        for layer in MAP_LAYERS:  # per-location D statistics (the real-image map), pooled by map_max
            mcfg = copy.deepcopy(det.config_)
            mcfg.score.map_weights, mcfg.score.map_layers = {"layer_maha_map": 1.0}, [layer]
            shipped_scorer = det.scorer_
            det.scorer_ = rescore_with(shipped_scorer, mcfg, ds.x[sp.train], ds.x[sp.val], ("map_max",))
            top = {k: np.asarray(det.score_components(x, "encoder")["map_max"], dtype=np.float64)
                   for k, (x, _) in sets.items()}
            det.scorer_ = shipped_scorer
            for w in MAP_MAX_WEIGHTS:
                variants[f"+ map_max layer {layer} {w:g}"] = (with_component("map_max", top), {**weights, "map_max": w})
    if "layer_knn" in groups:
        trunk = scorer.discriminator.trunk
        for pool in LAYER_KNN_POOLS:
            extra = layer_knn(trunk, xb, xm, pool, size, k_nn)
            for w in LAYER_KNN_WEIGHTS:
                variants[f"+ layer_knn pool {pool} {w:g}"] = (with_component("layer_knn", extra),
                                                              {**weights, "layer_knn": w})
            swapped = {c: w for c, w in weights.items() if c != "layer_maha"}
            variants[f"layer_knn pool {pool} for layer_maha"] = (with_component("layer_knn", extra),
                                                                  {**swapped, "layer_knn": weights["layer_maha"]})
        extra = layer_knn(trunk, xb, xm, 2, size, k_nn, whiten=True)
        for w in LAYER_KNN_WEIGHTS:
            variants[f"+ whitened layer_knn {w:g}"] = (with_component("layer_knn", extra), {**weights, "layer_knn": w})
    no_f = {c: w for c, w in weights.items() if c != "feature_residual"}
    for label in [v for v in ("shipped", "coreset 512") if v in variants]:
        variants[f"{label} - feature_residual"] = (variants[label][0], no_f)
    return variants


def main() -> None:
    ap = case_arguments(__doc__)
    ap.add_argument("--values", type=Path, default=None, help="folder for each case's component values (.npz)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="score settings to refit each run's scorer with before anything is measured (repeatable)")
    ap.add_argument("--shipped-only", action="store_true", help="only the run's own score (val and test), no levers")
    ap.add_argument("--levers", default=",".join(LEVER_GROUPS),
                    help=f"only these groups of variants, comma-separated (default: all of {', '.join(LEVER_GROUPS)})")
    ap.add_argument("--weights", action="append", default=[], metavar="LABEL:COMP=W,...",
                    help="a variant with these component weights instead of the shipped ones (repeatable)")
    args = ap.parse_args()
    rows = []
    for case, run in finished_runs(args):
        det = AnoGAN.load(run, device="cpu")
        ds, sp = run_data(det, args.data_root)
        if args.set:
            refit_score(det, ds, sp, args.set)
        scorer = det.scorer_
        sets = decision_sets(ds, sp, args.n_anomalies)
        start = time.perf_counter()
        res = {k: det.score_components(x, "encoder") for k, (x, _) in sets.items()}
        score_s = time.perf_counter() - start
        comps = {k: {c: np.asarray(r[c], dtype=np.float64) for c in scorer.components} for k, r in res.items()}
        weights = dict(scorer.spec.weights)

        variants = ({"shipped": (comps, weights)} if args.shipped_only
                    else lever_variants(det, ds, sp, sets, comps, weights, args.levers.split(",")))
        for spec in args.weights:
            label, _, pairs = spec.partition(":")
            changed = parse_weights(pairs)
            unknown = set(changed) - set(weights)
            if unknown:
                raise SystemExit(f"--weights {spec}: the run has no component {', '.join(sorted(unknown))}")
            variants[f"weights {label}"] = (comps, {c: w for c, w in {**weights, **changed}.items() if w > 0})
        if args.values:
            args.values.mkdir(parents=True, exist_ok=True)
            # every shipped component and the encoder candidate
            kept = variants.get("+ encoder_layer_maha", variants["shipped"])[0]
            save_values(args.values / f"{run.name}.npz", kept, {k: y for k, (_, y) in sets.items()})
        check = combine(comps, weights)
        gap = max(float(np.abs(check[k] - np.asarray(res[k]["anomaly_score"])).max()) for k in check)
        print(f"{run.name}: recombined shipped vs anomaly_score, largest difference {gap:.1e}", flush=True)
        for variant, (values, w) in variants.items():
            scores = combine(values, w)
            for set_name in ("val", "test"):
                y = sets[set_name][1]
                rows.append({"case": run.name, "normal": case["normal_classes"], "seed": case["seed"],
                             "variant": variant, "set": set_name, "n": len(y),
                             "roc_auc": roc_auc_score(y, scores[set_name]),
                             "feature_knn_roc_auc": roc_auc_score(y, values[set_name]["feature_knn"]),
                             "score_img_s_shipped": sum(len(x) for x, _ in sets.values()) / score_s})
            print(f"  {variant:24s} val {rows[-2]['roc_auc']:.4f}  test {rows[-1]['roc_auc']:.4f}", flush=True)
        frame = pd.DataFrame(rows)
        frame["machine"] = machine_label()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out, index=False)  # after every case: a stopped study keeps what it measured
    table = pd.DataFrame(rows).pivot_table(index="variant", columns="set", values="roc_auc")
    print((100 * table).round(2).to_string())


if __name__ == "__main__":
    main()
