"""The bank components: how far a sample lies from normal data in the discriminator's feature space.

``feature_knn`` is local (nearest neighbours), ``feature_maha`` global (one Gaussian); both read the same bank.
``layer_maha`` looks at the same samples layer by layer: one Gaussian per layer of the critic, fitted to its
activations averaged to a coarse 2x2 grid, the squared distances divided by their dimension and summed.

After training, the critic's features of (up to ``score.bank_size``) normal-training samples are kept in the
run as a memory bank. A sample's ``feature_knn`` is its mean Euclidean distance to its ``k`` nearest bank
entries. Unlike the residuals it needs no inversion, so it cannot be fooled by a generator that also draws
the anomaly; on MNIST it separates the digits whose strokes other digits share (2, 3, 5, 8) far better than
the reconstruction terms do (docs/tuning.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

BANK_CHUNK = 8192  # bank rows compared at once: bounds the (B, chunk) distance matrix


def bank_indices(n: int, size: int, seed: int) -> torch.Tensor:
    """Which of ``n`` training samples enter a bank of at most ``size``: all, or a seeded random subset."""
    if n <= size:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].sort().values


def knn_distance(features: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """Mean distance from each row of ``features`` (B, F) to its ``k`` nearest rows of ``bank`` (N, F) -> (B,).

    Exact search, vectorised over the batch; the bank is read in chunks so memory stays O(B * chunk).
    """
    if len(bank) == 0:
        raise ValueError("the feature bank is empty")
    k = min(k, len(bank))
    f = features.float()
    best = None
    for i in range(0, len(bank), BANK_CHUNK):
        chunk = bank[i:i + BANK_CHUNK].to(device=f.device, dtype=torch.float32)
        d = torch.cdist(f, chunk).clamp_min(0)
        cand = d if best is None else torch.cat([best, d], dim=1)
        best = cand.topk(min(k, cand.shape[1]), dim=1, largest=False).values
    return best.mean(1)


def bank_fingerprint(bank: torch.Tensor) -> str:
    """Short content hash of a bank. Fitted and reloaded banks hold the same float32 values (rounded through half
    precision when they fit it), so both hash alike; a bank too large for half precision hashes exactly too."""
    data = bank.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.sha1(data).hexdigest()[:12]


@dataclass
class GaussianFit:
    """Mean (F,) and precision (F, F) of a Gaussian fitted to a bank, float32 on the bank's device."""

    mean: torch.Tensor
    precision: torch.Tensor


def fit_gaussian(bank: torch.Tensor) -> GaussianFit:
    """A Gaussian fitted to the bank rows with Ledoit-Wolf shrinkage, in float64.

    The shrinkage coefficient comes from scikit-learn (``ledoit_wolf_shrinkage``; it is set by the data, Ledoit &
    Wolf 2004, so the covariance stays well conditioned with more features than samples and there is no knob to
    tune per data set); the covariance is shrunk as scikit-learn's ``LedoitWolf`` does and inverted through its
    Cholesky factor, about 3x faster than ``LedoitWolf().fit`` on a 4,096 x 2,048 bank and equal to it within
    float64 rounding.
    """
    from sklearn.covariance import ledoit_wolf_shrinkage

    if len(bank) < 2:
        raise ValueError("a Gaussian needs at least 2 bank rows")
    x = bank.detach().to("cpu", torch.float64)
    mean = x.mean(0)
    xc = x - mean
    shrinkage = float(ledoit_wolf_shrinkage(xc.numpy(), assume_centered=True))
    cov = (xc.T @ xc) / len(xc)  # (F, F), the biased empirical covariance, as scikit-learn's
    mu = float(torch.diagonal(cov).mean())
    cov.mul_(1.0 - shrinkage).diagonal().add_(shrinkage * mu)  # (1 - s) * S + s * mu * I
    factor, info = torch.linalg.cholesky_ex(cov)
    precision = torch.cholesky_inverse(factor) if int(info) == 0 else torch.linalg.pinv(cov, hermitian=True)
    return GaussianFit(mean=mean.float().to(bank.device), precision=precision.float().to(bank.device))


def mahalanobis(features: torch.Tensor, fit: GaussianFit) -> torch.Tensor:
    """Mahalanobis distance of each row of ``features`` (B, F) to the fitted Gaussian -> (B,)."""
    d = features.float().to(fit.mean.device) - fit.mean
    return ((d @ fit.precision) * d).sum(1).clamp_min(0).sqrt()
