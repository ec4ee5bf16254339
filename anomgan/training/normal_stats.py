"""Fitting the scorer's normal statistics from normal data: the memory bank, its Gaussian, the per-layer
Gaussians (all from up to ``bank_size`` normal-training samples) and the calibration on normal-validation samples.

Only the statistics that the scorer's active components need are fitted (a component weighing 0 costs nothing).
"""

from __future__ import annotations

import torch

from anomgan.components import BANK, FEATURE_GAUSSIAN, LAYER_GAUSSIANS, LOCATION_GAUSSIANS
from anomgan.model import Gaussian, Inversion, LocationGaussian, Scorer


def bank_indices(n: int, size: int, seed: int) -> torch.Tensor:
    """Which of ``n`` training samples enter a bank of at most ``size``: all, or a seeded random subset."""
    if n <= size:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].sort().values


def fit_gaussian(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (F,), precision (F, F)) of a Gaussian fitted to ``rows`` (N, F) with Ledoit-Wolf shrinkage, in float64.

    The shrinkage coefficient comes from scikit-learn (``ledoit_wolf_shrinkage``; it is set by the data, Ledoit &
    Wolf 2004, so the covariance stays well conditioned with more features than samples and there is no knob to
    tune per data set); the covariance is shrunk as scikit-learn's ``LedoitWolf`` does and inverted through its
    Cholesky factor (pseudo-inverse when not positive definite), ~3x faster than ``LedoitWolf().fit`` on a
    4,096 x 2,048 bank and equal to it within float64 rounding. Returned float32, on ``rows``' device.
    """
    from sklearn.covariance import ledoit_wolf_shrinkage

    if len(rows) < 2:
        raise ValueError("a Gaussian needs at least 2 bank rows")
    x = rows.detach().to("cpu", torch.float64)
    mean = x.mean(0)
    xc = x - mean
    shrinkage = float(ledoit_wolf_shrinkage(xc.numpy(), assume_centered=True))
    cov = (xc.T @ xc) / len(xc)  # (F, F), the biased empirical covariance, as scikit-learn's
    mu = float(torch.diagonal(cov).mean())
    cov.mul_(1.0 - shrinkage).diagonal().add_(shrinkage * mu)  # (1 - s) * S + s * mu * I
    factor, info = torch.linalg.cholesky_ex(cov)
    precision = torch.cholesky_inverse(factor) if int(info) == 0 else torch.linalg.pinv(cov, hermitian=True)
    return mean.float().to(rows.device), precision.float().to(rows.device)


def _fits_half(t: torch.Tensor) -> bool:
    return bool(t.abs().max().item() < 6e4) if t.numel() else True


@torch.no_grad()
def fit_normal_statistics(scorer: Scorer, x_train: torch.Tensor, bank_size: int, seed: int,
                          batch_size: int = 256) -> Scorer:
    """Fit, from up to ``bank_size`` model-space normal-training samples (a seeded subset), the statistics the
    scorer's components need; the previous ones and every calibration are dropped."""
    scorer.bank, scorer.feature_gaussian = None, None
    scorer.layer_gaussians = torch.nn.ModuleList()
    scorer.location_gaussians = torch.nn.ModuleList()
    scorer.calibrations = torch.nn.ModuleDict()
    want = scorer.needs & {BANK, FEATURE_GAUSSIAN, LAYER_GAUSSIANS, LOCATION_GAUSSIANS}
    if not want or bank_size == 0:
        return scorer
    idx = bank_indices(len(x_train), bank_size, seed)
    feats, layer_parts = [], []
    moments = None  # per layer: sum over samples (C, h, w), sum of outer products (C, C), count
    for i in range(0, len(idx), batch_size):
        x = x_train[idx[i:i + batch_size]].to(scorer.device, scorer.dtype)
        _, f, layers, maps = scorer.discriminator.forward_with_maps(x, keep_maps=LOCATION_GAUSSIANS in want)
        feats.append(f.float())
        layer_parts.append([h.float() for h in layers])
        if maps is not None:
            moments = _accumulate(moments, scorer.select_map_layers(maps))
    bank = torch.cat(feats)
    # rounded through half precision when it fits: the run stores it so, and a scorer scores alike before and after
    bank = bank.half().float() if _fits_half(bank) else bank
    if BANK in want:
        scorer.bank = bank.to(scorer.dtype)
    if FEATURE_GAUSSIAN in want and len(bank) >= 2:
        scorer.feature_gaussian = Gaussian(*(t.to(scorer.dtype) for t in fit_gaussian(bank)))
    if LAYER_GAUSSIANS in want and len(bank) >= 2:
        for layer in zip(*layer_parts):
            scorer.layer_gaussians.append(Gaussian(*(t.to(scorer.dtype) for t in fit_gaussian(torch.cat(layer)))))
    if moments is not None:
        for total, outer, n in moments:
            scorer.location_gaussians.append(LocationGaussian(*(t.to(scorer.device, scorer.dtype)
                                                                for t in _location_gaussian(total, outer, n))))
    return scorer


def _accumulate(moments, maps: list) -> list:
    """Add a batch's per-layer activations (B, C, h, w) to the running sums, in float64."""
    out = []
    for j, h in enumerate(maps):
        h = h.detach().to(torch.float64)
        flat = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])  # (B * h * w, C)
        total, outer = h.sum(0), flat.T @ flat
        if moments is not None:
            total, outer = total + moments[j][0], outer + moments[j][1]
        out.append((total, outer, len(h) + (moments[j][2] if moments is not None else 0)))
    return out


def _location_gaussian(total: torch.Tensor, outer: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (C, h, w), precision (C, C)) from the sums: a mean per location and one covariance of the activations
    around their location's mean, shrunk by 1 % of its average variance toward the identity (PaDiM's
    regulariser, relative to the layer's scale) so that it inverts with few images."""
    mean = total / n  # (C, h, w)
    c = mean.shape[0]
    locs = mean.reshape(c, -1)  # (C, L)
    cov = outer / (n * locs.shape[1]) - (locs @ locs.T) / locs.shape[1]  # E[x x^T] - mean over L of mu mu^T
    cov = cov + 0.01 * float(torch.diagonal(cov).mean().clamp_min(1e-12)) * torch.eye(c, dtype=cov.dtype)
    factor, info = torch.linalg.cholesky_ex(cov)
    precision = torch.cholesky_inverse(factor) if int(info) == 0 else torch.linalg.pinv(cov, hermitian=True)
    return mean.float(), precision.float()


def calibrate(scorer: Scorer, x_val: torch.Tensor, inversions: list[Inversion], batch_size: int = 256) -> Scorer:
    """Keep ``x_val`` (model-space normal-validation samples) in the scorer and calibrate each inversion on it."""
    scorer.calibration_x = x_val.to(scorer.device, scorer.dtype)
    scorer.calibrations = torch.nn.ModuleDict()
    for inv in dict.fromkeys(inversions):
        scorer.fit_calibration(inv, batch_size)
    return scorer
