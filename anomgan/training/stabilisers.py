"""EMA of generator weights, DiffAugment-style augmentation of discriminator inputs, the shift that consistency
regularisation compares D's verdicts under, and the CutPaste negatives D learns to call fake."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """ema <- d*ema + (1-d)*model, with d warmed up as (1+t)/(10+t) so short runs are not dominated by init."""
    d = min(decay, (1.0 + step) / (10.0 + step))
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p.detach(), 1.0 - d)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)  # BatchNorm statistics follow the live generator


def diff_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random translation (1/8 of the size) + cutout (1/4 of the area), per sample, differentiable in x.

    Applied identically in kind (not in draw) to real and fake batches before D, so D cannot
    memorise a small training set (Zhao et al. 2020). x: (B, C, H, W) in [-1, 1]. The same transform makes the
    second view of each real image for ``train.contrastive``.
    """
    if x.dim() != 4:
        return x
    b, _, h, w = x.shape
    dev = x.device
    x = translate(x, generator)
    ch, cw = max(1, h // 2), max(1, w // 2)
    cy = torch.randint(0, h, (b, 1, 1), device=dev, generator=generator)
    cx = torch.randint(0, w, (b, 1, 1), device=dev, generator=generator)
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    hole = ((ys - cy).abs() <= ch // 2) & ((xs - cx).abs() <= cw // 2)  # (B, H, W)
    return x * (~hole).unsqueeze(1).to(x.dtype)


def translate(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image by up to 1/8 of its size in each direction, filling with -1 (black); differentiable in x.
    x: (B, C, H, W) in [-1, 1]; other shapes (tables) come back unchanged."""
    if x.dim() != 4:
        return x
    b, _, h, w = x.shape
    dev = x.device
    r = max(1, round(h / 8))
    sy = torch.randint(-r, r + 1, (b, 1, 1), device=dev, generator=generator)
    sx = torch.randint(-r, r + 1, (b, 1, 1), device=dev, generator=generator)
    gy = torch.arange(h, device=dev).view(1, h, 1) + sy + r  # (B, H, 1) rows into the padded image
    gx = torch.arange(w, device=dev).view(1, 1, w) + sx + r  # (B, 1, W)
    padded = F.pad(x, (r, r, r, r), value=-1.0)
    return padded[torch.arange(b, device=dev).view(b, 1, 1), :, gy, gx].permute(0, 3, 1, 2)  # (B, C, H, W)


CUT_PASTE_AREA = (0.02, 0.15)  # the patch's share of the image (CutPaste, Li et al. 2021)
CUT_PASTE_ASPECT = (0.3, 3.3)  # its height / width, drawn log-uniformly
CUT_PASTE_MIN_CHANGE = 0.1  # mean |change| over the patch, in [-1, 1] units, below which a negative is not one


def cut_paste(x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """CutPaste negatives: in each image a rectangle of 2-15 % of its area is copied from one random place to another.

    x: (B, C, H, W) in [-1, 1]. Returns (negatives (B, C, H, W), kept (B,) bool): ``kept`` is False where the pasted
    patch hardly differs from what it covers (background onto background), which would teach D to call a normal image
    fake. Nothing assumes an orientation or a colour: a stroke pasted where there was none, or background pasted
    over a stroke, on digits; a piece of texture or rim out of place on inspection images.
    """
    b, _, h, w = x.shape
    dev = x.device

    def draw() -> torch.Tensor:  # (B,) uniform in [0, 1)
        return torch.rand(b, device=dev, generator=generator)

    area = (CUT_PASTE_AREA[0] + (CUT_PASTE_AREA[1] - CUT_PASTE_AREA[0]) * draw()) * h * w
    lo, hi = torch.log(torch.tensor(CUT_PASTE_ASPECT, device=dev))
    aspect = torch.exp(lo + (hi - lo) * draw())
    ph = (area * aspect).sqrt().round().clamp(1, h - 1).long()  # (B,) patch height
    pw = (area / aspect).sqrt().round().clamp(1, w - 1).long()  # (B,) patch width
    y0, x0 = (draw() * (h - ph + 1)).long(), (draw() * (w - pw + 1)).long()  # where it goes
    sy, sx = (draw() * (h - ph + 1)).long(), (draw() * (w - pw + 1)).long()  # where it comes from
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    inside = ((ys >= y0.view(b, 1, 1)) & (ys < (y0 + ph).view(b, 1, 1))
              & (xs >= x0.view(b, 1, 1)) & (xs < (x0 + pw).view(b, 1, 1)))  # (B, H, W)
    gy = torch.where(inside, ys + (sy - y0).view(b, 1, 1), ys)  # (B, H, W) source row of each pixel
    gx = torch.where(inside, xs + (sx - x0).view(b, 1, 1), xs)
    negatives = x[torch.arange(b, device=dev).view(b, 1, 1), :, gy, gx].permute(0, 3, 1, 2)  # (B, C, H, W)
    change = ((negatives - x).abs().mean(1) * inside).flatten(1).sum(1) / (ph * pw)  # (B,) over the patch
    return negatives, change >= CUT_PASTE_MIN_CHANGE
