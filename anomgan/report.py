"""One self-contained HTML page per evaluation (and one per benchmark): every picture embedded, no network.

Charts are matplotlib SVG inlined into the page, sample pictures PNG data URIs; the page is rendered by Jinja2
from ``anomgan/templates/``. Every number shown carries ``data-*`` attributes naming the CSV cell it comes from
(tests compare them with the evaluate CSV).
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from anomgan.evaluation.metrics import anomalies_by_score, confusion_counts, held_out_groups
from anomgan.evaluation.plots import _pyplot
from anomgan.io import atomic_write_text

N_EXAMPLES = 6  # rows of top anomalies / anomalies scored most normal


# ---------------------------------------------------------------------------- pictures
def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # inline: no XML prolog or DOCTYPE inside HTML


def _png_uri(array: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def curves_svg(frame: pd.DataFrame) -> str:
    """ROC and precision-recall of anomaly_score: overall and per held-out class."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    plt = _pyplot()
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(12, 5.2))
    groups = held_out_groups(frame)
    for name, mask in groups:
        part = frame[mask]
        fpr, tpr, _ = roc_curve(part["target"], part["anomaly_score"])
        prec, rec, _ = precision_recall_curve(part["target"], part["anomaly_score"])
        lw = 2.8 if name == "all" else 1.3
        roc.plot(fpr, tpr, lw=lw, label=f"{name} ({auc(fpr, tpr):.3f})")
        pr.plot(rec, prec, lw=lw, label=name)
    roc.plot([0, 1], [0, 1], "k:", lw=0.8)
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (AUC) per held-out class")
    pr.set(xlabel="recall", ylabel="precision", title="precision-recall per held-out class")
    for ax in (roc, pr):
        ax.legend(loc="lower right" if ax is roc else "lower left", fontsize=8, ncol=2 if len(groups) > 6 else 1)
        ax.grid(alpha=0.3)
    return _svg(fig)


def histogram_svg(frame: pd.DataFrame, threshold: float) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.2))
    scores = frame["anomaly_score"].to_numpy()
    lo, hi = np.percentile(scores, [0.5, 99.5])
    bins = np.linspace(min(lo, threshold), max(hi, threshold), 60)
    ax.hist(np.clip(scores[frame["target"] == 0], bins[0], bins[-1]), bins=bins, alpha=0.6, density=True,
            label="normal (test)", color="tab:blue")
    ax.hist(np.clip(scores[frame["target"] == 1], bins[0], bins[-1]), bins=bins, alpha=0.6, density=True,
            label="anomalous (test)", color="tab:red")
    ax.axvline(threshold, color="k", ls="--", lw=2, label=f"threshold {threshold:.3f}")
    ax.set(xlabel="anomaly_score (higher = more anomalous; 0.5 % tails clipped)", ylabel="density")
    ax.legend()
    return _svg(fig)


def training_svg(history: pd.DataFrame) -> Optional[str]:
    gan = history[history["phase"] == "gan"]
    if gan.empty:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[0].plot(gan["epoch"], gan["d_loss"], label="D loss")
    axes[0].plot(gan["epoch"], gan["g_loss"], label="G loss")
    axes[1].plot(gan["epoch"], gan["d_real"], label="D(real)")
    axes[1].plot(gan["epoch"], gan["d_fake"], label="D(fake)")
    if "d_negative" in gan and gan["d_negative"].notna().any():  # train.negatives
        axes[1].plot(gan["epoch"], gan["d_negative"], label="D(negatives)")
    axes[2].plot(gan["epoch"], gan["diversity"], color="tab:green", label="diversity of G")
    axes[2].axhline(1.0, color="k", ls=":", lw=0.8)
    for ax, title in zip(axes, ("losses", "discriminator outputs", "sample diversity (1 = as diverse as data)")):
        ax.set(xlabel="GAN epoch", title=title)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _svg(fig)


def training_notes(history: pd.DataFrame) -> list[str]:
    """Plain warnings when the curves show collapse or divergence."""
    gan = history[history["phase"] == "gan"]
    notes = []
    if gan.empty:
        return notes
    losses = gan[["d_loss", "g_loss"]].to_numpy(dtype=float)
    if not np.isfinite(losses).all():
        notes.append("Divergence: a loss became NaN or infinite during training.")
    div = gan["diversity"].to_numpy(dtype=float)
    if len(div) and np.isfinite(div[-1]) and div[-1] < 0.3:
        notes.append(f"Possible mode collapse: the generator's sample diversity ended at {div[-1]:.2f} "
                     f"(healthy is near 1); its reconstructions and d_score may be unreliable.")
    if len(losses) >= 4 and np.isfinite(losses).all():
        last = np.abs(losses[-1]).max()
        typical = np.median(np.abs(losses[: max(2, len(losses) // 2)]))
        if typical > 0 and last > 20 * typical:
            notes.append(f"Possible divergence: the last epoch's losses are {last / typical:.0f}x their typical size "
                         f"in the first half of training.")
    return notes


def example_rows(ev, idx: np.ndarray) -> list[dict]:
    """One picture per sample: image | reconstruction (| heat-map overlay | mask), tiles >= 128 px."""
    import torch

    from anomgan.evaluation.plots import mask_at, overlay_panels, upscale

    arrays, frame = ev.arrays, ev.scores
    if "x" not in arrays:
        return []
    to_unit = ev.detector.preprocessor_.to_unit
    rows = []
    for i in idx:
        x = to_unit(arrays["x"][i:i + 1].float()).clamp(0, 1)
        panels = [x]
        if "x_hat" in arrays:
            panels.append(to_unit(arrays["x_hat"][i:i + 1].float()).clamp(0, 1))
        tiles = upscale(torch.cat(panels), 128)
        rgb = tiles.repeat(1, 3, 1, 1) if tiles.shape[1] == 1 else tiles[:, :3]
        strip = np.concatenate([np.moveaxis((t.numpy() * 255).astype(np.uint8), 0, -1) for t in rgb], 1)
        picture = strip
        if "anomaly_map" in arrays:
            shape = arrays["anomaly_map"][i].shape
            mask = mask_at(ev.masks[i], shape) if ev.masks is not None and ev.masks[i] is not None else None
            over = overlay_panels(x[0].numpy(), arrays["anomaly_map"][i], mask)
            h = max(strip.shape[0], over.shape[0])
            picture = np.concatenate([np.pad(a, ((0, h - a.shape[0]), (0, 4), (0, 0)), constant_values=255)
                                      for a in (strip, over)], 1)
        r = frame.iloc[int(i)]
        rows.append({"id": str(r["id"]), "label": str(r["label"]), "score": float(r["anomaly_score"]),
                     "flagged": bool(r["is_anomaly"]), "uri": _png_uri(picture)})
    return rows


def sample_grid_uri(detector, n: int = 36) -> Optional[str]:
    """A grid of G's samples (image runs), tiles >= 96 px."""
    if detector.preprocessor_.kind != "image":
        return None
    from torchvision.utils import make_grid

    from anomgan.evaluation.plots import upscale

    x = upscale(detector.generate(n, seed=0), 96)
    grid = make_grid(x, nrow=int(math.sqrt(n)), padding=2, pad_value=1.0)
    grid = grid.repeat(3, 1, 1) if grid.shape[0] == 1 else grid
    return _png_uri((grid.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8))


# ---------------------------------------------------------------------------- the page
def _environment():
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("anomgan", "templates"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["f4"] = lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"
    return env


def render_evaluation(ev, run: Path, out: Path, method: Optional[str] = None) -> Path:
    """Write the evaluation ``ev`` (``anomgan.runs.EvaluationResult``) of ``run`` as one HTML file."""
    det = ev.detector
    cfg = det.config_
    report, frame = ev.report, ev.scores
    overall = report[report["anomalous_class"] == "all"]
    headline = overall[overall["component"] == "anomaly_score"].iloc[0]
    per_class = report[(report["component"] == "anomaly_score") & (report["anomalous_class"] != "all")]
    history = pd.DataFrame(det.history_) if det.history_ else pd.DataFrame({"phase": []})
    target = frame["target"].to_numpy()
    order = anomalies_by_score(frame)
    meta = dict(det.run_.meta)
    pixel = [c for c in ("pixel_roc_auc", "aupro") if c in report]
    import yaml

    context = {
        "title": f"anomgan report: {run.name}",
        "run": str(run), "dataset": ev.dataset, "method": method or cfg.score.method,
        "normal_classes": ", ".join(map(str, meta.get("normal_classes", []) or [])),
        "headline": headline, "threshold": ev.threshold, "pixel": pixel,
        "calibration": _calibration_text(det, meta),
        "n_normal": int((target == 0).sum()), "n_anomalous": int((target == 1).sum()),
        "confusion": confusion_counts(target, frame["is_anomaly"].to_numpy()), "score_seconds": ev.seconds,
        "curves": curves_svg(frame), "histogram": histogram_svg(frame, ev.threshold),
        "per_class": per_class.to_dict("records"), "components": overall.to_dict("records"),
        "training": training_svg(history) if len(history) else None, "notes": training_notes(history),
        "top": example_rows(ev, order[:N_EXAMPLES]), "missed": example_rows(ev, order[::-1][:N_EXAMPLES]),
        "has_maps": "anomaly_map" in ev.arrays, "samples": sample_grid_uri(det),
        "config": yaml.safe_dump(cfg.to_dict(), sort_keys=False), "meta": meta,
    }
    html = _environment().get_template("report.html.j2").render(**context)
    atomic_write_text(out, html)
    return out


def _calibration_text(det, meta: dict) -> str:
    q = det.config_.score.threshold_quantile
    n = meta.get("n_val", "the")
    return (f"the {q:.0%} quantile of anomaly_score on {n} normal-validation samples (never the test split); "
            f"each component is standardised on the same samples")


def render_benchmark(cases: pd.DataFrame, summary: pd.DataFrame, out: Path, title: str) -> Path:
    """One page across classes and seeds: the summary table, ROC-AUC per class with its seeds, every case."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(summary) + 2), 4.5))
    names = summary["normal_classes"].astype(str).tolist()
    ax.bar(range(len(summary)), summary["roc_auc_mean"], yerr=summary.get("roc_auc_std"), capsize=3,
           color="tab:blue", alpha=0.8)
    for i, name in enumerate(names):
        seeds = cases[cases["normal_classes"].astype(str) == name]["roc_auc"]
        ax.scatter([i] * len(seeds), seeds, color="k", s=12, zorder=3)
    ax.set_xticks(range(len(summary)), names)
    low = float(min(cases["roc_auc"].min(), summary["roc_auc_mean"].min()))
    ax.set(ylim=(max(0.0, low - 0.05), 1.0), xlabel="normal class(es)", ylabel="ROC-AUC",
           title="ROC-AUC per case: bar = mean over seeds, dots = seeds")
    ax.grid(axis="y", alpha=0.3)
    cols = [c for c in ("normal_classes", "n_seeds", "roc_auc_mean", "roc_auc_std", "average_precision_mean",
                        "train_seconds_mean") if c in summary]
    case_cols = [c for c in ("protocol", "normal_classes", "seed", "roc_auc", "average_precision", "train_seconds")
                 if c in cases]
    html = _environment().get_template("benchmark.html.j2").render(
        title=title, chart=_svg(fig), summary=summary[cols].to_dict("records"), summary_cols=cols,
        cases=cases[case_cols].to_dict("records"), case_cols=case_cols,
        mean=float(cases["roc_auc"].mean()))
    atomic_write_text(out, html)
    return out


def find_chromium() -> Optional[str]:
    """A Chromium executable for Playwright (Debian's ``chromium`` package; ``ANOMGAN_CHROMIUM`` overrides)."""
    import os
    import shutil

    for candidate in (os.environ.get("ANOMGAN_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None
