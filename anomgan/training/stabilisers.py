"""EMA of generator weights, DiffAugment-style augmentation of discriminator inputs, the shift that consistency
regularisation compares D's verdicts under, and the negatives (CutPaste, cut-out) D learns to call fake."""

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


def _uniform(x: torch.Tensor, generator: torch.Generator | None):
    """A draw of one uniform [0, 1) number per image of ``x`` ((B,)), from ``generator``."""
    return lambda: torch.rand(x.shape[0], device=x.device, generator=generator)


def _patches(x: torch.Tensor, draw, area_range=CUT_PASTE_AREA) -> tuple[torch.Tensor, ...]:
    """One random rectangle per image of ``x``, ``area_range`` (lowest, highest) of its area, 2-15 % unless told:
    (height, width, top, left), each (B,) long."""
    _, _, h, w = x.shape
    area = (area_range[0] + (area_range[1] - area_range[0]) * draw()) * h * w
    lo, hi = torch.log(torch.tensor(CUT_PASTE_ASPECT, device=x.device))
    aspect = torch.exp(lo + (hi - lo) * draw())
    ph = (area * aspect).sqrt().round().clamp(1, h - 1).long()  # (B,) patch height
    pw = (area / aspect).sqrt().round().clamp(1, w - 1).long()  # (B,) patch width
    y0, x0 = (draw() * (h - ph + 1)).long(), (draw() * (w - pw + 1)).long()  # where it goes
    return ph, pw, y0, x0


def _inside(ph, pw, y0, x0, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, H, W) bool mask of each image's rectangle, and the (1, H, 1) / (1, 1, W) pixel coordinates."""
    b, dev = ph.shape[0], ph.device
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    inside = ((ys >= y0.view(b, 1, 1)) & (ys < (y0 + ph).view(b, 1, 1))
              & (xs >= x0.view(b, 1, 1)) & (xs < (x0 + pw).view(b, 1, 1)))
    return inside, ys, xs


def _kept(negatives: torch.Tensor, x: torch.Tensor, inside: torch.Tensor, ph, pw) -> torch.Tensor:
    """(B,) bool: the patch changed the image by at least ``CUT_PASTE_MIN_CHANGE`` on average over its pixels."""
    change = ((negatives - x).abs().mean(1) * inside).flatten(1).sum(1) / (ph * pw)
    return change >= CUT_PASTE_MIN_CHANGE


def cut_paste(x: torch.Tensor, generator: torch.Generator | None = None,
              area=CUT_PASTE_AREA) -> tuple[torch.Tensor, torch.Tensor]:
    """CutPaste negatives: in each image a rectangle of 2-15 % of its area (``area``: the share's range) is copied from
    one random place to another.

    x: (B, C, H, W) in [-1, 1]. Returns (negatives (B, C, H, W), kept (B,) bool): ``kept`` is False where the pasted
    patch hardly differs from what it covers (background onto background), which would teach D to call a normal image
    fake. Nothing assumes an orientation or a colour: a stroke pasted where there was none, or background pasted
    over a stroke, on digits; a piece of texture or rim out of place on inspection images.
    """
    b, _, h, w = x.shape
    dev = x.device
    draw = _uniform(x, generator)
    ph, pw, y0, x0 = _patches(x, draw, area)
    sy, sx = (draw() * (h - ph + 1)).long(), (draw() * (w - pw + 1)).long()  # where it comes from
    inside, ys, xs = _inside(ph, pw, y0, x0, h, w)
    gy = torch.where(inside, ys + (sy - y0).view(b, 1, 1), ys)  # (B, H, W) source row of each pixel
    gx = torch.where(inside, xs + (sx - x0).view(b, 1, 1), xs)
    negatives = x[torch.arange(b, device=dev).view(b, 1, 1), :, gy, gx].permute(0, 3, 1, 2)  # (B, C, H, W)
    return negatives, _kept(negatives, x, inside, ph, pw)


def cut_out(x: torch.Tensor, generator: torch.Generator | None = None,
            area=CUT_PASTE_AREA) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut-out negatives: in each image a rectangle of 2-15 % of its area (as ``cut_paste`` draws it) is filled with
    that image's per-channel median, its most typical tone (background on digits). A part of the object goes missing:
    a stroke broken off a digit, a piece of rim or texture blanked on inspection images. Returns (negatives, kept) as
    ``cut_paste`` does; an image whose rectangle held only that tone is not kept."""
    b, c, h, w = x.shape
    ph, pw, y0, x0 = _patches(x, _uniform(x, generator), area)
    inside, _, _ = _inside(ph, pw, y0, x0, h, w)
    tone = x.flatten(2).median(dim=2).values.view(b, c, 1, 1)
    negatives = torch.where(inside.unsqueeze(1), tone, x)
    return negatives, _kept(negatives, x, inside, ph, pw)


NEGATIVE_KINDS = {"cutpaste": cut_paste, "cutout": cut_out}  # train.negative_kinds: how real images are spoilt


NEGATIVE_ROWS = ("batch", "share")  # train.negative_rows: how many negatives a critic pass scores


def negative_count(rows: str, share: float, batch: int) -> int:
    """How many of a batch's ``batch`` real images are spoilt into negatives for one critic pass: all of them
    (``batch``: their loss weighs ``share``), or only the share's rows, at least one (``share``: the same expected loss
    from fewer rows, so D's pass is 2B + share * B rows instead of 3B)."""
    if rows == "batch":
        return batch
    return min(batch, max(1, round(share * batch)))


def spoil(x: torch.Tensor, kinds, generator: torch.Generator | None = None,
          area=CUT_PASTE_AREA) -> tuple[torch.Tensor, torch.Tensor]:
    """NDA negatives of ``x``, each image spoilt by one of ``kinds`` (names in ``NEGATIVE_KINDS``) drawn uniformly
    per image, its rectangle ``area`` (lowest, highest share of the image); one kind draws nothing more than that kind
    itself. Returns (negatives, kept) as ``cut_paste`` does."""
    made = [NEGATIVE_KINDS[k](x, generator, area) for k in kinds]
    if len(made) == 1:
        return made[0]
    which = torch.randint(len(made), (x.shape[0],), device=x.device, generator=generator)
    negatives, kept = made[0]
    for i, (neg, keep) in enumerate(made[1:], start=1):
        negatives = torch.where((which == i).view(-1, 1, 1, 1), neg, negatives)
        kept = torch.where(which == i, keep, kept)
    return negatives, kept
