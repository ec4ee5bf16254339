"""Which features the ``feature_knn`` bank should hold: D's last layer, earlier D layers, pixels or E's latents.

    python benchmarks/knn_features.py --runs reports/benchmarks/mnist-cpu-one-class.runs --pattern 'one-class-*-s0' \
        --data-root ../shared/data --out reports/benchmarks/knn-features-mnist-val.csv

Off MNIST's test split, as ``knn_select.py --eval train-anomalies``: each run's normal-validation images against
2,000 other-digit images from the official *training* split. For every candidate feature the bank holds the
same seeded subset of up to 4,096 normal-training images and the score is the mean distance to the 5 nearest.
``L<i>_flat`` is the i-th LeakyReLU output of D's trunk, flattened (the last one is ``feature_knn``'s);
``L<i>_pool4`` the same pooled to 4x4. Combinations use z-scores from the normal-validation part. On the last
layer it also varies ``k``, Euclidean vs cosine distance, and the bank (4,096 vs every training image), each
alone and in the default combination (weights 0.5 / 1 / 1 / 2.5).
"""

from __future__ import annotations

import pandas as pd
import torch

# the same validation set and run loop as the weight study (this script's folder is on sys.path)
from knn_select import auc_rows, eval_set, study_parser, study_runs

from anomgan import AnoGAN
from anomgan.scoring.memory import bank_indices, knn_distance


def trunk_layers(det: AnoGAN, x: torch.Tensor, batch: int = 512) -> list[torch.Tensor]:
    """Every LeakyReLU output of D's trunk for ``x`` (preprocessed), batched."""
    parts: list[list[torch.Tensor]] = []
    for i in range(0, len(x), batch):
        h = x[i:i + batch].contiguous(memory_format=torch.channels_last)
        outs = []
        with torch.no_grad():
            for m in det.discriminator_.trunk.body:
                h = m(h)
                if isinstance(m, torch.nn.LeakyReLU):
                    outs.append(h.float())
        parts.append(outs)
    return [torch.cat(layer) for layer in zip(*parts)]


def main() -> None:
    args = study_parser(__doc__, "one-class-*-s0", "configs/mnist.yaml").parse_args()
    cfg, ds, runs = study_runs(args, adopt_score=True)
    rows = []
    for run, det, sp in runs:
        idx, target = eval_set(ds, sp, "train-anomalies", 2000, seed=123)  # normal-validation first
        bank = sp.train[bank_indices(len(sp.train), cfg.score.bank_size, det.config_.train.seed).numpy()]
        xb, xe = det.preprocessor_.transform(ds.x[bank]), det.preprocessor_.transform(ds.x[idx])
        comps = {}
        for i, (b, e) in enumerate(zip(trunk_layers(det, xb), trunk_layers(det, xe))):
            comps[f"L{i}_flat"] = knn_distance(e.flatten(1), b.flatten(1), cfg.score.knn_k).numpy()
            pool4 = lambda t: torch.nn.functional.adaptive_avg_pool2d(t, 4).flatten(1)  # noqa: E731
            comps[f"L{i}_pool4"] = knn_distance(pool4(e), pool4(b), cfg.score.knn_k).numpy()
        n_layers = i + 1
        comps["pixel"] = knn_distance(xe.flatten(1), xb.flatten(1), cfg.score.knn_k).numpy()
        with torch.no_grad():
            comps["latent"] = knn_distance(det.encoder_(xe), det.encoder_(xb), cfg.score.knn_k).numpy()
        det.fit_feature_bank(ds.x[sp.train])
        comps.update({k: v for k, v in det.score_components(ds.x[idx], "encoder").items()
                      if k in ("d_score", "residual", "feature_residual", "feature_knn", "anomaly_score")})
        n_val = len(sp.val)
        z = {k: (v - v[:n_val].mean()) / (v[:n_val].std() + 1e-12) for k, v in comps.items()}
        recon = 0.5 * z["d_score"] + z["residual"] + z["feature_residual"]
        last = f"L{n_layers - 1}_flat"
        combos = {
            "all layers (sum)": sum(z[f"L{j}_flat"] for j in range(n_layers)),
            "last two layers (sum)": z[f"L{n_layers - 2}_flat"] + z[last],
            "default, bank on the second-last layer": recon + 2.5 * z[f"L{n_layers - 2}_flat"],
            "default, bank split over the last two layers": recon + 1.25 * z["feature_knn"]
            + 1.25 * z[f"L{n_layers - 2}_flat"],
            "default + pixel kNN": recon + 2.5 * z["feature_knn"] + z["pixel"],
            "default + latent kNN": recon + 2.5 * z["feature_knn"] + z["latent"],
        }
        with torch.no_grad():
            every = torch.cat([det.discriminator_.features(det.preprocessor_.transform(ds.x[sp.train[j:j + 512]]))
                               for j in range(0, len(sp.train), 512)]).float()
            f_eval = det.discriminator_.features(xe).float()
        sub = bank_indices(len(sp.train), cfg.score.bank_size, det.config_.train.seed)
        for bank_name, bank_f in ((str(cfg.score.bank_size), every[sub]), ("all", every)):
            for metric in ("euclidean", "cosine"):
                b, e = ((bank_f, f_eval) if metric == "euclidean" else
                        (torch.nn.functional.normalize(bank_f, dim=1), torch.nn.functional.normalize(f_eval, dim=1)))
                for k in (1, 3, 5, 10, 20):
                    v = knn_distance(e, b, k).numpy()
                    zv = (v - v[:n_val].mean()) / (v[:n_val].std() + 1e-12)
                    combos[f"last layer, bank {bank_name}, {metric}, k={k}, alone"] = v
                    combos[f"last layer, bank {bank_name}, {metric}, k={k}, default"] = recon + 2.5 * zv
        rows += auc_rows(run, sp, target, {**comps, **combos})
        print(run.name, flush=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out, index=False)
    print((frame.groupby("score", sort=False).roc_auc.mean() * 100).round(2).to_string())


if __name__ == "__main__":
    main()
