"""Inspection data sets on disk: one MVTec AD category, or an anomalib-style Folder layout, with defect masks.

MVTec AD (``mvtec:DIR``)::

    DIR/train/good/*            normal training images
    DIR/test/good/*             normal test images
    DIR/test/<defect>/*         anomalous test images, one held-out class per defect type
    DIR/ground_truth/<defect>/<stem>_mask.png

Folder (``folder:`` + ``data.normal_dir`` / ``abnormal_dirs`` / ``mask_dir`` / ``normal_test_dir``): a user's own
images; a mask is found by the image's stem (``<stem>.png`` or ``<stem>_mask.png``) under ``mask_dir`` (and its
sub-folders named as the abnormal folder). Without ``normal_test_dir``, ``normal_split_ratio`` of the normal
images are held out for the test (seeded).

Images may differ in size and be gray or RGB: each is resized to ``size`` x ``size`` for the model (bilinear,
antialiased) and its original (height, width) is kept in ``Dataset.sizes`` so maps go back to it. Masks stay at
the original size (uint8, 1 = defect). ``Dataset.ids`` are the image paths relative to the data set's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from anomgan.data.sources import IMAGE_SUFFIXES, Dataset, _finish, read_image
from anomgan.errors import DataError

NORMAL = "good"  # the label of normal images in both layouts


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def read_mask(path: Path, shape: tuple) -> np.ndarray:
    """A mask file -> (H, W) uint8, 1 where the pixel is above 0; its size must be the image's."""
    mask = read_image(path, 1)[0] > 0
    if mask.shape != tuple(shape):
        raise DataError(f"{path}: mask is {mask.shape[0]}x{mask.shape[1]}, its image {shape[0]}x{shape[1]}")
    return mask.astype(np.uint8)


def _resize(image: np.ndarray, size: Optional[int]) -> np.ndarray:
    if size is None or image.shape[1:] == (size, size):
        return image
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(image)[None]
    return F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1) \
        .numpy()


def _assemble(name: str, root: Path, entries: list, channels: Optional[int], size: Optional[int]) -> Dataset:
    """entries: (path, label, is_test, mask path | None | 'zeros') -> Dataset with masks and original sizes."""
    channels = channels or read_image(entries[0][0], None).shape[0]
    images, sizes, masks = [], [], []
    for path, _, _, mask_path in entries:
        image = read_image(path, channels)
        shape = image.shape[1:]
        sizes.append(shape)
        if mask_path == "zeros":
            masks.append(np.zeros(shape, np.uint8))
        elif mask_path is None:
            masks.append(None)
        else:
            masks.append(read_mask(mask_path, shape))
        images.append(_resize(image, size))
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(f"{root}: images differ in size; set data.image_size to resize them to one working size",
                        cli=f"{root}: images differ in size; set --set data.image_size=N to resize them")
    labels = [e[1] for e in entries]
    official_test = np.array([e[2] for e in entries])
    ids = [str(e[0].relative_to(root)) for e in entries]
    mask_arr = np.empty(len(masks), dtype=object)
    mask_arr[:] = masks
    return _finish(np.stack(images).astype(np.float32), labels, name, "image", ids=ids, official_test=official_test,
                   masks=mask_arr, sizes=np.asarray(sizes, dtype=np.int64), root=str(root))


def load_mvtec(directory: str | Path, channels: Optional[int] = None, size: Optional[int] = None) -> Dataset:
    """One MVTec AD category: train/good for training, test/* with ground_truth masks for the test."""
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"{root}: MVTec AD category folder not found")
    if not (root / "train" / NORMAL).is_dir():
        raise DataError(f"{root}: not an MVTec AD category (no train/{NORMAL}/ folder)")
    entries = [(p, NORMAL, False, None) for p in _images_in(root / "train" / NORMAL)]
    test = root / "test"
    if test.is_dir():
        for folder in sorted(p for p in test.iterdir() if p.is_dir()):
            for path in _images_in(folder):
                if folder.name == NORMAL:
                    entries.append((path, NORMAL, True, "zeros"))
                    continue
                mask = root / "ground_truth" / folder.name / f"{path.stem}_mask.png"
                if not mask.is_file():
                    raise DataError(f"{path}: no mask at {mask}")
                entries.append((path, folder.name, True, mask))
        _check_no_stray_masks(root / "ground_truth", {e[3] for e in entries if isinstance(e[3], Path)})
    return _assemble(f"mvtec:{root.name}", root, entries, channels, size)


def _check_no_stray_masks(folder: Path, used: set) -> None:
    if not folder.is_dir():
        return
    for mask in sorted(folder.rglob("*")):
        if mask.is_file() and mask.suffix.lower() in IMAGE_SUFFIXES and mask not in used:
            raise DataError(f"{mask}: mask matches no test image")


def _find_mask(mask_dir: Optional[Path], folder_name: str, stem: str) -> Optional[Path]:
    if mask_dir is None:
        return None
    for base in (mask_dir / folder_name, mask_dir):
        for name in (f"{stem}_mask", stem):
            for suffix in IMAGE_SUFFIXES:
                if (base / f"{name}{suffix}").is_file():
                    return base / f"{name}{suffix}"
    return None


def load_folder_layout(root: str | Path, normal_dir: str, abnormal_dirs: list, mask_dir: Optional[str] = None,
                       normal_test_dir: Optional[str] = None, normal_split_ratio: float = 0.2, seed: int = 0,
                       channels: Optional[int] = None, size: Optional[int] = None) -> Dataset:
    """anomalib's Folder layout: folders of normal and abnormal images (paths relative to ``root``)."""
    base = Path(root)
    normal = _images_in(base / normal_dir)
    entries = []
    if normal_test_dir:
        entries += [(p, NORMAL, False, None) for p in normal]
        entries += [(p, NORMAL, True, "zeros") for p in _images_in(base / normal_test_dir)]
    else:
        held = set(np.random.default_rng(seed).permutation(len(normal))[:int(round(normal_split_ratio * len(normal)))])
        entries += [(p, NORMAL, i in held, "zeros" if i in held else None) for i, p in enumerate(normal)]
    masks = base / mask_dir if mask_dir else None
    if masks is not None and not masks.is_dir():
        raise DataError(f"{masks}: mask folder not found")
    used = set()
    for folder in abnormal_dirs:
        folder = base / folder
        for path in _images_in(folder):
            mask = _find_mask(masks, folder.name, path.stem)
            if masks is not None and mask is None:
                raise DataError(f"{path}: no mask named {path.stem}[_mask] under {masks}")
            used.add(mask)
            entries.append((path, folder.name, True, mask if mask is not None else None))
    if masks is not None:
        _check_no_stray_masks(masks, used)
    return _assemble(f"folder:{base.name}", base, entries, channels, size)
