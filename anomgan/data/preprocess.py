"""The transform from source units to model inputs, fitted on normal-train and recorded in the run.

Images: channels converted, padded or resized to a power-of-two size, values mapped [0,1] -> [-1,1].
Tables: standardised with mean/std of normal-train.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anomgan.errors import DataError


def next_power_of_two(n: int) -> int:
    size = 8
    while size < n:
        size *= 2
    return size


@dataclass
class Preprocessor:
    kind: str  # "image" | "tabular"
    in_shape: list  # per-sample input shape the run was trained on: [C, H, W] or [D]
    image_size: Optional[int] = None  # model resolution
    channels: Optional[int] = None  # model channels
    resize: str = "pad"  # how in_shape reaches image_size
    allow_resize: bool = False  # accept inputs of other sizes by resizing them to in_shape
    mean: Optional[list] = None  # tabular standardisation, fitted on normal-train only
    std: Optional[list] = None
    feature_names: Optional[list] = None

    @property
    def model_shape(self) -> tuple:
        if self.kind == "image":
            return (self.channels, self.image_size, self.image_size)
        return (self.in_shape[0],)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessor":
        return cls(**d)

    def check(self, x: np.ndarray, where: str = "input") -> np.ndarray:
        """Raise DataError when ``x`` does not have the run's per-sample shape; resize when allowed."""
        if self.kind == "tabular":
            if x.ndim != 2 or x.shape[1] != self.in_shape[0]:
                raise DataError(f"{where}: expected vectors of {self.in_shape[0]} features as at training, got shape "
                                f"{tuple(x.shape[1:]) if x.ndim > 1 else tuple(x.shape)}")
            return x
        if x.ndim != 4:
            raise DataError(f"{where}: expected images, got an array of shape {tuple(x.shape)}")
        c, h, w = self.in_shape
        if x.shape[1] != c:
            raise DataError(f"{where}: images have {x.shape[1]} channel(s), the run was trained on {c}")
        if tuple(x.shape[2:]) != (h, w):
            if not self.allow_resize:
                raise DataError(f"{where}: images are {x.shape[2]}x{x.shape[3]}, the run was trained on {h}x{w} "
                                f"(set data.allow_resize=true at training to resize inputs)")
            x = F.interpolate(torch.from_numpy(x), size=(h, w), mode="bilinear", antialias=True,
                              align_corners=False).clamp(0, 1).numpy()
        return x

    def transform(self, x: np.ndarray) -> torch.Tensor:
        """Source units -> model input tensor, (N, C, S, S) in [-1, 1] or (N, D) standardised (``Preprocess``)."""
        x = self.check(x)
        with torch.no_grad():
            return Preprocess(self.to_dict())(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))

    def to_unit(self, t: torch.Tensor) -> torch.Tensor:
        """Model space -> [0, 1] for pictures (images only)."""
        return Preprocess(self.to_dict()).inverse(t)


class Preprocess(nn.Module):
    """Source units -> model space: images (B, C, H, W) in [0, 1] at the trained size -> channels converted, padded
    (value 0) or resized to (S, S), mapped to [-1, 1]; tables (B, D) standardised with normal-train statistics."""

    def __init__(self, spec: dict):
        super().__init__()
        self.kind = spec["kind"]
        if self.kind == "tabular":
            self.register_buffer("mean", torch.tensor(spec["mean"], dtype=torch.float32))
            self.register_buffer("std", torch.tensor(spec["std"], dtype=torch.float32))
        else:
            self.channels, self.size, self.resize = spec["channels"], spec["image_size"], spec["resize"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "tabular":
            return (x - self.mean) / self.std
        if x.shape[1] != self.channels:
            x = x.repeat(1, 3, 1, 1) if self.channels == 3 else x.mean(dim=1, keepdim=True)
        h, w = x.shape[2:]
        s = self.size
        if (h, w) != (s, s):
            if self.pads(h, w):
                top, left = self.pad_offsets(h, w)
                x = F.pad(x, (left, s - w - left, top, s - h - top), value=0.0)
            else:
                x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        return x * 2.0 - 1.0

    def pads(self, h: int, w: int) -> bool:
        """Whether an (h, w) image is padded (not resized) to the model's size."""
        return self.resize == "pad" and h <= self.size and w <= self.size

    def pad_offsets(self, h: int, w: int) -> tuple[int, int]:
        """(top, left) of an (h, w) image inside the padded model-size square: centred."""
        return (self.size - h) // 2, (self.size - w) // 2

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Model space -> source units ([0, 1] images at the model size; tables de-standardised)."""
        if self.kind == "tabular":
            return x * self.std + self.mean
        return ((x + 1.0) / 2.0).clamp(0, 1)


def fit_preprocessor(x_train: np.ndarray, kind: str, image_size: Optional[int] = None, channels: Optional[int] = None,
                     resize: str = "pad", allow_resize: bool = False,
                     feature_names: Optional[list] = None) -> Preprocessor:
    """Fit on normal-train samples only."""
    if kind == "tabular":
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std = np.where(std < 1e-6, 1.0, std)  # constant columns: leave their scale alone
        return Preprocessor(kind="tabular", in_shape=[int(x_train.shape[1])], mean=mean.tolist(), std=std.tolist(),
                            feature_names=feature_names)
    c, h, w = (int(v) for v in x_train.shape[1:])
    size = image_size or next_power_of_two(max(h, w))
    if size > 256:
        raise DataError(f"images of {h}x{w} need a model of {size} px; the largest supported is 256 "
                        f"(set data.image_size to 128 or 256 and data.resize=resize)")
    return Preprocessor(kind="image", in_shape=[c, h, w], image_size=size, channels=channels or c, resize=resize,
                        allow_resize=allow_resize)
