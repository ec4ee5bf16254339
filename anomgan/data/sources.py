"""Data sources -> :class:`Dataset` (arrays + labels).

Images come out as float32 (N, C, H, W) in [0, 1]; tables as float32 (N, D) in their own units.
Labels, when present, are strings so that numeric and named classes compare the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from anomgan.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
TORCHVISION_SOURCES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}
NAMED_SOURCES = ("digits", *TORCHVISION_SOURCES)


@dataclass
class Dataset:
    x: np.ndarray  # images (N, C, H, W) in [0, 1] or tables (N, D), float32
    y: Optional[np.ndarray]  # (N,) str labels, or None when unlabelled
    ids: np.ndarray  # (N,) str: file name or row index
    kind: str  # "image" | "tabular"
    name: str
    official_test: Optional[np.ndarray] = None  # (N,) bool: sample belongs to the source's official test split
    feature_names: Optional[list] = None  # tabular column names
    masks: Optional[np.ndarray] = None  # (N,) object: (H_i, W_i) uint8 defect mask at the original size, or None
    sizes: Optional[np.ndarray] = None  # (N, 2) original (height, width) of images resized at loading
    root: Optional[str] = None  # the folder that ``ids`` are relative to

    def __len__(self) -> int:
        return len(self.x)

    @property
    def classes(self) -> list[str]:
        return [] if self.y is None else sorted(set(self.y.tolist()), key=_class_sort_key)


def _class_sort_key(label: str):
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


# ---------------------------------------------------------------------------- arrays


def as_images(arr: np.ndarray, where: str) -> np.ndarray:
    """(N,H,W) | (N,C,H,W) | (N,H,W,C) with values in [0,1] or [0,255] -> float32 (N,C,H,W) in [0,1]."""
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        if arr.shape[1] in (1, 3):
            pass
        elif arr.shape[-1] in (1, 3):
            arr = np.moveaxis(arr, -1, 1)
        else:
            raise DataError(f"{where}: 4-D array of shape {arr.shape} has no channel axis of size 1 or 3")
    else:
        raise DataError(f"{where}: expected (N,D) vectors or (N,H,W)/(N,C,H,W)/(N,H,W,C) images, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{where}: array of dtype {arr.dtype} is not numeric")
    scale_255 = arr.dtype == np.uint8
    arr = arr.astype(np.float32, copy=False)
    check_finite(arr, where)
    if arr.size and not scale_255:
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 255:
            raise DataError(f"{where}: image values must lie in [0, 1] or [0, 255], found [{lo:g}, {hi:g}]")
        scale_255 = hi > 1
    if scale_255:
        arr = arr / 255.0
    return np.ascontiguousarray(arr, dtype=np.float32)


def as_table(arr: np.ndarray, where: str) -> np.ndarray:
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{where}: array of dtype {arr.dtype} is not numeric")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    check_finite(arr, where)
    return arr


def check_finite(arr: np.ndarray, where: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.argwhere(bad)[0]
        raise DataError(f"{where}: non-finite value (NaN or inf) at index {tuple(int(i) for i in idx)}")


def _labels_to_str(labels) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    return arr.astype(str)


def _finish(x: np.ndarray, y, name: str, kind: str, ids=None, **extra) -> Dataset:
    if len(x) == 0:
        raise DataError(f"{name}: no samples")
    if y is not None:
        y = _labels_to_str(y)
        if len(y) != len(x):
            raise DataError(f"{name}: {len(y)} labels for {len(x)} samples")
    ids = np.asarray([str(i) for i in range(len(x))] if ids is None else ids, dtype=str)
    return Dataset(x=x, y=y, ids=ids, kind=kind, name=name, **extra)


# ---------------------------------------------------------------------------- named sources


def load_digits_source() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]  # (1797, 1, 8, 8), pixel values 0..16
    return _finish(x, bunch.target, "digits", "image")


def load_torchvision_source(name: str, root: str, download: bool) -> Dataset:
    import torchvision.datasets as tvd

    cls = getattr(tvd, TORCHVISION_SOURCES[name])
    parts = []
    for train in (True, False):
        try:
            ds = cls(root=root, train=train, download=False)
        except (RuntimeError, OSError) as exc:
            if not download:
                head = f"{name} not found under '{root}' ({_first_line(exc)}); point "
                tail = f" at the folder holding {TORCHVISION_SOURCES[name]}/, or allow downloading with "
                raise DataError(head + "data.root" + tail + "data.download=true",
                                cli=head + "--data-root" + tail + "--set data.download=true") from None
            try:
                ds = cls(root=root, train=train, download=True)
            except Exception as exc2:  # network errors come in many types
                raise DataError(
                    f"could not download {name} to '{root}': {_first_line(exc2)}; without internet, copy the files "
                    f"to {Path(root) / TORCHVISION_SOURCES[name]}/raw/"
                ) from None
        data = ds.data.numpy() if hasattr(ds.data, "numpy") else np.asarray(ds.data)
        parts.append((data, np.asarray(ds.targets), train))
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    official_test = np.concatenate([np.full(len(p[0]), not p[2]) for p in parts])
    return _finish(as_images(x, name), y, name, "image", official_test=official_test)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------- paths


def read_array_file(path: Path, labels_path: Optional[str] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read as {path.suffix} array ({_first_line(exc)})") from None
    y = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            xkey = next((k for k in ("x", "X", "data", "images", "features") if k in keys), None)
            if xkey is None:
                if len(keys) != 1:
                    found = ", ".join(keys) or "none"
                    raise DataError(f"{path}: npz needs an array named x/data/images (found: {found})")
                xkey = keys[0]
            ykey = next((k for k in ("y", "labels", "label", "targets") if k in keys), None)
            x = loaded[xkey]
            y = loaded[ykey] if ykey else None
    else:
        x = loaded
    if labels_path:
        try:
            y = np.load(labels_path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{labels_path}: cannot read labels ({_first_line(exc)})") from None
    return x, y


def array_to_dataset(x: np.ndarray, y, name: str) -> Dataset:
    if x.ndim == 2:
        return _finish(as_table(x, name), y, name, "tabular", feature_names=[f"f{i}" for i in range(x.shape[1])])
    return _finish(as_images(x, name), y, name, "image")


def read_csv_table(frame, where: str, label_column: str, feature_names: Optional[list] = None):
    """Validate a pandas frame -> (float32 (N,D), labels or None, feature names)."""
    import pandas as pd

    y = None
    if label_column in frame.columns:
        y = frame[label_column].to_numpy()
        frame = frame.drop(columns=[label_column])
    if feature_names is not None:
        missing = [c for c in feature_names if c not in frame.columns]
        extra = [c for c in frame.columns if c not in feature_names]
        if missing or extra:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(map(str, missing[:5])))
            if extra:
                parts.append("unexpected " + ", ".join(map(str, extra[:5])))
            raise DataError(f"{where}: columns differ from training ({'; '.join(parts)})")
        frame = frame[feature_names]
    if frame.shape[1] == 0:
        raise DataError(f"{where}: no feature columns")
    for col in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col]):
            bad = frame[col][pd.to_numeric(frame[col], errors="coerce").isna() & frame[col].notna()]
            example = f" (e.g. {bad.iloc[0]!r} in row {bad.index[0]})" if len(bad) else ""
            raise DataError(f"{where}: column '{col}' is not numeric{example}")
    x = frame.to_numpy(dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{where}: NaN or inf in column '{frame.columns[col]}' at row {frame.index[row]}")
    return x, y, [str(c) for c in frame.columns]


def load_csv(path: Path, label_column: str) -> Dataset:
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty CSV file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{path}: cannot parse CSV ({_first_line(exc)})") from None
    if len(frame) == 0:
        raise DataError(f"{path}: CSV has a header but zero rows")
    x, y, names = read_csv_table(frame, str(path), label_column)
    return _finish(x, y, path.name, "tabular", feature_names=names)


def read_image(path: Path, channels: Optional[int]) -> np.ndarray:
    """One image file -> float32 (C, H, W) in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            mode = {1: "L", 3: "RGB"}.get(channels or 0) or ("L" if img.mode in ("1", "L", "I", "I;16", "F") else "RGB")
            arr = np.asarray(img.convert(mode), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: unreadable or corrupt image ({_first_line(exc)})") from None
    return arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)


def list_image_folder(path: Path) -> tuple[list[Path], Optional[list[str]]]:
    """Flat folder -> files, None; folder of class sub-folders -> files, class names (ImageFolder layout)."""
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs:
        from torchvision.datasets.folder import make_dataset

        classes = [d.name for d in subdirs]
        exts = tuple(IMAGE_SUFFIXES)
        samples = make_dataset(str(path), {c: i for i, c in enumerate(classes)}, extensions=exts, allow_empty=True)
        files = [Path(p) for p, _ in samples]
        labels = [classes[i] for _, i in samples]
    else:
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        labels = None
    if not files:
        raise DataError(f"{path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files, labels


def stack_images(images: list[np.ndarray], files: list[Path], size: Optional[int]) -> np.ndarray:
    """Stack (C,H,W) images; differing sizes are an error unless a target ``size`` is given (then resized)."""
    if size is not None:
        import torch
        import torch.nn.functional as F

        images = [
            im if im.shape[1:] == (size, size) else
            F.interpolate(torch.from_numpy(im)[None], size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)[0].clamp(0, 1).numpy()
            for im in images
        ]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        first = images[0].shape
        odd = next(i for i, im in enumerate(images) if im.shape != first)
        raise DataError(
            f"images differ in size: {files[0].name} is {first[1]}x{first[2]}, {files[odd].name} is "
            f"{images[odd].shape[1]}x{images[odd].shape[2]} (set data.image_size to resize them)"
        )
    return np.stack(images).astype(np.float32)


def load_image_folder(path: Path, channels: Optional[int], size: Optional[int]) -> Dataset:
    files, labels = list_image_folder(path)
    channels = channels or read_image(files[0], None).shape[0]
    images = [read_image(f, channels) for f in files]
    x = stack_images(images, files, size)
    ids = [str(f.relative_to(path)) for f in files]
    return _finish(x, labels, path.name, "image", ids=ids)


def load_source(source: str, root: str = "./data", download: bool = False, labels: Optional[str] = None,
                label_column: str = "label", channels: Optional[int] = None,
                image_size: Optional[int] = None) -> Dataset:
    """Load a named source or a path into memory."""
    if source == "digits":
        return load_digits_source()
    if source in TORCHVISION_SOURCES:
        return load_torchvision_source(source, root, download)
    path = Path(source)
    if not path.exists():
        raise DataError(
            f"data source not found: '{source}' (not a file or folder; named sources: {', '.join(NAMED_SOURCES)})"
        )
    if path.is_dir():
        return load_image_folder(path, channels, image_size)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        x, y = read_array_file(path, labels)
        return array_to_dataset(x, y, path.name)
    if suffix in (".csv", ".tsv", ".txt"):
        return load_csv(path, label_column)
    if suffix in IMAGE_SUFFIXES:
        x = read_image(path, channels)[None]
        return _finish(x, None, path.name, "image", ids=[path.name])
    raise DataError(f"{path}: unsupported file type '{suffix}' (use .npy, .npz, .csv, an image or an image folder)")


def source_available(source: str, root: str) -> tuple[bool, str]:
    """Offline availability of a named source, without loading it."""
    if source == "digits":
        return True, "embedded in scikit-learn"
    folder = Path(root) / TORCHVISION_SOURCES[source]
    if source == "cifar10":
        ok = (Path(root) / "cifar-10-batches-py").is_dir()
        return ok, str(Path(root) / "cifar-10-batches-py")
    raw = folder / "raw"
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    ok = all((raw / n).is_file() or (raw / f"{n}.gz").is_file() for n in names)
    return ok, str(raw)
