"""Latent inversion: find z so that G(z) explains x. All samples of a batch are optimised in parallel.

Each sample owns its own z; the objective is a sum of per-sample terms and Adam works element-wise,
so a sample's result does not depend on which other samples share its batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn


@dataclass
class InversionResult:
    z: torch.Tensor  # (B, z_dim) best latent per sample
    x_hat: torch.Tensor  # (B, ...) G(z)
    trace: Optional[torch.Tensor] = None  # (steps,) mean objective per step, when requested


def per_sample_residual(x: torch.Tensor, x_hat: torch.Tensor, norm: str) -> torch.Tensor:
    """Mean |x - x_hat| (l1) or (x - x_hat)^2 (l2) over all but the batch axis -> (B,)."""
    diff = (x - x_hat).flatten(1)
    return diff.abs().mean(1) if norm == "l1" else diff.pow(2).mean(1)


def per_sample_feature_residual(f_x: torch.Tensor, f_hat: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of discriminator features -> (B,)."""
    return (f_x - f_hat).pow(2).mean(1)


def inversion_objective(generator: nn.Module, discriminator: nn.Module, x: torch.Tensor, f_x: torch.Tensor,
                        z: torch.Tensor, lam: float, norm: str) -> tuple[torch.Tensor, torch.Tensor]:
    """AnoGAN objective per sample: (1 - lam) * residual + lam * feature_residual. Returns (loss (B,), x_hat)."""
    x_hat = generator(z)
    loss = (1.0 - lam) * per_sample_residual(x, x_hat, norm)
    if lam > 0:
        loss = loss + lam * per_sample_feature_residual(f_x, discriminator.features(x_hat))
    return loss, x_hat


def refine_latent(generator: nn.Module, discriminator: nn.Module, x: torch.Tensor, z0: torch.Tensor, steps: int,
                  lr: float, lam: float, norm: str, f_x: Optional[torch.Tensor] = None,
                  keep_trace: bool = False) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Adam on z from ``z0`` for ``steps`` steps, weights frozen. Returns (z, final per-sample loss, trace)."""
    if f_x is None:
        with torch.no_grad():
            f_x = discriminator.features(x)
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    trace = []
    with torch.enable_grad():
        for _ in range(steps):
            loss, _ = inversion_objective(generator, discriminator, x, f_x, z, lam, norm)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()  # sum: each z_i receives only its own sample's gradient
            opt.step()
            if keep_trace:
                trace.append(loss.detach().mean())
    with torch.no_grad():
        final, _ = inversion_objective(generator, discriminator, x, f_x, z, lam, norm)
    return z.detach(), final, (torch.stack(trace) if keep_trace else None)


def starting_points(restarts: int, z_dim: int, seed: int, device: torch.device) -> torch.Tensor:
    """(R, z_dim): the prior mean, then fixed random draws, identical for every sample (batch-independent)."""
    rest = torch.randn(restarts - 1, z_dim, generator=torch.Generator().manual_seed(seed))
    return torch.cat([torch.zeros(1, z_dim), rest]).to(device)


def invert_latent(x: torch.Tensor, generator: nn.Module, discriminator: nn.Module, encoder: Optional[nn.Module],
                  method: str, steps: int = 500, refine_steps: int = 10, lr: float = 0.05, lam: float = 0.1,
                  restarts: int = 1, norm: str = "l1", seed: int = 0, z_dim: Optional[int] = None,
                  keep_trace: bool = False, f_x: Optional[torch.Tensor] = None) -> InversionResult:
    """Invert a batch ``x`` (B, ...) by ``method``: encoder (f-AnoGAN), iterative (AnoGAN) or hybrid.

    ``f_x``: D's features of ``x`` when the caller already has them (they are not recomputed, and an encoder on the
    critic's features reads them).
    """
    if method == "encoder":
        with torch.no_grad():
            z = encoder(x, features=f_x)
            return InversionResult(z=z, x_hat=generator(z))
    if f_x is None:
        with torch.no_grad():
            f_x = discriminator.features(x)
    if method == "hybrid":
        with torch.no_grad():
            z0 = encoder(x, features=f_x)
        z, _, trace = refine_latent(generator, discriminator, x, z0, refine_steps, lr, lam, norm, f_x, keep_trace)
    elif method == "iterative":
        b = x.shape[0]
        starts = starting_points(restarts, z_dim, seed, x.device)  # (R, z_dim)
        z0 = starts.repeat_interleave(b, dim=0)  # (R*B, z_dim): restart-major
        xr = x.repeat(restarts, *([1] * (x.dim() - 1)))
        fr = f_x.repeat(restarts, 1)
        z_all, final, trace = refine_latent(generator, discriminator, xr, z0, steps, lr, lam, norm, fr, keep_trace)
        best = final.view(restarts, b).argmin(0)  # (B,) best restart per sample
        z = z_all.view(restarts, b, -1)[best, torch.arange(b, device=x.device)]
    else:
        raise ValueError(f"unknown inversion method {method!r}")
    with torch.no_grad():
        return InversionResult(z=z, x_hat=generator(z), trace=trace)
