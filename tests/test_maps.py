"""Anomaly maps: per-pixel scores that peak where a defect was pasted, stored in the run, same direction as
anomaly_score."""

import numpy as np
import pytest
import torch

from anomgan import AnoGAN
from anomgan.evaluation.pixel import pixel_roc_auc

from conftest import tiny_config


def smooth_noise(n: int, size: int, seed: int) -> np.ndarray:
    """(n, 1, size, size) in [0, 1]: low-frequency noise, the 'normal' texture."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((n, 1, size // 4, size // 4)).astype(np.float32))
    x = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return (0.25 + 0.5 * x).numpy()


def with_square(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A bright 6x6 square pasted at a random place in each image, and its mask."""
    rng = np.random.default_rng(seed)
    x = x.copy()
    masks = np.zeros((len(x), x.shape[2], x.shape[3]), np.uint8)
    for i in range(len(x)):
        r, c = rng.integers(2, x.shape[2] - 8, size=2)
        x[i, :, r:r + 6, c:c + 6] = 1.0
        masks[i, r:r + 6, c:c + 6] = 1
    return x, masks


@pytest.fixture(scope="module")
def map_detector():
    cfg = tiny_config(data__image_size=32, train__epochs=3, encoder__epochs=2, model__width=8,
                      score__weights={"layer_maha": 1.0, "map_max": 1.0},
                      score__map_weights={"layer_maha_map": 1.0, "residual_map": 0.5}, score__bank_size=256)
    return AnoGAN(config=cfg, method="encoder", random_state=0).fit(smooth_noise(160, 32, 0))


def test_the_map_peaks_on_the_pasted_square(map_detector):
    x, masks = with_square(smooth_noise(12, 32, 1), 2)
    res = map_detector.score_components(x)
    maps = res["anomaly_map"]
    assert maps.shape == (12, 32, 32) and np.isfinite(maps).all()
    inside = np.array([m[k > 0].mean() for m, k in zip(maps, masks)])
    outside = np.array([m[k == 0].mean() for m, k in zip(maps, masks)])
    assert (inside > outside).all()
    assert pixel_roc_auc(list(maps), list(masks)) > 0.9
    clean = map_detector.score_components(smooth_noise(12, 32, 3))
    assert np.median(res["map_max"]) > np.median(clean["map_max"])  # higher = more anomalous, as anomaly_score
    assert np.median(res["anomaly_score"]) > np.median(clean["anomaly_score"])


def test_maps_survive_save_and_load(map_detector, tmp_path):
    x, _ = with_square(smooth_noise(4, 32, 4), 5)
    map_detector.save(tmp_path / "run")
    again = AnoGAN.load(tmp_path / "run", device="cpu")
    assert len(again.scorer_.location_gaussians) == len(map_detector.scorer_.location_gaussians) > 0
    np.testing.assert_array_equal(again.score_components(x)["anomaly_map"],
                                  map_detector.score_components(x)["anomaly_map"])


def test_map_settings_are_checked():
    from anomgan.errors import ConfigError

    with pytest.raises(ConfigError, match="no map, no map_max"):
        tiny_config(score__weights={"map_max": 1.0})
    with pytest.raises(ConfigError, match="score.map_weights"):
        tiny_config(score__map_weights={"bogus_map": 1.0})
    with pytest.raises(ConfigError, match="need images"):
        AnoGAN(config=tiny_config(score__map_weights={"layer_maha_map": 1.0}, data__image_size=None)).fit(
            np.random.default_rng(0).normal(size=(40, 3)))


def square_category(root):
    """A tiny MVTec-layout category at 40 px: 40 train / 8 test good images of smooth noise, 6 with a pasted
    square ('square' defect type) and their masks."""
    from PIL import Image

    normal = smooth_noise(48, 40, 0)
    for i, im in enumerate(normal[:40]):
        (root / "train" / "good").mkdir(parents=True, exist_ok=True)
        Image.fromarray((im[0] * 255).astype(np.uint8)).save(root / "train" / "good" / f"{i:03d}.png")
    for i, im in enumerate(normal[40:]):
        (root / "test" / "good").mkdir(parents=True, exist_ok=True)
        Image.fromarray((im[0] * 255).astype(np.uint8)).save(root / "test" / "good" / f"{i:03d}.png")
    bad, masks = with_square(smooth_noise(6, 40, 9), 10)
    for i, (im, m) in enumerate(zip(bad, masks)):
        for folder, arr in (("test/square", im[0]), ("ground_truth/square", m.astype(np.float32))):
            (root / folder).mkdir(parents=True, exist_ok=True)
            name = f"{i:03d}.png" if folder.startswith("test") else f"{i:03d}_mask.png"
            Image.fromarray((arr * 255).astype(np.uint8)).save(root / folder / name)
    return root


def test_evaluate_on_an_mvtec_layout_reports_pixel_metrics_and_writes_maps(tmp_path):
    """A tiny MVTec-layout category of smooth noise with pasted squares: evaluate's CSV carries pixel ROC-AUC and
    AUPRO per defect type, and --save-maps writes one map per test image at that image's original size."""

    from anomgan.runs import evaluate_run, train_run

    root = square_category(tmp_path / "cat")
    cfg = tiny_config(data__source=f"mvtec:{root}", data__normal_classes=None, data__image_size=32,
                      train__epochs=3, encoder__epochs=1, model__width=8, score__bank_size=256,
                      score__weights={"layer_maha": 1.0, "map_max": 1.0}, score__map_weights={"layer_maha_map": 1.0})
    train_run(cfg, tmp_path / "run")
    ev = evaluate_run(tmp_path / "run", tmp_path / "rep.csv", method="encoder", device="cpu",
                      save_maps=tmp_path / "maps")
    row = ev.report[(ev.report.anomalous_class == "square") & (ev.report.component == "anomaly_score")].iloc[0]
    assert row.pixel_roc_auc > 0.8 and 0 < row.aupro <= 1
    scores = __import__("pandas").read_csv(tmp_path / "rep.scores.csv")
    assert set(scores.defect_type) == {"good", "square"} and scores.id.iloc[0].startswith("test/")
    for picture in ("top_anomalies_maps", "most_normal_anomalies_maps", "roc_per_class"):
        assert (tmp_path / f"rep.{picture}.png").stat().st_size > 0, picture
    saved = np.load(tmp_path / "maps" / "test" / "square" / "000.npy")
    assert saved.shape == (40, 40) and saved.dtype == np.float32  # the original size, not the model's 32
    assert len(list((tmp_path / "maps").rglob("*.npy"))) == 8 + 6


def test_score_a_folder_of_any_size_with_maps_and_overlays(map_detector, tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from anomgan.cli import app

    map_detector.config_.data.allow_resize = True
    map_detector.scorer_.spec.preprocess["allow_resize"] = True  # as a run trained with data.allow_resize
    map_detector.save(tmp_path / "run")
    folder = tmp_path / "in"
    folder.mkdir()
    x, _ = with_square(smooth_noise(2, 32, 7), 8)
    Image.fromarray((x[0, 0] * 255).astype(np.uint8)).resize((48, 40)).save(folder / "a.png")
    Image.fromarray((x[1, 0] * 255).astype(np.uint8)).save(folder / "b.png")
    res = CliRunner().invoke(app, ["score", "--run", str(tmp_path / "run"), "--input", str(folder), "--out",
                                   str(tmp_path / "s.csv"), "--save-maps", str(tmp_path / "maps"), "--overlays",
                                   str(tmp_path / "ov"), "--quiet", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert np.load(tmp_path / "maps" / "a.npy").shape == (40, 48)  # each map at its own image's size
    assert np.load(tmp_path / "maps" / "b.npy").shape == (32, 32)
    res = CliRunner().invoke(app, ["score", "--run", str(tmp_path / "run"), "--input", str(folder / "a.png"), "--out",
                                   str(tmp_path / "one.csv"), "--save-maps", str(tmp_path / "one"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert np.load(tmp_path / "one" / "a.npy").shape == (40, 48)  # one image file: its map at its size too
    overlay = np.asarray(Image.open(tmp_path / "ov" / "a.png"))
    assert overlay.shape[0] >= 128 and overlay.shape[1] > 3 * overlay.shape[0]  # three readable panels side by side


def test_map_layers_out_of_range_are_refused():
    from anomgan.errors import ConfigError

    cfg = tiny_config(data__image_size=32, score__map_weights={"layer_maha_map": 1.0}, score__map_layers=[9])
    with pytest.raises(ConfigError, match="out of range for a 32-px critic of 4 layers"):
        AnoGAN(config=cfg).fit(smooth_noise(20, 32, 0))


def test_location_gaussians_shrink_as_scikit_learn_does():
    from sklearn.covariance import LedoitWolf, ledoit_wolf_shrinkage

    from anomgan.training.normal_stats import (
        VARIANCE_FLOOR,
        fit_location_gaussian,
        ledoit_wolf_shrinkage_batched,
    )

    g = torch.Generator().manual_seed(0)
    acts = torch.randn(30, 6, 2, 3, generator=g) * torch.linspace(0.5, 3, 6).view(1, 6, 1, 1)
    acts[:, 2, 0, 1] = 1.5  # a channel without variance at one location
    mean, precision = fit_location_gaussian(acts)
    floor = VARIANCE_FLOOR * float((acts.double() - acts.double().mean(0)).pow(2).mean())
    assert mean.shape == (6, 2, 3) and precision.shape == (6, 6, 6) and torch.isfinite(precision).all()
    for loc, (i, j) in enumerate([(i, j) for i in range(2) for j in range(3)]):
        x = acts[:, :, i, j].double().numpy()
        xc = x - x.mean(0)
        want = ledoit_wolf_shrinkage(xc, assume_centered=True)
        got = ledoit_wolf_shrinkage_batched(torch.from_numpy(xc)[None])[0]
        assert float(got) == pytest.approx(want, rel=1e-9, abs=1e-12)
        # scikit-learn's LedoitWolf covariance with the variance floor on its diagonal, inverted
        want = np.linalg.inv(LedoitWolf().fit(x).covariance_ + floor * np.eye(6))
        np.testing.assert_allclose(precision[loc].numpy(), want, rtol=1e-4, atol=1e-5)
    assert float(precision[1].diagonal().max()) <= 1 / floor  # the location without variance stays bounded
