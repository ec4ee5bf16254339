"""The score components, each declared once: name, what it needs, how it is computed, what it means.

Config validation, the scorer, calibration, the CSV columns and the README's component table all read
``COMPONENTS``. Direction for every component: higher = more anomalous.

A component's ``compute`` receives a :class:`Pass` (what one scoring pass already has: the model-space batch,
D's verdict and features, the reconstruction) and the scorer's fitted normal statistics, and returns (B,).
This module imports only torch and the pure distance functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from anomgan.scoring.inversion import per_sample_feature_residual, per_sample_residual
from anomgan.scoring.memory import knn_distance, mahalanobis_sq

# what a component can need beyond one D pass
INVERSION = "inversion"  # x_hat = G(z*) from the encoder / iterative / hybrid inversion
BANK = "bank"  # D features of normal-training samples (memory bank)
FEATURE_GAUSSIAN = "feature_gaussian"  # one Gaussian fitted to the bank
LAYER_GAUSSIANS = "layer_gaussians"  # one Gaussian per D layer, fitted to the bank samples' pooled activations


@dataclass
class Pass:
    """What one scoring pass of a batch has computed; components read from it."""

    x: torch.Tensor  # (B, ...) model-space input
    d_out: torch.Tensor  # (B,) D's raw output (logit / critic value), high = real
    f_x: torch.Tensor  # (B, F) D's features of x
    layers: Optional[list] = None  # per D layer (B, F_i) pooled activations, when a component needs them
    x_hat: Optional[torch.Tensor] = None  # (B, ...) reconstruction, when a component needs it
    f_hat: Optional[torch.Tensor] = None  # (B, F) D's features of x_hat
    residual_norm: str = "l1"  # l1 | l2
    knn_k: int = 5


@dataclass(frozen=True)
class Component:
    name: str
    needs: frozenset  # of INVERSION, BANK, FEATURE_GAUSSIAN, LAYER_GAUSSIANS
    compute: Callable  # (Pass, scorer) -> (B,) tensor
    meaning: str  # one line for docs and the README


def _layer_maha(p: Pass, scorer) -> torch.Tensor:
    # squared distance over dimension: its mean under each layer's Gaussian is 1, so layers add on one scale
    return sum(mahalanobis_sq(h, g.mean, g.precision) / h.shape[1] for h, g in zip(p.layers, scorer.layer_gaussians))


COMPONENTS: dict[str, Component] = {c.name: c for c in (
    Component("d_score", frozenset(), lambda p, s: -p.d_out,
              "the discriminator's verdict that x is not real (its negated logit / critic value)"),
    Component("residual", frozenset({INVERSION}), lambda p, s: per_sample_residual(p.x, p.x_hat, p.residual_norm),
              "reconstruction error |x - G(z*)| after latent inversion (l1 or l2, mean over pixels/features)"),
    Component("feature_residual", frozenset({INVERSION}),
              lambda p, s: per_sample_feature_residual(p.f_x, p.f_hat),
              "the same error in D's feature space, mean of (f(x) - f(G(z*)))^2"),
    Component("feature_knn", frozenset({BANK}), lambda p, s: knn_distance(p.f_x, s.bank, p.knn_k),
              "mean distance in D's feature space to the k nearest normal-training samples of the bank"),
    Component("feature_maha", frozenset({BANK, FEATURE_GAUSSIAN}),
              lambda p, s: mahalanobis_sq(p.f_x, s.feature_gaussian.mean, s.feature_gaussian.precision).sqrt(),
              "Mahalanobis distance in D's feature space to a Gaussian fitted to the bank (Ledoit-Wolf)"),
    Component("layer_maha", frozenset({LAYER_GAUSSIANS}), _layer_maha,
              "per D layer, activations pooled to 2x2, squared Mahalanobis distance to that layer's Gaussian of "
              "the bank samples, over its dimension, summed over layers"),
)}

NAMES: tuple = tuple(COMPONENTS)


def needs_of(names) -> frozenset:
    """Everything the given components need together."""
    out: set = set()
    for n in names:
        out |= COMPONENTS[n].needs
    return frozenset(out)


def ordered(names) -> tuple:
    """``names`` in the registry's order (the order of CSV columns)."""
    wanted = set(names)
    return tuple(n for n in NAMES if n in wanted)


def active_components(weights: dict, extra=()) -> tuple:
    """The components a run computes and stores: those weighing above 0, plus any asked for by name."""
    return ordered([n for n, w in weights.items() if w] + list(extra))
