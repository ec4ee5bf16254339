"""AnoGAN as a scikit-learn estimator: scikit-learn's own checks, pipelines, grid search, pickling, images."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from anomgan import AnoGAN

TINY = dict(epochs=1, encoder_epochs=1, width=8, z_dim=4, method="encoder", device="cpu")


@parametrize_with_checks([AnoGAN(**TINY)])
def test_scikit_learn_checks(estimator, check):
    check(estimator)


def _table(n=240, seed=0):
    x, _ = make_blobs(n_samples=n, centers=[[0, 0, 0, 0]], cluster_std=1.0, n_features=4, random_state=seed)
    far = np.random.default_rng(seed).normal(8.0, 1.0, size=(40, 4))
    return x, far


def test_directions_follow_scikit_learn_and_anomaly_score_the_project():
    x, far = _table()
    det = AnoGAN(**TINY).fit(x)
    test = np.concatenate([x[:40], far])
    anomaly = det.anomaly_score(test)
    np.testing.assert_array_equal(det.score_samples(test), -anomaly)
    np.testing.assert_allclose(det.decision_function(test), det.threshold_ - anomaly)
    np.testing.assert_array_equal(det.predict(test), np.where(anomaly > det.threshold_, -1, 1))
    assert det.offset_ == -det.threshold_
    assert roc_auc_score(np.r_[np.zeros(40), np.ones(40)], anomaly) > 0.95  # label 1 = anomaly, higher = anomalous
    assert (det.predict(far) == -1).mean() > 0.9


def test_pipeline_with_a_scaler_and_grid_search_with_a_scorer():
    x, far = _table()
    pipe = make_pipeline(StandardScaler(), AnoGAN(**TINY)).fit(x * 100.0)
    assert (pipe.predict(far * 100.0) == -1).mean() > 0.9

    def auc(estimator, X, y):  # y: 1 = anomaly
        return roc_auc_score(y, -estimator.score_samples(X))

    X = np.concatenate([x, far])
    y = np.r_[np.zeros(len(x)), np.ones(len(far))]
    search = GridSearchCV(AnoGAN(**TINY), {"z_dim": [2, 4]}, scoring=auc,
                          cv=StratifiedKFold(2, shuffle=True, random_state=0)).fit(X, y)
    assert search.best_params_["z_dim"] in (2, 4) and np.isfinite(search.best_score_)
    assert clone(search.best_estimator_).get_params()["z_dim"] == search.best_params_["z_dim"]


def test_pickle_and_save_load_score_alike(tmp_path):
    x, far = _table()
    det = AnoGAN(**TINY).fit(x)
    again = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(again.anomaly_score(far), det.anomaly_score(far))
    det.save(tmp_path / "run")
    loaded = AnoGAN.load(tmp_path / "run", device="cpu")
    np.testing.assert_array_equal(loaded.anomaly_score(far), det.anomaly_score(far))
    assert loaded.threshold_ == det.threshold_


def test_images_as_nchw_or_nhw_arrays(digits):
    zeros = digits.x[digits.y == "0"]
    det = AnoGAN(**TINY).fit(zeros[:, 0])  # (N, H, W)
    assert det.n_features_in_ == 1
    sevens = digits.x[digits.y == "7"][:30]
    assert np.median(det.anomaly_score(sevens)) > np.median(det.anomaly_score(zeros[:30]))
    np.testing.assert_array_equal(det.anomaly_score(sevens[:, 0]), det.anomaly_score(sevens))
    with pytest.raises(ValueError, match="channel"):
        det.predict(np.repeat(sevens, 3, axis=1))


def test_config_carries_the_rest_and_flat_parameters_win(tmp_path):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 3, "loss": "hinge"}, "score": {"knn_k": 2}}))
    det = AnoGAN(epochs=1, config=str(path))
    cfg = det.resolved_config()
    assert (cfg.train.epochs, cfg.train.loss, cfg.score.knn_k) == (1, "hinge", 2)
    assert AnoGAN().get_params()["config"] is None  # the constructor stores, fit resolves
    with pytest.raises(ValueError, match="train.loss"):
        AnoGAN(loss="bogus").fit(np.zeros((10, 2)))


def test_unset_weights_are_the_defaults_of_the_kind_of_data(digits):
    from anomgan.config import DEFAULT_WEIGHTS

    x, far = _table()
    table = AnoGAN(**TINY).fit(x)
    assert "input_knn" in table.scorer_.components  # tables: kNN on the rows themselves joins the GAN's signals
    assert table.scorer_.spec.weights == DEFAULT_WEIGHTS["tabular"] == table.config_.score.weights
    images = AnoGAN(**TINY).fit(digits.x[digits.y == "0"])
    assert "input_knn" not in images.scorer_.components
    assert images.scorer_.spec.weights == DEFAULT_WEIGHTS["image"]
    chosen = AnoGAN(**TINY, weights={"residual": 1.0, "feature_knn": 2.0}).fit(x)
    assert chosen.scorer_.spec.weights == {"residual": 1.0, "feature_knn": 2.0}
    assert roc_auc_score(np.r_[np.zeros(40), np.ones(40)], table.anomaly_score(np.concatenate([x[:40], far]))) > 0.95
