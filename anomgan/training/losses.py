"""GAN losses on raw discriminator outputs (logits / critic values), each a scalar to minimise."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Adam betas that each loss family is known to train with (Radford et al. 2015; Gulrajani et al. 2017).
DEFAULT_BETAS = {"ns": (0.5, 0.999), "minimax": (0.5, 0.999), "hinge": (0.5, 0.999), "wgan-gp": (0.0, 0.9)}


def real_term(loss: str, real: torch.Tensor) -> torch.Tensor:
    """D's loss on each real sample's output, shape (B,) -> (B,): the part that pulls real outputs up."""
    if loss in ("ns", "minimax"):
        return F.softplus(-real)  # -log D(x)
    if loss == "hinge":
        return F.relu(1.0 - real)
    if loss == "wgan-gp":
        return -real
    raise ValueError(f"unknown loss {loss!r}")


def fake_term(loss: str, fake: torch.Tensor) -> torch.Tensor:
    """D's loss on each fake sample's output, shape (B,) -> (B,): the part that pushes fake outputs down (generated
    samples, and the negatives of ``train.negatives``)."""
    if loss in ("ns", "minimax"):
        return F.softplus(fake)  # -log(1 - D(G(z)))
    if loss == "hinge":
        return F.relu(1.0 + fake)
    if loss == "wgan-gp":
        return fake  # + gradient_penalty, added by the caller
    raise ValueError(f"unknown loss {loss!r}")


def d_loss(loss: str, real: torch.Tensor, fake: torch.Tensor, negatives: torch.Tensor | None = None,
           kept: torch.Tensor | None = None, share: float = 0.0) -> torch.Tensor:
    """Discriminator loss; ``real``/``fake`` are D outputs of shape (B,). With ``negatives`` (D's outputs on the
    ``train.negatives`` images, (B,), ``kept`` marking those that count) D's fake side is a mixture (NDA, Sinha et al.
    2021): ``share`` of it the negatives, the rest G's images, so WGAN's critic keeps its real/fake balance."""
    if negatives is None:
        return real_term(loss, real).mean() + fake_term(loss, fake).mean()
    return (real_term(loss, real).mean() + (1 - share) * fake_term(loss, fake).mean()
            + share * negative_loss(loss, negatives, kept))


def masked_mean(values: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` (B,) over the rows ``kept`` (B,) bool marks; 0 when none is kept."""
    w = kept.to(values.dtype)
    return (values * w).sum() / w.sum().clamp(min=1.0)


def negative_loss(loss: str, out: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """``fake_term`` averaged over the negatives that ``kept`` (B,) bool marks (the others changed too little to be
    called fake); 0 when none is kept."""
    return masked_mean(fake_term(loss, out), kept)


def g_loss(loss: str, fake: torch.Tensor) -> torch.Tensor:
    """Generator loss on D outputs for generated samples, shape (B,)."""
    if loss == "ns":
        return F.softplus(-fake).mean()  # -log D(G(z)): strong gradients early on
    if loss == "minimax":
        return -F.softplus(fake).mean()  # log(1 - D(G(z))): the original, saturating objective
    if loss in ("hinge", "wgan-gp"):
        return -fake.mean()
    raise ValueError(f"unknown loss {loss!r}")


def gradient_penalty(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP: E[(||grad_x D(x_interp)||_2 - 1)^2] on random interpolates of real and fake."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(shape, device=real.device, generator=generator)
    interp = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    out = discriminator(interp)
    (grad,) = torch.autograd.grad(out.sum(), interp, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


CONTRASTIVE_TEMPERATURE = 0.5  # SimCLR's for small batches (Chen et al. 2020)


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = CONTRASTIVE_TEMPERATURE) -> torch.Tensor:
    """SimCLR's NT-Xent: row i of ``a`` and row i of ``b`` (B, P) are two views of one sample; each must pick out
    its partner among the other 2B - 1 rows by cosine similarity."""
    n = a.shape[0]
    z = F.normalize(torch.cat([a, b]).float(), dim=1)
    sim = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, partner)
