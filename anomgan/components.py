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
RECONSTRUCTION_FEATURES = "reconstruction_features"  # f_hat = D's features of x_hat: a second D pass
BANK = "bank"  # D features of normal-training samples (memory bank)
INPUT_BANK = "input_bank"  # the same samples in model space (standardised features / pixels): the data's own bank
FEATURE_GAUSSIAN = "feature_gaussian"  # one Gaussian fitted to the bank
LAYER_GAUSSIANS = "layer_gaussians"  # one Gaussian per D layer, fitted to the bank samples' pooled activations
LAYER_BANKS = "layer_banks"  # per D layer, a coreset of the bank samples' pooled activations and its distance scale
LOCATION_GAUSSIANS = "location_gaussians"  # per D layer: a mean per location and one covariance (maps)
ANOMALY_MAP = "anomaly_map"  # the calibrated, smoothed anomaly map of the scorer's map components


@dataclass
class Pass:
    """What one scoring pass of a batch has computed; components read from it."""

    x: torch.Tensor  # (B, ...) model-space input
    d_out: torch.Tensor  # (B,) D's raw output (logit / critic value), high = real
    f_x: torch.Tensor  # (B, F) D's features of x
    layers: Optional[list] = None  # per D layer (B, F_i) pooled activations, when a component needs them
    x_hat: Optional[torch.Tensor] = None  # (B, ...) reconstruction, when a component needs it
    f_hat: Optional[torch.Tensor] = None  # (B, F) D's features of x_hat, when a component needs them
    residual_norm: str = "l1"  # l1 | l2
    knn_k: int = 5
    layer_maps: Optional[list] = None  # per D layer (B, C_i, h_i, w_i) activations, when a map needs them
    anomaly_map: Optional[torch.Tensor] = None  # (B, S, S) calibrated anomaly map, when a component reads it
    map_topk: float = 0.01  # share of the map's pixels whose mean is map_max


@dataclass(frozen=True)
class Component:
    name: str
    needs: frozenset  # of the needs above
    compute: Callable  # (Pass, scorer) -> (B,) tensor
    meaning: str  # one line for docs and the README


def _layer_maha(p: Pass, scorer) -> torch.Tensor:
    # squared distance over dimension: its mean under each layer's Gaussian is 1, so layers add on one scale
    return sum(mahalanobis_sq(h, g.mean, g.precision) / h.shape[1] for h, g in zip(p.layers, scorer.layer_gaussians))


def _layer_knn(p: Pass, scorer) -> torch.Tensor:
    # each layer's distance over that layer's typical one among normal samples, so layers add on one scale
    return sum(knn_distance(h, b.rows, p.knn_k) / b.scale for h, b in zip(p.layers, scorer.layer_banks)) / len(p.layers)


COMPONENTS: dict[str, Component] = {c.name: c for c in (
    Component("d_score", frozenset(), lambda p, s: -p.d_out,
              "the discriminator's verdict that x is not real (its negated logit / critic value)"),
    Component("residual", frozenset({INVERSION}), lambda p, s: per_sample_residual(p.x, p.x_hat, p.residual_norm),
              "reconstruction error after latent inversion: mean abs(x - G(z*)) (l1) or squared (l2) over pixels "
              "or features"),
    Component("feature_residual", frozenset({INVERSION, RECONSTRUCTION_FEATURES}),
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
    Component("layer_knn", frozenset({LAYER_BANKS}), _layer_knn,
              "per D layer, activations pooled to 2x2, mean distance to the k nearest rows of that layer's bank (the "
              "bank samples' activations, a coreset of score.coreset_size), over the bank samples' own mean "
              "distance, averaged over layers"),
)}

def _map_max(p: Pass, scorer) -> torch.Tensor:
    flat = p.anomaly_map.flatten(1)
    k = max(1, int(round(p.map_topk * flat.shape[1])))
    return flat.topk(k, dim=1).values.mean(1)


COMPONENTS["map_max"] = Component(
    "map_max", frozenset({ANOMALY_MAP}), _map_max,
    "mean of the top 1 % (score.map_topk) of the anomaly map's pixels: the image score of a local defect")

COMPONENTS["input_knn"] = Component(
    "input_knn", frozenset({INPUT_BANK}), lambda p, s: knn_distance(p.x.flatten(1), s.input_bank, p.knn_k),
    "mean distance in model space (standardised features, or pixels in [-1, 1]) to the k nearest normal-training "
    "samples: kNN on the data itself, no network; the strong baseline of tables, weak on images")

NAMES: tuple = tuple(COMPONENTS)


# ---------------------------------------------------------------------------- maps: (B, S, S), higher = more anomalous


@dataclass(frozen=True)
class MapComponent:
    name: str
    needs: frozenset
    compute: Callable  # (Pass, scorer) -> (B, S, S) at the model's resolution
    meaning: str


def _residual_map(p: Pass, scorer) -> torch.Tensor:
    diff = p.x - p.x_hat
    return (diff.abs() if p.residual_norm == "l1" else diff.pow(2)).mean(1)


def _layer_maha_map(p: Pass, scorer) -> torch.Tensor:
    import torch.nn.functional as F

    size = p.x.shape[-2:]
    total = 0.0
    for h, g in zip(p.layer_maps, scorer.location_gaussians):
        d = (h.to(g.mean.dtype) - g.mean).flatten(2)  # (B, C, L) with L = h * w locations
        m = torch.einsum("bcl,lcd,bdl->bl", d, g.precision, d).clamp_min(0) / d.shape[1]
        m = m.view(h.shape[0], *h.shape[2:])  # (B, h, w); shape, not len(): a symbolic batch in export
        total = total + F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return total / len(p.layer_maps)


MAPS: dict[str, MapComponent] = {m.name: m for m in (
    MapComponent("residual_map", frozenset({INVERSION}), _residual_map,
                 "per pixel abs(x - G(z*)) (l1, or squared for l2), mean over channels"),
    MapComponent("layer_maha_map", frozenset({LOCATION_GAUSSIANS}), _layer_maha_map,
                 "per location of a D layer (score.map_layers), squared Mahalanobis distance of the activations to "
                 "that location's normal Gaussian (Ledoit-Wolf), over the layer's dimension; upsampled"),
)}
MAP_NAMES: tuple = tuple(MAPS)


def needs_of(names, maps=()) -> frozenset:
    """Everything the given components (and map components) need together."""
    out: set = set()
    for n in names:
        out |= COMPONENTS[n].needs
    for n in maps:
        out |= MAPS[n].needs
    return frozenset(out)


def ordered(names, registry=None) -> tuple:
    """``names`` in the registry's order (the order of CSV columns)."""
    wanted = set(names)
    return tuple(n for n in (registry or NAMES) if n in wanted)


def active_components(weights: dict, extra=()) -> tuple:
    """The components a run computes and stores: those weighing above 0, plus any asked for by name."""
    return ordered([n for n, w in weights.items() if w] + list(extra))
