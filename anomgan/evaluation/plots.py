"""Pictures next to the CSV: ROC curves, score histograms, top anomalies with reconstructions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from anomgan.evaluation.metrics import held_out_groups, score_columns
from anomgan.io import atomic_write


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers or CI
    import matplotlib.pyplot as plt

    return plt


def plot_roc(frame: pd.DataFrame, path: Path) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for comp in score_columns(frame):
        fpr, tpr, _ = roc_curve(frame["target"], frame[comp])
        ax.plot(fpr, tpr, label=f"{comp} (AUC {roc_auc_score(frame['target'], frame[comp]):.3f})",
                lw=2.5 if comp == "anomaly_score" else 1.2)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC on held-out anomalies")
    ax.legend(loc="lower right", fontsize=8)
    _save_figure(fig, path)


def plot_histogram(frame: pd.DataFrame, threshold: float, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    scores = frame["anomaly_score"].to_numpy()
    bins = np.linspace(scores.min(), scores.max(), 50)
    ax.hist(scores[frame["target"] == 0], bins=bins, alpha=0.6, density=True, label="normal")
    ax.hist(scores[frame["target"] == 1], bins=bins, alpha=0.6, density=True, label="anomalous")
    ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.2f}")
    ax.set(xlabel="anomaly_score (higher = more anomalous)", ylabel="density")
    ax.legend()
    _save_figure(fig, path)


def upscale(tiles: torch.Tensor, min_side: int = 128) -> torch.Tensor:
    """(K, C, S, S) tiles enlarged by an integer factor (nearest neighbour) until a side is >= ``min_side``: an
    8-px digit becomes a 128-px tile a person can read."""
    factor = max(1, -(-min_side // tiles.shape[-1]))
    return tiles.repeat_interleave(factor, -1).repeat_interleave(factor, -2) if factor > 1 else tiles


def plot_roc_per_class(frame: pd.DataFrame, path: Path) -> None:
    """ROC of anomaly_score for each held-out class against the normal test samples."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    for cls, mask in held_out_groups(frame)[1:]:
        part = frame[mask]
        fpr, tpr, _ = roc_curve(part["target"], part["anomaly_score"])
        ax.plot(fpr, tpr, lw=1.6, label=f"{cls} (AUC {roc_auc_score(part['target'], part['anomaly_score']):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC of anomaly_score per held-out class")
    ax.legend(loc="lower right", fontsize=8)
    _save_figure(fig, path)


def reconstruction_grid(x: torch.Tensor, x_hat: torch.Tensor, path: Path, to_unit) -> None:
    """One row per sample: x | G(z*) | |x - G(z*)| residual map. x, x_hat: (K, C, S, S) in model space."""
    from torchvision.utils import save_image

    xu, hu = to_unit(x.float()), to_unit(x_hat.float())
    residual = (xu - hu).abs()
    residual = residual / residual.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    rows = upscale(torch.stack([xu, hu, residual], dim=1).flatten(0, 1))  # (3K, C, S', S'), tiles >= 128 px
    atomic_write(path, lambda tmp: save_image(rows, tmp, nrow=3, padding=1, pad_value=1.0, format="png"))


def mask_at(mask: np.ndarray, shape) -> np.ndarray:
    """A ground-truth mask (H, W) at another size (nearest neighbour: it stays binary), as float32."""
    import torch.nn.functional as F

    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    return F.interpolate(m, size=tuple(shape), mode="nearest")[0, 0].numpy()


def _tile(image: np.ndarray, min_side: int = 128) -> np.ndarray:
    """(H, W, 3) uint8 upscaled by an integer factor (nearest neighbour) until its short side is >= min_side."""
    factor = max(1, int(np.ceil(min_side / min(image.shape[:2]))))
    return image.repeat(factor, 0).repeat(factor, 1) if factor > 1 else image


def overlay_panels(image: np.ndarray, amap: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """image | heat map | overlay (| mask): (H, k*W, 3) uint8. ``image`` (C, H, W) in [0, 1], ``amap`` (H, W)
    anomaly map (higher = more anomalous, shown from its minimum (blue) to its maximum (red) per image)."""
    import matplotlib

    rgb = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image[:3]
    rgb = (np.moveaxis(rgb, 0, -1).clip(0, 1) * 255).astype(np.uint8)
    lo, hi = float(amap.min()), float(amap.max())
    norm = (amap - lo) / (hi - lo) if hi > lo else np.zeros_like(amap)
    heat = (matplotlib.colormaps["jet"](norm)[..., :3] * 255).astype(np.uint8)
    overlay = (0.55 * rgb + 0.45 * heat).astype(np.uint8)
    panels = [rgb, heat, overlay]
    if mask is not None:
        panels.append(np.repeat((mask > 0).astype(np.uint8)[..., None] * 255, 3, axis=2))
    gap = np.full((rgb.shape[0], 2, 3), 255, np.uint8)
    row = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
    return _tile(row)


def save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="png"))
