"""MVTec AD and Folder layouts: defect types as held-out classes, masks at the original size, clear errors."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomgan.data.layouts import load_folder_layout, load_mvtec
from anomgan.errors import DataError


def _png(path: Path, h: int, w: int, value: int = 128, rgb: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((h, w, 3) if rgb else (h, w), value, np.uint8)
    Image.fromarray(arr).save(path)


def _mask(path: Path, h: int, w: int, box=(2, 5, 3, 7)) -> None:
    m = np.zeros((h, w), np.uint8)
    m[box[0]:box[1], box[2]:box[3]] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(m).save(path)


def make_mvtec(root: Path) -> Path:
    for i in range(5):
        _png(root / "train" / "good" / f"{i:03d}.png", 20, 24, 100 + i)
    _png(root / "test" / "good" / "000.png", 20, 24)
    _png(root / "test" / "crack" / "000.png", 20, 24)
    _png(root / "test" / "crack" / "001.jpg", 30, 16, rgb=True)  # another size and mode in the same set
    _mask(root / "ground_truth" / "crack" / "000_mask.png", 20, 24)
    _mask(root / "ground_truth" / "crack" / "001_mask.png", 30, 16)
    return root


def test_mvtec_layout_with_masks_and_original_sizes(tmp_path):
    ds = load_mvtec(make_mvtec(tmp_path / "cat"), channels=None, size=16)
    assert ds.x.shape == (8, 1, 16, 16) and ds.name == "mvtec:cat"
    assert ds.classes == ["crack", "good"] and ds.official_test.sum() == 3
    test = np.flatnonzero(ds.official_test)
    assert ds.ids[test].tolist() == ["test/crack/000.png", "test/crack/001.jpg", "test/good/000.png"]
    assert ds.sizes[test].tolist() == [[20, 24], [30, 16], [20, 24]]
    crack = ds.masks[test[1]]
    assert crack.shape == (30, 16) and crack.sum() == 3 * 4 and crack.dtype == np.uint8
    assert ds.masks[test[2]].shape == (20, 24) and ds.masks[test[2]].sum() == 0  # good test image: empty mask
    assert ds.masks[0] is None  # training images carry none


def test_mvtec_defect_types_are_held_out_classes(tmp_path):
    from anomgan.config import build_config
    from anomgan.runs import load_data, split_data

    root = make_mvtec(tmp_path / "cat")
    cfg = build_config(flags={"data.source": f"mvtec:{root}", "data.image_size": 16})
    ds = load_data(cfg)
    splits = split_data(cfg, ds)
    assert splits.normal_classes == ["good"] and len(splits.train) + len(splits.val) == 5
    assert splits.test_targets(ds).tolist() == [1, 1, 0]


@pytest.mark.parametrize("damage, fragment", [
    ("no_train", "not an MVTec AD category (no train/good/ folder)"),
    ("empty_class", "no images"),
    ("unreadable", "unreadable or corrupt image"),
    ("mask_size", "mask is 10x10, its image 20x24"),
    ("missing_mask", "no mask at"),
    ("stray_mask", "mask matches no test image"),
])
def test_mvtec_bad_layouts_name_the_path(tmp_path, damage, fragment):
    import shutil

    root = make_mvtec(tmp_path / "cat")
    if damage == "no_train":
        shutil.rmtree(root / "train")
    elif damage == "empty_class":
        (root / "test" / "scratch").mkdir()
    elif damage == "unreadable":
        (root / "test" / "crack" / "002.png").write_bytes(b"not an image")
        _mask(root / "ground_truth" / "crack" / "002_mask.png", 20, 24)
    elif damage == "mask_size":
        _mask(root / "ground_truth" / "crack" / "000_mask.png", 10, 10, box=(1, 2, 1, 2))
    elif damage == "missing_mask":
        (root / "ground_truth" / "crack" / "000_mask.png").unlink()
    elif damage == "stray_mask":
        _mask(root / "ground_truth" / "crack" / "007_mask.png", 20, 24)
    with pytest.raises(DataError) as err:
        load_mvtec(root, size=16)
    assert fragment in str(err.value) and str(root) in str(err.value)


def test_folder_layout_with_and_without_a_normal_test_folder(tmp_path):
    root = tmp_path / "mine"
    for i in range(10):
        _png(root / "ok" / f"{i}.png", 12, 12, 50 + i)
    _png(root / "bad" / "a.png", 12, 12)
    _png(root / "bad" / "b.png", 12, 12)
    _mask(root / "masks" / "a.png", 12, 12)
    _mask(root / "masks" / "b_mask.png", 12, 12)
    ds = load_folder_layout(root, "ok", ["bad"], "masks", None, 0.3, seed=0, size=8)
    assert ds.classes == ["bad", "good"] and ds.official_test.sum() == 3 + 2
    assert all(ds.masks[i] is not None for i in np.flatnonzero(ds.official_test))
    _png(root / "ok_test" / "t.png", 12, 12)
    ds = load_folder_layout(root, "ok", ["bad"], "masks", "ok_test", seed=0, size=8)
    assert ds.official_test.sum() == 1 + 2 and (~ds.official_test).sum() == 10
    (root / "masks" / "a.png").unlink()
    with pytest.raises(DataError, match="no mask named a"):
        load_folder_layout(root, "ok", ["bad"], "masks", size=8)
