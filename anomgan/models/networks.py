"""Generator, discriminator and encoder. Pure ``nn.Module``s; this file imports only torch.

Images: DCGAN-style convolutions for square power-of-two sizes 8..64, 1 or 3 channels.
Tables: MLPs. The discriminator exposes ``features(x)``, the vector f(x) used for feature
matching and the feature residual.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn


def _maybe_sn(module: nn.Module, enabled: bool) -> nn.Module:
    return _sn(module) if enabled else module


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """NHWC memory layout: oneDNN (CPU) and cuDNN convolutions run faster on it; the logical shape is unchanged."""
    return x.contiguous(memory_format=torch.channels_last)


def _levels(image_size: int) -> int:
    """Number of x2 steps between a 4x4 map and ``image_size``."""
    n = int(math.log2(image_size)) - 2
    if image_size not in (8, 16, 32, 64, 128, 256):
        raise ValueError(f"image_size must be 8, 16, 32, 64, 128 or 256, got {image_size}")
    return n


def _max_channels(width: int) -> int:
    """Channel cap: 16x the base width, reached at 64 px; larger images add levels, not channels (a 256-px critic
    would otherwise end in 32x the width, and its feature bank in 16x that per sample)."""
    return width * 16


class ConvGenerator(nn.Module):
    """z (B, z_dim) -> x_hat (B, C, S, S) in [-1, 1]."""

    def __init__(self, z_dim: int, channels: int, image_size: int, width: int):
        super().__init__()
        n = _levels(image_size)
        c0 = min(width * 2 ** (n - 1), _max_channels(width)) if n > 0 else width
        self.c0 = c0
        self.project = nn.Sequential(nn.Linear(z_dim, c0 * 16), nn.BatchNorm1d(c0 * 16), nn.ReLU(True))
        layers: list[nn.Module] = []
        c = c0
        for i in range(n):
            c_out = max(width, c // 2) if i < n - 1 else width
            layers += [nn.ConvTranspose2d(c, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
            c = c_out  # (B, c, 4*2^(i+1), ...)
        layers += [nn.Conv2d(c, channels, 3, 1, 1), nn.Tanh()]  # (B, C, S, S)
        self.body = nn.Sequential(*layers).to(memory_format=torch.channels_last)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(z.shape[0], self.c0, 4, 4)  # (B, c0, 4, 4)
        return self.body(_channels_last(h))


class _ConvTrunk(nn.Module):
    """x (B, C, S, S) -> flat features (B, c_last * 16); shared by D and E (separate weights)."""

    def __init__(self, channels: int, image_size: int, width: int, sn: bool):
        super().__init__()
        n = _levels(image_size)
        layers: list[nn.Module] = [_maybe_sn(nn.Conv2d(channels, width, 3, 1, 1), sn), nn.LeakyReLU(0.2, True)]
        c = width
        for _ in range(n):
            c_out = min(c * 2, _max_channels(width))
            layers += [_maybe_sn(nn.Conv2d(c, c_out, 4, 2, 1), sn), nn.LeakyReLU(0.2, True)]
            c = c_out  # spatial size halves each step, down to (B, c, 4, 4)
        self.body = nn.Sequential(*layers).to(memory_format=torch.channels_last)
        self.out_dim = c * 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(_channels_last(x)).flatten(1)  # flatten keeps the logical (C, H, W) order


class _Discriminator(nn.Module):
    """The D interface: ``features(x)`` -> f(x) (B, F) from ``trunk``; ``forward(x)`` -> logit (B,) from ``head``."""

    trunk: nn.Module
    head: nn.Module

    @property
    def feature_dim(self) -> int:
        """F, the size of f(x)."""
        return self.head.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.trunk(x)
        return self.head(f).squeeze(1), f

    def forward(self, x: torch.Tensor, with_features: bool = False):
        """logit (B,); with ``with_features``, (logit, f(x)): the one call that DistributedDataParallel wraps."""
        out = self.forward_with_features(x)
        return out if with_features else out[0]

    def forward_with_layers(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(logit (B,), f(x) (B, F), coarse activations of every trunk layer) in one pass.

        The layers are the outputs of the trunk's nonlinearities, each averaged to a 2x2 grid (images: one value
        per channel and quadrant, (B, 4 * C_i)) or taken whole (tables, (B, width)): ``layer_maha``'s input.
        """
        logit, f, layers, _ = self.forward_with_maps(x)
        return logit, f, layers

    def forward_with_maps(self, x: torch.Tensor, keep_maps: bool = False):
        """As ``forward_with_layers``, plus (``keep_maps``) every trunk layer's activations whole, (B, C_i, h_i, w_i):
        the per-location input of the anomaly maps. Returns (logit, f, pooled layers, maps or None)."""
        body = getattr(self.trunk, "body", self.trunk)  # conv trunks wrap their Sequential, MLP trunks are one
        h = _channels_last(x) if x.ndim == 4 else x
        layers, maps = [], [] if keep_maps else None
        for m in body:
            h = m(h)
            if isinstance(m, nn.LeakyReLU):
                layers.append(nn.functional.adaptive_avg_pool2d(h, 2).flatten(1) if h.ndim == 4 else h.clone())
                if keep_maps:
                    maps.append(h.clone())
        f = h.flatten(1)
        return self.head(f).squeeze(1), f, layers, maps


class ConvDiscriminator(_Discriminator):
    """x (B, C, S, S) -> logit (B,); ``features(x)`` -> (B, F)."""

    def __init__(self, channels: int, image_size: int, width: int, spectral_norm: bool = True):
        super().__init__()
        self.trunk = _ConvTrunk(channels, image_size, width, spectral_norm)
        self.head = _maybe_sn(nn.Linear(self.trunk.out_dim, 1), spectral_norm)


class _Encoder(nn.Module):
    """The E interface: ``forward(x, features=None)`` -> z (B, z_dim). ``features`` is D's f(x) when the caller has
    it: an encoder on the critic's features (``CriticEncoder``) then skips D's pass; one with a trunk of its own
    ignores it. ``reads_critic_features`` says which kind this is."""

    reads_critic_features = False


class ConvEncoder(_Encoder):
    """x (B, C, S, S) -> z (B, z_dim), with a conv trunk of its own (f-AnoGAN's encoder)."""

    def __init__(self, channels: int, image_size: int, width: int, z_dim: int):
        super().__init__()
        self.trunk = _ConvTrunk(channels, image_size, width, sn=False)
        self.head = nn.Linear(self.trunk.out_dim, z_dim)

    def forward(self, x: torch.Tensor, features: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.head(self.trunk(x))


class CriticEncoder(_Encoder):
    """x -> z as a small MLP on the critic's features f(x) (``model.encoder_trunk: critic``): no trunk of its own,
    so the scorer, which has f(x) from D's pass already, inverts with no extra network pass.

    The critic is held by reference (``bind``), not as a submodule: its weights are D's, E's state is the head
    alone, and a trainer with an average of D binds E to the D the scorer reads."""

    reads_critic_features = True

    def __init__(self, feature_dim: int, z_dim: int, hidden: int = 256):
        super().__init__()
        self.head = nn.Sequential(nn.Linear(feature_dim, hidden), nn.LeakyReLU(0.2, True), nn.Linear(hidden, z_dim))
        self._critic: list = []  # [D]: a list keeps D out of E's modules, parameters and state_dict

    def bind(self, critic: nn.Module) -> "CriticEncoder":
        self._critic[:] = [critic]
        return self

    def forward(self, x: torch.Tensor, features: Optional[torch.Tensor] = None) -> torch.Tensor:
        f = self._critic[0].features(x) if features is None else features
        return self.head(f.detach())  # D's features are E's input, not E: no gradient of E's reaches D


def _mlp(d_in: int, width: int, depth: int, act: nn.Module, sn: bool = False, norm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        layers.append(_maybe_sn(nn.Linear(d, width), sn))
        if norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(act)
        d = width
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """z (B, z_dim) -> x_hat (B, D) in standardised units."""

    def __init__(self, z_dim: int, n_features: int, width: int, depth: int):
        super().__init__()
        self.body = _mlp(z_dim, width, depth, nn.ReLU(True), norm=True)
        self.out = nn.Linear(width, n_features)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(z))


class MLPDiscriminator(_Discriminator):
    """x (B, D) -> logit (B,); ``features(x)`` -> (B, width)."""

    def __init__(self, n_features: int, width: int, depth: int, spectral_norm: bool = True):
        super().__init__()
        self.trunk = _mlp(n_features, width, depth, nn.LeakyReLU(0.2, True), sn=spectral_norm)
        self.head = _maybe_sn(nn.Linear(width, 1), spectral_norm)


class MLPEncoder(_Encoder):
    """x (B, D) -> z (B, z_dim), with an MLP trunk of its own."""

    def __init__(self, n_features: int, width: int, depth: int, z_dim: int):
        super().__init__()
        self.body = _mlp(n_features, width, depth, nn.LeakyReLU(0.2, True))
        self.head = nn.Linear(width, z_dim)

    def forward(self, x: torch.Tensor, features: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.head(self.body(x))


def build_models(model_args: dict) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(generator, discriminator, encoder) from self-describing ``model_args`` saved in checkpoints.

    model_args: kind ("image"|"tabular"), z_dim, width, depth, spectral_norm, and channels + image_size
    (images) or n_features (tables); ``encoder_trunk: critic`` when E is a head on D's features (absent: E has a
    trunk of its own). A critic encoder comes bound to the returned D.
    """
    a = model_args
    if a["kind"] == "image":
        g = ConvGenerator(a["z_dim"], a["channels"], a["image_size"], a["width"])
        d = ConvDiscriminator(a["channels"], a["image_size"], a["width"], a["spectral_norm"])
        own = lambda: ConvEncoder(a["channels"], a["image_size"], a["width"], a["z_dim"])  # noqa: E731
    else:
        g = MLPGenerator(a["z_dim"], a["n_features"], a["width"], a["depth"])
        d = MLPDiscriminator(a["n_features"], a["width"], a["depth"], a["spectral_norm"])
        own = lambda: MLPEncoder(a["n_features"], a["width"], a["depth"], a["z_dim"])  # noqa: E731
    if a.get("encoder_trunk", "own") == "critic":
        return g, d, CriticEncoder(d.feature_dim, a["z_dim"]).bind(d)
    return g, d, own()
