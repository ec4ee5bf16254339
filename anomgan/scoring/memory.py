"""The ``feature_knn`` component: how far a sample lies from normal data in the discriminator's feature space.

After training, the critic's features of (up to ``score.bank_size``) normal-training samples are kept in the
run as a memory bank. A sample's ``feature_knn`` is its mean Euclidean distance to its ``k`` nearest bank
entries. Unlike the residuals it needs no inversion, so it cannot be fooled by a generator that also draws
the anomaly; on MNIST it separates the digits whose strokes other digits share (2, 3, 5, 8) far better than
the reconstruction terms do (docs/tuning.md).
"""

from __future__ import annotations

import hashlib

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
