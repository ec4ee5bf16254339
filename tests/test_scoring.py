import numpy as np
import pytest
import torch

from anomgan import AnoGAN
from anomgan.config import ScoreConfig
from anomgan.scoring import Calibration, invert_latent


@pytest.fixture(scope="module")
def det(trained_run):
    return AnoGAN.load(trained_run, device="cpu")


@pytest.mark.parametrize("method", ["encoder", "iterative", "hybrid"])
def test_normal_scores_lower_than_foreign(det, digits, method):
    zeros = digits.x[digits.y == "0"][:40]
    sevens = digits.x[digits.y == "7"][:40]
    noise = np.random.default_rng(0).random((40, 1, 8, 8)).astype(np.float32)
    steps = 30 if method == "iterative" else None
    s0 = det.score_components(zeros, method, steps)["anomaly_score"]
    s7 = det.score_components(sevens, method, steps)["anomaly_score"]
    sn = det.score_components(noise, method, steps)["anomaly_score"]
    assert np.median(s0) < np.median(s7)
    assert np.median(s0) < np.median(sn)


def test_iterative_inversion_reduces_objective(det, digits):
    x = det.preprocessor_.transform(digits.x[:32])
    res = invert_latent(x, det.generator_, det.discriminator_, det.encoder_, "iterative", steps=40, lr=0.05,
                        z_dim=det.model_args_["z_dim"], keep_trace=True)
    trace = res.trace.numpy()
    assert trace[-1] < trace[0]
    windows = trace[: len(trace) // 8 * 8].reshape(8, -1).mean(1)
    assert np.all(np.diff(windows) <= 1e-6), windows  # decreasing on average over the run


def test_restarts_keep_the_best(det, digits):
    x = det.preprocessor_.transform(digits.x[:16])
    kw = dict(steps=10, lr=0.05, z_dim=det.model_args_["z_dim"])
    one = invert_latent(x, det.generator_, det.discriminator_, det.encoder_, "iterative", restarts=1, **kw)
    four = invert_latent(x, det.generator_, det.discriminator_, det.encoder_, "iterative", restarts=4, **kw)
    err = lambda r: (x - r.x_hat).abs().flatten(1).mean(1)  # noqa: E731
    assert torch.all(err(four) <= err(one) + 0.02)  # the first restart is the same start as restarts=1
    assert err(four).mean() <= err(one).mean()


@pytest.mark.parametrize("method", ["encoder", "iterative", "hybrid"])
def test_scores_do_not_depend_on_batch_grouping(det, digits, method):
    x = digits.x[:30]
    steps = 15 if method == "iterative" else None
    whole = det.score_components(x, method, steps)
    parts = [det.score_components(x[i:i + 7], method, steps) for i in range(0, 30, 7)]
    for key in ("d_score", "residual", "feature_residual", "anomaly_score"):
        joined = np.concatenate([p[key] for p in parts])
        np.testing.assert_allclose(whole[key], joined, rtol=1e-4, atol=1e-5)


def test_calibration_uses_validation_statistics_only():
    cal = Calibration(val_components={"d_score": [0.0, 2.0], "residual": [1.0, 3.0], "feature_residual": [5.0, 5.0]})
    s = ScoreConfig(weights={"d_score": 0.0, "residual": 1.0, "feature_residual": 0.0})
    # residual mean 2, std 1 -> z-score of 4 is 2, whatever else is in the batch
    assert cal.combine({"d_score": [9.0], "residual": [4.0], "feature_residual": [0.0]}, s)[0] == pytest.approx(2.0)
    batch = {"d_score": [9.0, 0.0], "residual": [4.0, 100.0], "feature_residual": [0.0, 0.0]}
    assert cal.combine(batch, s)[0] == pytest.approx(2.0)
    s.combination, s.lam = "anogan", 0.1
    assert cal.combine({"d_score": [0.0], "residual": [1.0], "feature_residual": [3.0]}, s)[0] == pytest.approx(1.2)


def test_threshold_is_validation_quantile(det):
    s = det._score_config("encoder")
    cal = det.calibrate("encoder")
    val_scores = cal.combine(cal.val_components, s)
    assert det.threshold("encoder") == pytest.approx(np.quantile(val_scores, 0.95))
    assert np.mean(val_scores > det.threshold("encoder")) <= 0.05 + 1 / len(val_scores)  # quantised tail


def test_sklearn_style_api(det, digits):
    x = digits.x[:20]
    scores = det.score_samples(x, "encoder")
    np.testing.assert_allclose(det.decision_function(x, "encoder"), scores - det.threshold("encoder"))
    assert set(det.predict(x, "encoder")) <= {0, 1}
    assert np.array_equal(det.predict(x, "encoder"), (scores > det.threshold("encoder")).astype(int))
    assert AnoGAN(verbose=True).get_params()["verbose"] is True


def test_save_and_load_round_trip(det, digits, tmp_path):
    det.save(tmp_path / "copy")
    again = AnoGAN.load(tmp_path / "copy", device="cpu")
    np.testing.assert_allclose(again.score_samples(digits.x[:10], "encoder"), det.score_samples(digits.x[:10], "encoder"),
                               rtol=1e-6)


def test_refit_drops_the_previous_calibration(digits):
    from conftest import tiny_config

    det = AnoGAN(tiny_config(train__epochs=1, encoder__epochs=1)).fit(digits.x[digits.y == "0"])
    first = det.threshold("encoder")
    det.set_params(config=tiny_config(train__epochs=1, encoder__epochs=1, train__seed=7))
    det.fit(digits.x[digits.y == "0"])
    assert det.threshold("encoder") != first


# ---------------------------------------------------------------------------- feature_knn (memory bank)
def test_knn_distance_matches_brute_force_across_chunks(monkeypatch):
    from anomgan.scoring import memory

    g = torch.Generator().manual_seed(0)
    f, bank = torch.randn(7, 5, generator=g), torch.randn(23, 5, generator=g)
    want = torch.cdist(f.double(), bank.double()).sort(1).values[:, :3].mean(1)
    monkeypatch.setattr(memory, "BANK_CHUNK", 4)  # six chunks: the running top-k must merge correctly
    got = memory.knn_distance(f, bank, 3)
    assert torch.allclose(got.double(), want, atol=1e-5)
    assert torch.allclose(memory.knn_distance(f, bank[:2], 5).double(),  # k above the bank size: all of it
                          torch.cdist(f.double(), bank[:2].double()).mean(1), atol=1e-5)


def test_mahalanobis_is_ledoit_wolf_and_weighs_rare_directions_more():
    from sklearn.covariance import LedoitWolf

    from anomgan.scoring.memory import fit_gaussian, mahalanobis

    g = torch.Generator().manual_seed(0)
    bank = torch.randn(400, 2, generator=g) * torch.tensor([10.0, 1.0]) + torch.tensor([5.0, -2.0])
    fit = fit_gaussian(bank)
    lw = LedoitWolf().fit(bank.double().numpy())
    np.testing.assert_allclose(fit.precision.numpy(), lw.precision_, rtol=1e-5)
    np.testing.assert_allclose(fit.mean.numpy(), lw.location_, rtol=1e-5)
    pts = fit.mean + torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    d = mahalanobis(pts, fit)
    want = np.sqrt(np.einsum("bi,ij,bj->b", (pts - fit.mean).double().numpy(), lw.precision_,
                             (pts - fit.mean).double().numpy()))
    np.testing.assert_allclose(d.double().numpy(), want, rtol=1e-4, atol=1e-6)
    assert d[0] < 1e-3 and d[2] > 5 * d[1]  # 3 units off along the narrow axis is far; along the wide one, near
    with pytest.raises(ValueError, match="2 bank rows"):
        fit_gaussian(bank[:1])
    wide = torch.randn(30, 50, generator=g)  # more features than rows: shrinkage keeps it invertible
    wide[:, 7] = 1.0  # and a feature that never varies
    np.testing.assert_allclose(fit_gaussian(wide).precision.numpy(), LedoitWolf().fit(wide.double().numpy()).precision_,
                               rtol=1e-4, atol=1e-6)
    assert torch.isfinite(mahalanobis(torch.randn(4, 50, generator=g), fit_gaussian(wide))).all()
    flat = fit_gaussian(torch.ones(10, 3))  # no variance at all: every sample is at distance 0, not NaN
    assert torch.equal(mahalanobis(torch.randn(4, 3, generator=g), flat), torch.zeros(4))


def test_bank_indices_are_a_seeded_subset():
    from anomgan.scoring.memory import bank_indices

    assert torch.equal(bank_indices(5, 10, 0), torch.arange(5))
    a, b = bank_indices(100, 30, 1), bank_indices(100, 30, 1)
    assert torch.equal(a, b) and len(a.unique()) == 30 and bool((a[1:] > a[:-1]).all())
    assert not torch.equal(a, bank_indices(100, 30, 2))


def test_feature_bank_is_kept_in_the_run_and_scores_training_samples_near_zero(det, trained_run, digits):
    bank = det.feature_bank_
    assert bank is not None and bank.ndim == 2 and 0 < len(bank) <= det.config_.score.bank_size
    raw = torch.load(trained_run / "checkpoint.pt", weights_only=True)["feature_bank"]
    assert raw.shape == bank.shape and torch.allclose(raw.float(), bank, atol=1e-2 * bank.abs().max().item())
    comps = det.score_components(digits.x[:50])
    assert comps["feature_knn"].shape == (50,) and np.all(comps["feature_knn"] >= 0)
    # with k = 1, a sample that is in the bank is its own nearest neighbour
    from anomgan.runs import load_data, split_data

    cfg = det.config_
    train_x = load_data(cfg).x[split_data(cfg, load_data(cfg)).train]
    one = AnoGAN.load(trained_run, device="cpu")
    one.config_.score.knn_k = 1
    near = one.score_components(train_x[:20])["feature_knn"]
    far = one.score_components(np.random.default_rng(0).random((20, 1, 8, 8)).astype(np.float32))["feature_knn"]
    assert np.all(near < 0.05 * np.median(far)), (near, far)


def test_run_without_a_bank_scores_without_feature_knn_or_says_why(trained_run, digits):
    from anomgan.errors import RunError

    det = AnoGAN.load(trained_run, device="cpu")
    det.feature_bank_, det.calibrations_ = None, {}  # as a run trained before the bank existed
    with pytest.raises(RunError, match="feature_knn"):
        det.score_components(digits.x[:10])
    det.config_.score.weights = {"d_score": 0.5, "residual": 1.0, "feature_residual": 1.0}
    comps = det.score_components(digits.x[:10])
    assert not {"feature_knn", "feature_maha"} & set(comps) and np.isfinite(comps["anomaly_score"]).all()
    det.fit_feature_bank(digits.x[digits.y == "0"][:60])  # rebuilt from normal data: back in the score
    comps = det.score_components(digits.x[:10])
    assert len(det.feature_bank_) == 60 and {"feature_knn", "feature_maha"} <= set(comps)


def test_fitted_and_reloaded_detectors_score_alike(digits, tmp_path):
    from conftest import tiny_config

    x = digits.x[digits.y == "0"]
    det = AnoGAN(tiny_config(train__epochs=1, encoder__epochs=1), run_dir=tmp_path / "r").fit(x)
    again = AnoGAN.load(tmp_path / "r", device="cpu")
    assert again.feature_bank_.dtype == torch.float32 and torch.equal(again.feature_bank_, det.feature_bank_)
    stored = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)["feature_gauss"]
    assert torch.equal(stored["precision"], det._gaussian().precision)  # saved, not refitted at load
    for name in ("anomaly_score", "feature_maha", "layer_maha"):
        np.testing.assert_allclose(again.score_components(digits.x[:20], "encoder")[name],
                                   det.score_components(digits.x[:20], "encoder")[name], rtol=1e-6, atol=1e-9)
    again._bank_memo = None  # as a run saved before feature_maha: the Gaussian is fitted from the bank on use
    np.testing.assert_allclose(again.score_components(digits.x[:20], "encoder")["feature_maha"],
                               det.score_components(digits.x[:20], "encoder")["feature_maha"], rtol=1e-5)


def test_layer_maha_is_kept_in_the_run_and_tells_normal_from_noise(det, trained_run, digits):
    from anomgan.errors import RunError
    from anomgan.runs import load_data, split_data

    stored = torch.load(trained_run / "checkpoint.pt", weights_only=True)["layer_gauss"]
    assert len(stored) == len(det.layer_gauss_) >= 2  # one Gaussian per D layer, saved in the run
    assert all(torch.equal(s["precision"], g.precision) for s, g in zip(stored, det.layer_gauss_))
    cfg = det.config_
    train_x = load_data(cfg).x[split_data(cfg, load_data(cfg)).train]
    normal = det.score_components(train_x[:40], "encoder")["layer_maha"]
    noise = det.score_components(np.random.default_rng(0).random((40, 1, 8, 8)).astype(np.float32),
                                 "encoder")["layer_maha"]
    assert np.isfinite(normal).all() and normal.min() >= 0 and np.median(noise) > 3 * np.median(normal)
    # a run saved before layer_maha: no such component, a clear error if weighted, back after fit_feature_bank
    old = AnoGAN.load(trained_run, device="cpu")
    assert not old.bank_outdated()
    old.layer_gauss_, old.calibrations_ = None, {}
    assert old.bank_outdated()
    assert old.config_.score.weights["layer_maha"] > 0  # the default weighs it
    with pytest.raises(RunError, match="layer_maha.*fit_feature_bank"):
        old.score_components(digits.x[:5], "encoder")
    old.config_.score.weights = {"residual": 1.0, "feature_knn": 1.0}
    assert "layer_maha" not in old.score_components(digits.x[:5], "encoder")
    old.fit_feature_bank(train_x)
    assert not old.bank_outdated()
    np.testing.assert_allclose(old.score_components(train_x[:40], "encoder")["layer_maha"], normal, rtol=1e-5)


def test_calibration_follows_the_bank_it_was_measured_on(digits, tmp_path):
    from conftest import tiny_config

    det = AnoGAN(tiny_config(train__epochs=1, encoder__epochs=1), run_dir=tmp_path / "r").fit(digits.x[digits.y == "0"])
    before = np.asarray(det.calibrate("encoder").val_components["feature_knn"])
    det.fit_feature_bank(digits.x[digits.y == "1"][:30])  # another bank, in memory only (the run keeps its own)
    other = np.asarray(det.calibrate("encoder").val_components["feature_knn"])
    assert not np.allclose(before, other)
    again = AnoGAN.load(tmp_path / "r", device="cpu")  # the run's cache must not hand back the other bank's values
    np.testing.assert_allclose(again.calibrate("encoder").val_components["feature_knn"], before, rtol=1e-6)


def test_recombine_reweights_without_inverting_again(det, digits):
    comps = det.score_components(digits.x[:30], "encoder")
    np.testing.assert_allclose(det.recombine(comps, det.config_.score.weights, "encoder"), comps["anomaly_score"])
    mean, std = det.calibrate("encoder").stats("residual")
    np.testing.assert_allclose(det.recombine(comps, {"residual": 1.0}, "encoder"), (comps["residual"].astype(np.float64) - mean) / std)
