import numpy as np
import pandas as pd
import pytest
from PIL import Image

from anomgan.data import fit_preprocessor, load_source, make_splits
from anomgan.errors import ConfigError, DataError


def test_digits_is_real_and_normalised(digits):
    assert digits.x.shape == (1797, 1, 8, 8)
    assert 0.0 <= digits.x.min() and digits.x.max() <= 1.0
    assert digits.classes == [str(i) for i in range(10)]


@pytest.mark.parametrize("shape, expect", [
    ((6, 5, 7), (6, 1, 5, 7)),
    ((6, 3, 5, 7), (6, 3, 5, 7)),
    ((6, 5, 7, 3), (6, 3, 5, 7)),
])
def test_npy_image_layouts(tmp_path, shape, expect):
    arr = np.random.default_rng(0).integers(0, 256, size=shape).astype(np.uint8)
    np.save(tmp_path / "x.npy", arr)
    ds = load_source(str(tmp_path / "x.npy"))
    assert ds.kind == "image" and ds.x.shape == expect and ds.y is None
    assert ds.x.max() <= 1.0


def test_npy_vectors_are_tabular(tmp_path):
    np.save(tmp_path / "v.npy", np.arange(20, dtype=np.float64).reshape(5, 4))
    ds = load_source(str(tmp_path / "v.npy"))
    assert ds.kind == "tabular" and ds.x.shape == (5, 4)


def test_npz_with_labels(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 8, 8)), y=np.array([0, 1, 0, 1]))
    ds = load_source(str(tmp_path / "d.npz"))
    assert ds.y.tolist() == ["0", "1", "0", "1"]


def test_npy_with_separate_labels(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 2)))
    np.save(tmp_path / "y.npy", np.array([5, 5, 6]))
    ds = load_source(str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"))
    assert ds.y.tolist() == ["5", "5", "6"]


def test_csv_with_and_without_labels(tmp_path):
    pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4], "label": ["n", "a"]}).to_csv(tmp_path / "t.csv", index=False)
    ds = load_source(str(tmp_path / "t.csv"))
    assert ds.kind == "tabular" and ds.x.shape == (2, 2) and ds.y.tolist() == ["n", "a"]
    assert ds.feature_names == ["a", "b"]
    with pytest.raises(DataError, match="column 'label' is not numeric"):
        load_source(str(tmp_path / "t.csv"), label_column="b")  # 'label' is then a feature column


def test_csv_label_column_is_configurable(tmp_path):
    pd.DataFrame({"a": [1.0, 2.0], "cls": [7, 8]}).to_csv(tmp_path / "t.csv", index=False)
    ds = load_source(str(tmp_path / "t.csv"), label_column="cls")
    assert ds.x.shape == (2, 1) and ds.y.tolist() == ["7", "8"]


@pytest.mark.parametrize("content, message", [
    ("a,b\n1,x\n", "column 'b' is not numeric"),
    ("a,b\n1,nan\n", "NaN or inf in column 'b'"),
    ("a,b\n1,inf\n", "NaN or inf in column 'b'"),
    ("a,b\n", "zero rows"),
])
def test_bad_csv(tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(DataError, match=message):
        load_source(str(tmp_path / "bad.csv"))


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "e.npy").write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        load_source(str(tmp_path / "e.npy"))
    with pytest.raises(DataError, match="not found"):
        load_source(str(tmp_path / "nope.npy"))


def test_npy_non_finite_and_bad_rank(tmp_path):
    arr = np.zeros((3, 4, 4), np.float32)
    arr[1, 2, 3] = np.nan
    np.save(tmp_path / "n.npy", arr)
    with pytest.raises(DataError, match="non-finite"):
        load_source(str(tmp_path / "n.npy"))
    np.save(tmp_path / "r.npy", np.zeros((2, 3, 4, 5, 6)))
    with pytest.raises(DataError, match="shape"):
        load_source(str(tmp_path / "r.npy"))


def _write_png(path, size=(6, 6), value=128, mode="L"):
    Image.new(mode, size, value).save(path)


def test_image_folder_flat_and_classes(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        _write_png(flat / f"{i}.png", value=40 * i)
    ds = load_source(str(flat))
    assert ds.x.shape == (3, 1, 6, 6) and ds.y is None and ds.ids.tolist() == ["0.png", "1.png", "2.png"]
    nested = tmp_path / "nested"
    for cls in ("good", "bad"):
        (nested / cls).mkdir(parents=True)
        for i in range(2):
            _write_png(nested / cls / f"{i}.png", mode="RGB", value=(10, 20, 30))
    ds = load_source(str(nested))
    assert ds.x.shape == (4, 3, 6, 6) and sorted(set(ds.y.tolist())) == ["bad", "good"]


def test_single_image_and_corrupt_image(tmp_path):
    _write_png(tmp_path / "one.png", size=(5, 4))
    ds = load_source(str(tmp_path / "one.png"))
    assert ds.x.shape == (1, 1, 4, 5)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png"):
        load_source(str(tmp_path / "broken.png"))


def test_folder_with_mixed_sizes_needs_image_size(tmp_path):
    _write_png(tmp_path / "a.png", size=(6, 6))
    _write_png(tmp_path / "b.png", size=(8, 8))
    with pytest.raises(DataError, match="differ in size"):
        load_source(str(tmp_path))
    assert load_source(str(tmp_path), image_size=8).x.shape == (2, 1, 8, 8)


def test_torchvision_missing_gives_clear_error(tmp_path):
    with pytest.raises(DataError, match="mnist not found"):
        load_source("mnist", root=str(tmp_path))


def test_splits_never_leak_anomalies_and_are_deterministic(digits):
    a = make_splits(digits, [3], 0.1, 0.3, seed=5)
    b = make_splits(digits, [3], 0.1, 0.3, seed=5)
    c = make_splits(digits, [3], 0.1, 0.3, seed=6)
    assert set(digits.y[a.train]) == {"3"} and set(digits.y[a.val]) == {"3"}
    assert not set(a.train) & set(a.val) and not set(a.train) & set(a.test) and not set(a.val) & set(a.test)
    assert set(digits.y[a.test]) == {str(i) for i in range(10)}
    assert all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("train", "val", "test"))
    assert not np.array_equal(a.train, c.train)
    targets = a.test_targets(digits)
    assert targets.sum() == (digits.y[a.test] != "3").sum()


def test_official_test_split_is_used():
    from anomgan.data.sources import Dataset

    y = np.array([0, 0, 1, 1, 0, 0, 1, 1] * 2)
    official = np.array([False] * 8 + [True] * 8)
    ds = Dataset(x=np.zeros((16, 1, 8, 8), np.float32), y=y.astype(str), ids=np.arange(16).astype(str),
                 kind="image", name="toy", official_test=official)
    s = make_splits(ds, [0], 0.25, 0.3, seed=0)
    assert set(s.test) == set(range(8, 16))
    assert set(s.train) | set(s.val) == {0, 1, 4, 5}


def test_unknown_normal_class(digits):
    with pytest.raises(ConfigError, match="normal class '11'"):
        make_splits(digits, [11], 0.1, 0.3, seed=0)


def test_preprocessing_pads_and_records():
    x = np.random.default_rng(0).random((4, 1, 28, 28)).astype(np.float32)
    pre = fit_preprocessor(x, "image")
    assert pre.image_size == 32 and pre.in_shape == [1, 28, 28]
    t = pre.transform(x)
    assert t.shape == (4, 1, 32, 32) and float(t.min()) >= -1 and float(t.max()) <= 1
    assert np.allclose(t[:, :, 2:30, 2:30].numpy(), x * 2 - 1, atol=1e-6)
    with pytest.raises(DataError, match="trained on 28x28"):
        pre.transform(np.zeros((1, 1, 30, 30), np.float32))
    with pytest.raises(DataError, match="channel"):
        pre.transform(np.zeros((1, 3, 28, 28), np.float32))


def test_tabular_standardisation_fitted_on_train_only():
    x = np.array([[1.0, 10.0], [3.0, 10.0]], np.float32)
    pre = fit_preprocessor(x, "tabular")
    assert pre.mean == [2.0, 10.0] and pre.std[1] == 1.0  # constant column keeps its scale
    assert np.allclose(pre.transform(np.array([[3.0, 11.0]], np.float32)).numpy(), [[1.0, 1.0]])
