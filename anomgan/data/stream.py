"""Streaming readers for ``score``: inputs are read in chunks so memory stays bounded whatever their size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from anomgan.data.preprocess import Preprocessor
from anomgan.data.sources import (
    IMAGE_SUFFIXES,
    NAMED_SOURCES,
    as_images,
    as_table,
    list_image_folder,
    load_source,
    read_csv_table,
    read_image,
)
from anomgan.errors import DataError


@dataclass
class Chunk:
    ids: np.ndarray  # (B,) str
    x: np.ndarray  # raw batch in source units
    labels: Optional[np.ndarray] = None  # (B,) str, when the input carries labels
    sizes: Optional[np.ndarray] = None  # (B, 2) original (height, width) of images resized on reading


class _ImageFiles(torch.utils.data.Dataset):
    """Image files read by DataLoader workers; errors travel back as text (one clear line, no worker trace).
    With ``size`` (runs that resize their inputs), each image is resized to it and its own size is kept."""

    def __init__(self, files: list[Path], channels: int, size: Optional[tuple] = None):
        self.files, self.channels, self.size = files, channels, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        try:
            image = read_image(self.files[i], self.channels)
        except DataError as exc:
            return np.zeros((self.channels, 1, 1), np.float32), str(exc), (1, 1)
        hw = image.shape[1:]
        if self.size is not None and hw != self.size:
            import torch.nn.functional as F

            image = F.interpolate(torch.from_numpy(image)[None], size=self.size, mode="bilinear", antialias=True,
                                  align_corners=False)[0].clamp(0, 1).numpy()
        return image, "", hw


def read_image_files(files: list[Path], pre: Preprocessor) -> tuple[np.ndarray, np.ndarray]:
    """Images as a run reads them (resized to its size when it allows) -> (x (B, C, H, W), original sizes (B, 2))."""
    size = tuple(pre.in_shape[1:]) if pre.allow_resize else None
    x, error, sizes = _collate([_ImageFiles(files, pre.in_shape[0], size)[i] for i in range(len(files))])
    if error:
        raise DataError(error)
    return x, sizes


def _collate(items):
    errors = [e for _, e, _ in items if e]
    if errors:
        return None, errors[0], None
    shapes = {a.shape for a, _, _ in items}
    if len(shapes) > 1:
        return None, f"images in one batch differ in size: {sorted(shapes)[:2]}", None
    return np.stack([a for a, _, _ in items]), "", np.asarray([hw for _, _, hw in items], dtype=np.int64)


def count_input(path: str) -> Optional[int]:
    """Cheap sample count for progress bars (None when unknown without reading everything)."""
    p = Path(path)
    if p.is_dir():
        return None
    if p.suffix.lower() == ".npy":
        try:
            return int(np.load(p, mmap_mode="r", allow_pickle=False).shape[0])
        except (ValueError, OSError):
            return None
    return None


def iter_input(path: str, pre: Preprocessor, batch_size: int, num_workers: int = 0, label_column: str = "label",
               root: str = "./data", download: bool = False) -> Iterator[Chunk]:
    """Yield :class:`Chunk`s of at most ``batch_size`` samples from any supported input kind."""
    if path in NAMED_SOURCES:
        ds = load_source(path, root=root, download=download)
        yield from _chunks_of(ds.ids, ds.x, ds.y, batch_size)
        return
    p = Path(path)
    if not p.exists():
        raise DataError(f"input not found: {path}")
    if p.is_dir():
        yield from _iter_folder(p, pre, batch_size, num_workers)
        return
    if p.stat().st_size == 0:
        raise DataError(f"{p}: empty file")
    suffix = p.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        yield from _iter_csv(p, pre, batch_size, label_column)
    elif suffix == ".parquet":
        yield from _iter_parquet(p, pre, batch_size, label_column)
    elif suffix == ".npy":
        arr = open_npy(p)
        check_rank(arr, pre, p)
        for start in range(0, len(arr), batch_size):
            raw = np.asarray(arr[start:start + batch_size])
            x = as_table(raw, str(p)) if pre.kind == "tabular" else as_images(raw, str(p))
            yield Chunk(ids=np.arange(start, start + len(x)).astype(str), x=x)
        if len(arr) == 0:
            raise DataError(f"{p}: no samples")
    elif suffix in IMAGE_SUFFIXES and pre.kind == "image" and pre.allow_resize:
        x, sizes = read_image_files([p], pre)
        yield Chunk(ids=np.asarray([p.name]), x=x, sizes=sizes)
    elif suffix == ".npz" or suffix in IMAGE_SUFFIXES:
        ds = load_source(str(p), channels=pre.in_shape[0] if pre.kind == "image" else None)
        check_rank(ds.x, pre, p)
        yield from _chunks_of(ds.ids, ds.x, ds.y, batch_size)
    else:
        raise DataError(f"{p}: unsupported input type '{suffix}' "
                        f"(use .npy, .npz, .csv, .parquet, an image or an image folder)")


def open_npy(p: Path) -> np.ndarray:
    """A ``.npy`` file memory-mapped (read chunk by chunk), or one line saying why it cannot be read."""
    try:
        return np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{p}: cannot read as .npy array ({str(exc).splitlines()[0]})") from None


def table_head(p: Path, n: int = 100):
    """The first ``n`` rows of a CSV or Parquet table as a pandas frame (without reading the rest)."""
    import pandas as pd

    if p.suffix.lower() != ".parquet":
        return pd.read_csv(p, nrows=n)
    import pyarrow.parquet as pq

    batch = next(pq.ParquetFile(p).iter_batches(batch_size=n), None)
    return pd.DataFrame() if batch is None else batch.to_pandas()


def check_rank(arr: np.ndarray, pre: Preprocessor, where: Path) -> None:
    if pre.kind == "tabular" and arr.ndim != 2:
        raise DataError(f"{where}: the run expects (N, {pre.in_shape[0]}) vectors, got an array of shape {arr.shape}")
    if pre.kind == "image" and arr.ndim not in (3, 4):
        raise DataError(f"{where}: the run expects images, got an array of shape {arr.shape}")


def _chunks_of(ids, x, y, batch_size) -> Iterator[Chunk]:
    for s in range(0, len(x), batch_size):
        yield Chunk(ids=ids[s:s + batch_size], x=x[s:s + batch_size], labels=None if y is None else y[s:s + batch_size])


def _iter_csv(p: Path, pre: Preprocessor, batch_size: int, label_column: str) -> Iterator[Chunk]:
    import pandas as pd

    if pre.kind != "tabular":
        raise DataError(f"{p}: the run was trained on images, a CSV table cannot be scored with it")
    try:
        reader = pd.read_csv(p, chunksize=batch_size)
        n = 0
        for frame in reader:
            if len(frame) == 0:
                continue  # header-only file: reported below as zero rows
            x, y, _ = read_csv_table(frame, str(p), label_column, pre.feature_names)
            yield Chunk(ids=frame.index.to_numpy().astype(str), x=x, labels=None if y is None else y.astype(str))
            n += len(frame)
    except pd.errors.EmptyDataError:
        raise DataError(f"{p}: empty CSV file") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: cannot parse CSV ({str(exc).splitlines()[0]})") from None
    if n == 0:
        raise DataError(f"{p}: CSV has a header but zero rows")


def _iter_parquet(p: Path, pre: Preprocessor, batch_size: int, label_column: str) -> Iterator[Chunk]:
    """A Parquet table in row batches; columns as in CSV (the training features by name, an optional label)."""
    from anomgan.io import require

    require("pyarrow", "Parquet input", "parquet")
    import pyarrow.parquet as pq

    if pre.kind != "tabular":
        raise DataError(f"{p}: the run was trained on images, a Parquet table cannot be scored with it")
    try:
        reader = pq.ParquetFile(p)
    except Exception as exc:  # noqa: BLE001 - pyarrow's error types: one line
        raise DataError(f"{p}: cannot read as Parquet ({str(exc).splitlines()[0][:120]})") from None
    n = 0
    for batch in reader.iter_batches(batch_size=batch_size):
        frame = batch.to_pandas()
        frame.index = range(n, n + len(frame))  # row ids count from the file's first row, as for CSV
        x, y, _ = read_csv_table(frame, str(p), label_column, pre.feature_names)
        yield Chunk(ids=frame.index.to_numpy().astype(str), x=x, labels=None if y is None else y.astype(str))
        n += len(frame)
    if n == 0:
        raise DataError(f"{p}: Parquet file has zero rows")


def _iter_folder(p: Path, pre: Preprocessor, batch_size: int, num_workers: int) -> Iterator[Chunk]:
    if pre.kind != "image":
        raise DataError(f"{p}: the run was trained on tabular data, an image folder cannot be scored with it")
    files, labels = list_image_folder(p)
    size = tuple(pre.in_shape[1:]) if pre.allow_resize else None
    loader = torch.utils.data.DataLoader(_ImageFiles(files, pre.in_shape[0], size), batch_size=batch_size,
                                         num_workers=num_workers, collate_fn=_collate)
    start = 0
    for x, error, sizes in loader:
        if error:
            raise DataError(error)
        ids = np.asarray([str(f.relative_to(p)) for f in files[start:start + len(x)]])
        lab = None if labels is None else np.asarray(labels[start:start + len(x)])
        yield Chunk(ids=ids, x=x, labels=lab, sizes=sizes)
        start += len(x)
