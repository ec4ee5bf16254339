"""Distances to normal data in the discriminator's feature space: pure torch, batch-independent.

``knn_distance``: mean distance to the k nearest rows of a memory bank of normal-training features.
``mahalanobis_sq``: squared Mahalanobis distance to a fitted Gaussian (mean, precision).

A sample's distance must not depend on which other samples share its batch (scores are compared across
batch sizes, engines and machines). Matrix-product distances (``torch.cdist``'s fast path) round
differently for different batch shapes, by up to ~1e-3 relative on small distances; so they only pick the
candidates, and the k nearest are measured exactly, row by row.
"""

from __future__ import annotations

import torch

BANK_CHUNK = 8192  # bank rows compared at once: bounds the (B, chunk) distance matrix
KNN_MARGIN = 8  # extra candidates re-measured exactly, so rounding in the fast pass cannot change the k nearest


def knn_distance(features: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """Mean Euclidean distance from each row of ``features`` (B, F) to its ``k`` nearest rows of ``bank`` (N, F).

    Returns (B,) in the dtype of ``bank``. Exact search, vectorised over the batch; the bank is read in chunks so
    memory stays O(B * chunk).
    """
    if len(bank) == 0:
        raise ValueError("the feature bank is empty")
    f = features.to(bank.dtype)
    k = min(k, len(bank))
    n_cand = min(len(bank), k + KNN_MARGIN)
    best_d = best_i = None
    for start in range(0, len(bank), BANK_CHUNK):
        chunk = bank[start:start + BANK_CHUNK]
        # (B, chunk), fast and approximate: only ranks candidates. The matmul path always (cdist's default picks
        # it from 25 rows on, a branch on the batch size that would pin an exported graph's batch dimension)
        d = torch.cdist(f, chunk, compute_mode="use_mm_for_euclid_dist")
        idx = torch.arange(start, start + len(chunk), device=f.device).expand_as(d)
        if best_d is not None:
            d, idx = torch.cat([best_d, d], 1), torch.cat([best_i, idx], 1)
        best_d, pos = d.topk(min(n_cand, d.shape[1]), dim=1, largest=False)
        best_i = idx.gather(1, pos)
    # (B, n_cand), row by row; one candidate at a time: a (B, n_cand, F) difference would not fit in cache and
    # took 4x longer on MNIST's 2,048-d features. index_select + one fused norm: 1.3-2.8x faster than indexing,
    # subtracting, squaring, summing and taking the root as separate passes (64-2,048-d rows, one thread)
    exact = torch.stack([torch.linalg.vector_norm(f - bank.index_select(0, best_i[:, j]), dim=1)
                         for j in range(best_i.shape[1])], 1)
    return exact.topk(k, dim=1, largest=False).values.mean(1)


def mahalanobis_sq(features: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """Squared Mahalanobis distance of each row of ``features`` (B, F) to N(mean, precision^-1) -> (B,), >= 0."""
    d = features.to(mean.dtype) - mean
    return ((d @ precision) * d).sum(1).clamp_min(0)
