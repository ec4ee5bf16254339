"""Which critic layers make the best anomaly map? Per-layer and combined maps of one trained inspection run.

    python benchmarks/map_layers.py --run runs/mvtec/bottle-s0 --out reports/benchmarks/map-layers-bottle.csv

For every D layer, a map from that layer's per-location Gaussians (fitted here from the run's normal-training
images with ``fit_location_gaussian``, as ``fit_normal_statistics`` does for the chosen layers), smoothed,
brought to each test image's original size: pixel ROC-AUC, AUPRO and the image ROC-AUC of its top-1 % mean.
Then a few combinations of layers (each layer's map standardised over the test maps, averaged). A study of the
test split, so it informs a default to be confirmed on other data; the networks are the run's, not retrained.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from anomgan import AnoGAN
from anomgan.evaluation.pixel import aupro, pixel_roc_auc
from anomgan.model import gaussian_blur
from anomgan.runs import original_size_maps, run_data
from anomgan.training.normal_stats import fit_location_gaussian


@torch.no_grad()
def layer_maps(det: AnoGAN, x: torch.Tensor, gaussians: list, batch: int = 16) -> list:
    """Per layer (N, S, S): squared Mahalanobis distance to the location statistics, over the dimension."""
    out = []
    for i in range(0, len(x), batch):
        _, _, _, maps = det.scorer_.discriminator.forward_with_maps(x[i:i + batch], keep_maps=True)
        per = []
        for h, (mean, precision) in zip(maps, gaussians):
            d = (h - mean).flatten(2)  # (B, C, L)
            m = (torch.einsum("bcl,lcd,bdl->bl", d, precision, d) / d.shape[1]).view(len(h), *h.shape[2:])
            per.append(F.interpolate(m[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0])
        out.append(per)
    return [torch.cat([p[j] for p in out]) for j in range(len(out[0]))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    det = AnoGAN.load(args.run, device="cpu")
    ds, splits = run_data(det)
    pre = det.scorer_.preprocess
    with torch.no_grad():
        train = pre(torch.from_numpy(ds.x[splits.train]))
        acts = [det.scorer_.discriminator.forward_with_maps(train[i:i + 16], keep_maps=True)[3]
                for i in range(0, len(train), 16)]
        gaussians = [fit_location_gaussian(torch.cat(layer)) for layer in zip(*acts)]
        x = pre(torch.from_numpy(ds.x[splits.test]))
    maps = layer_maps(det, x, gaussians)
    masks, sizes, y = list(ds.masks[splits.test]), ds.sizes[splits.test], splits.test_targets(ds)
    sigma = max(0.5, 4.0 * x.shape[-1] / 256)

    def measure(name: str, m: torch.Tensor) -> dict:
        smooth = gaussian_blur(m, sigma)
        full = original_size_maps(smooth.numpy(), sizes)
        k = max(1, int(0.01 * smooth[0].numel()))
        top = smooth.flatten(1).topk(k, 1).values.mean(1).numpy()
        row = {"layers": name, "pixel_roc_auc": pixel_roc_auc(full, masks), "aupro": aupro(full, masks),
               "image_roc_auc_top1pct": roc_auc_score(y, top), "run": args.run.name}
        print(row, flush=True)
        return row

    rows = [measure(f"{j} ({'x'.join(map(str, g[0].shape))})", m) for j, (m, g) in enumerate(zip(maps, gaussians))]
    z = [(m - m.mean()) / m.std() for m in maps]
    n = len(maps)
    for combo in ([n - 2, n - 1], [n - 3, n - 2], [n - 3, n - 2, n - 1], list(range(n))):
        rows.append(measure("+".join(map(str, combo)), sum(z[j] for j in combo) / len(combo)))
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out, index=False)
    print(frame.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
