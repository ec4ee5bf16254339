import numpy as np
import pytest
import torch

from anomgan import AnoGAN, Inversion
from anomgan.components import COMPONENTS, NAMES
from anomgan.model import Calibration, Scorer, ScorerSpec
from anomgan.run_format import load_run
from anomgan.scoring import memory
from anomgan.scoring.inversion import invert_latent
from anomgan.training.normal_stats import bank_indices, coreset_indices, fit_gaussian, fit_normal_statistics


@pytest.fixture(scope="module")
def det(trained_run):
    return AnoGAN.load(trained_run, device="cpu")


def _train_x(det):
    from anomgan.runs import load_data, split_data

    cfg = det.config_
    ds = load_data(cfg)
    return ds.x[split_data(cfg, ds).train]


def _model_space(det, x):
    return det.scorer_.preprocess(torch.from_numpy(np.asarray(x, dtype=np.float32)))


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
    s = det.scorer_
    x = _model_space(det, digits.x[:32])
    res = invert_latent(x, s.generator, s.discriminator, s.encoder, "iterative", steps=40, lr=0.05,
                        z_dim=s.spec.model_args["z_dim"], keep_trace=True)
    trace = res.trace.numpy()
    assert trace[-1] < trace[0]
    windows = trace[: len(trace) // 8 * 8].reshape(8, -1).mean(1)
    assert np.all(np.diff(windows) <= 1e-6), windows  # decreasing on average over the run


def test_restarts_keep_the_best(det, digits):
    s = det.scorer_
    x = _model_space(det, digits.x[:16])
    kw = dict(steps=10, lr=0.05, z_dim=s.spec.model_args["z_dim"])
    one = invert_latent(x, s.generator, s.discriminator, s.encoder, "iterative", restarts=1, **kw)
    four = invert_latent(x, s.generator, s.discriminator, s.encoder, "iterative", restarts=4, **kw)
    err = lambda r: (x - r.x_hat).abs().flatten(1).mean(1)  # noqa: E731
    assert torch.all(err(four) <= err(one) + 0.02)  # the first restart is the same start as restarts=1
    assert err(four).mean() <= err(one).mean()


@pytest.mark.parametrize("method", ["encoder", "iterative", "hybrid"])
def test_scores_do_not_depend_on_batch_grouping(det, digits, method):
    x = digits.x[:30]
    steps = 15 if method == "iterative" else None
    whole = det.score_components(x, method, steps)
    parts = [det.score_components(x[i:i + 7], method, steps) for i in range(0, 30, 7)]
    singles = [det.score_components(x[i:i + 1], method, steps) for i in range(0, 30)]
    for key in (*det.scorer_.components, "anomaly_score"):
        for split in (parts, singles):
            np.testing.assert_allclose(whole[key], np.concatenate([p[key] for p in split]), rtol=1e-5, atol=1e-6)


def test_knn_distance_is_exact_and_batch_independent(monkeypatch):
    g = torch.Generator().manual_seed(0)
    f, bank = torch.randn(40, 64, generator=g), torch.randn(300, 64, generator=g)
    f[0] = bank[5] + 1e-4  # a near-duplicate of a bank row: where matrix-product distances round worst
    want = torch.cdist(f.double(), bank.double(), compute_mode="donot_use_mm_for_euclid_dist").sort(1).values[:, :3]
    monkeypatch.setattr(memory, "BANK_CHUNK", 64)  # five chunks: the running candidates must merge correctly
    got = memory.knn_distance(f, bank, 3)
    np.testing.assert_allclose(got.double().numpy(), want.mean(1).numpy(), rtol=1e-5, atol=1e-6)
    one_by_one = torch.cat([memory.knn_distance(f[i:i + 1], bank, 3) for i in range(len(f))])
    assert torch.equal(one_by_one, got)  # the same bits, whatever the batch
    assert torch.allclose(memory.knn_distance(f, bank[:2], 5).double(),  # k above the bank size: all of it
                          torch.cdist(f.double(), bank[:2].double()).mean(1), atol=1e-5)


def test_mahalanobis_is_ledoit_wolf_and_weighs_rare_directions_more():
    from sklearn.covariance import LedoitWolf

    g = torch.Generator().manual_seed(0)
    bank = torch.randn(400, 2, generator=g) * torch.tensor([10.0, 1.0]) + torch.tensor([5.0, -2.0])
    mean, precision = fit_gaussian(bank)
    lw = LedoitWolf().fit(bank.double().numpy())
    np.testing.assert_allclose(precision.numpy(), lw.precision_, rtol=1e-5)
    np.testing.assert_allclose(mean.numpy(), lw.location_, rtol=1e-5)
    pts = mean + torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    d = memory.mahalanobis_sq(pts, mean, precision)
    c = (pts - mean).double().numpy()
    np.testing.assert_allclose(d.double().numpy(), np.einsum("bi,ij,bj->b", c, lw.precision_, c), rtol=1e-4, atol=1e-6)
    assert d[0] < 1e-6 and d[2] > 25 * d[1]  # 3 units off along the narrow axis is far; along the wide one, near
    with pytest.raises(ValueError, match="2 bank rows"):
        fit_gaussian(bank[:1])
    wide = torch.randn(30, 50, generator=g)  # more features than rows: shrinkage keeps it invertible
    wide[:, 7] = 1.0  # and a feature that never varies
    np.testing.assert_allclose(fit_gaussian(wide)[1].numpy(), LedoitWolf().fit(wide.double().numpy()).precision_,
                               rtol=1e-4, atol=1e-6)
    assert torch.isfinite(memory.mahalanobis_sq(torch.randn(4, 50, generator=g), *fit_gaussian(wide))).all()
    flat = fit_gaussian(torch.ones(10, 3))  # no variance at all: every sample is at distance 0, not NaN
    assert torch.equal(memory.mahalanobis_sq(torch.randn(4, 3, generator=g), *flat), torch.zeros(4))


def test_bank_indices_are_a_seeded_subset():
    assert torch.equal(bank_indices(5, 10, 0), torch.arange(5))
    a, b = bank_indices(100, 30, 1), bank_indices(100, 30, 1)
    assert torch.equal(a, b) and len(a.unique()) == 30 and bool((a[1:] > a[:-1]).all())
    assert not torch.equal(a, bank_indices(100, 30, 2))


def test_coreset_covers_every_cluster_a_random_subset_misses():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 16, generator=g) * 20
    sizes = torch.tensor([200, 200, 200, 200, 3, 3])  # two rare modes of the normal data
    rows = torch.cat([c + torch.randn(int(n), 16, generator=g) for c, n in zip(centres, sizes)])
    cluster = torch.repeat_interleave(torch.arange(6), sizes)
    picked = coreset_indices(rows, 6)
    assert sorted(cluster[picked].tolist()) == list(range(6))  # one row of each mode, the rare ones included
    assert bool((picked[1:] > picked[:-1]).all()) and torch.equal(picked, coreset_indices(rows, 6))
    # every row is closer to the coreset than the coreset's spread: the k-center bound
    d = torch.cdist(rows, rows[coreset_indices(rows, 30)]).min(1).values
    between = torch.cdist(centres, centres)
    assert float(d.max()) < float(between[between > 0].min()) / 2
    assert torch.equal(coreset_indices(rows, 0), torch.arange(len(rows)))
    assert torch.equal(coreset_indices(rows, 10_000), torch.arange(len(rows)))


def test_a_coreset_keeps_that_many_bank_rows_and_every_gaussian_row(det, digits):
    import copy

    from anomgan.training.fit import rescore_with

    cfg = copy.deepcopy(det.config_)
    cfg.score.coreset_size = 16
    x = digits.x[digits.y == "0"]
    full = rescore_with(det.scorer_, det.config_, x[:60], x[60:])
    small = rescore_with(det.scorer_, cfg, x[:60], x[60:])
    assert len(small.bank) == 16 and len(full.bank) == 60
    assert all(torch.equal(a.precision, b.precision) for a, b in zip(small.layer_gaussians, full.layer_gaussians))
    rows = {tuple(r.tolist()) for r in full.bank}
    assert all(tuple(r.tolist()) in rows for r in small.bank)  # the coreset is a subset of the bank


def test_input_knn_is_the_distance_to_the_nearest_training_inputs_and_survives_a_save(det, digits, tmp_path):
    import copy

    from sklearn.neighbors import NearestNeighbors

    from anomgan.training.fit import rescore_with

    cfg = copy.deepcopy(det.config_)
    cfg.score.weights = {**cfg.score.weights, "input_knn": 5.0}
    x = digits.x[digits.y == "0"]
    scorer = rescore_with(det.scorer_, cfg, x[:60], x[60:])
    bank = _model_space(det, x[:60]).flatten(1).numpy()
    assert scorer.input_bank.shape == bank.shape  # the bank samples in model space, not D's features
    queries = digits.x[:50]
    nn = NearestNeighbors(n_neighbors=cfg.score.knn_k).fit(bank)
    want = nn.kneighbors(_model_space(det, queries).flatten(1).numpy())[0].mean(1)
    with_knn = copy.deepcopy(det)
    with_knn.scorer_, with_knn.config_ = scorer, cfg
    got = with_knn.score_components(queries, "encoder")["input_knn"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    with_knn.save(tmp_path / "run")
    again = AnoGAN.load(tmp_path / "run", device="cpu").score_components(queries, "encoder")
    np.testing.assert_array_equal(again["input_knn"], got)
    cfg.score.coreset_size = 16
    small = rescore_with(det.scorer_, cfg, x[:60], x[60:])
    assert len(small.input_bank) == 16
    rows = {tuple(r.tolist()) for r in scorer.input_bank}
    assert all(tuple(r.tolist()) in rows for r in small.input_bank)


def _calibration(values: dict, components) -> Calibration:
    return Calibration(torch.tensor([values[c] for c in components], dtype=torch.float64).T)


def test_calibration_uses_validation_statistics_only(det):
    comps = ("d_score", "residual", "feature_residual")
    spec = ScorerSpec(model_args=det.scorer_.spec.model_args, preprocess=det.scorer_.spec.preprocess,
                      components=list(comps), weights={"residual": 1.0})
    scorer = Scorer(spec)
    cal = _calibration({"d_score": [0.0, 2.0], "residual": [1.0, 3.0], "feature_residual": [5.0, 5.0]}, comps)
    batch = lambda **v: {k: torch.tensor(x, dtype=torch.float64) for k, x in v.items()}  # noqa: E731
    # residual mean 2, std 1 -> z-score of 4 is 2, whatever else is in the batch
    one = scorer.combine(batch(d_score=[9.0], residual=[4.0], feature_residual=[0.0]), cal)
    two = scorer.combine(batch(d_score=[9.0, 0.0], residual=[4.0, 100.0], feature_residual=[0.0, 0.0]), cal)
    assert float(one[0]) == pytest.approx(2.0) and float(two[0]) == pytest.approx(2.0)
    assert float(cal.scale[2]) == 1.0  # a component without spread on normal data keeps its unit scale
    scorer.spec.combination = "anogan"
    anogan = scorer.combine(batch(d_score=[0.0], residual=[1.0], feature_residual=[3.0]), cal)
    assert float(anogan[0]) == pytest.approx(0.9 * 1.0 + 0.1 * 3.0)


def test_threshold_is_validation_quantile(det):
    s = det.scorer_
    cal = s.calibration(Inversion("encoder"))
    vals = {c: cal.values[:, i] for i, c in enumerate(s.components)}
    val_scores = s.combine(vals, cal).numpy()
    assert float(cal.threshold) == pytest.approx(np.quantile(val_scores, 0.95))
    assert np.mean(val_scores > float(cal.threshold)) <= 0.05 + 1 / len(val_scores)  # quantised tail
    assert det.threshold_ == pytest.approx(float(s.calibration(s.default_inversion()).threshold))


def test_save_and_load_round_trip(det, digits, tmp_path):
    det.save(tmp_path / "copy")
    again = AnoGAN.load(tmp_path / "copy", device="cpu")
    for name, value in det.scorer_.state_dict().items():
        assert torch.equal(again.scorer_.state_dict()[name], value), name
    np.testing.assert_array_equal(again.anomaly_score(digits.x[:10], "encoder"), det.anomaly_score(digits.x[:10],
                                                                                                    "encoder"))


def test_scorer_forward_is_the_encoder_path(det, digits):
    x = torch.from_numpy(digits.x[:12])
    out = det.scorer_(x)
    want = det.score_components(digits.x[:12], "encoder")
    assert set(out) == {*det.scorer_.components, "anomaly_score"}
    for key, value in out.items():
        np.testing.assert_allclose(value.numpy(), want[key], rtol=1e-6, atol=1e-9)


def test_d_sees_the_reconstruction_only_for_a_component_that_reads_it(det, digits):
    import copy

    from anomgan.training.fit import rescore_with

    x = digits.x[digits.y == "0"]
    calls = []
    for weights in ({"d_score": 1.0, "residual": 1.0}, {"d_score": 1.0, "residual": 1.0, "feature_residual": 1.0}):
        cfg = copy.deepcopy(det.config_)
        cfg.score.weights = weights
        scorer = rescore_with(det.scorer_, cfg, x[:60], x[60:])
        seen: list = []
        hook = scorer.discriminator.trunk.register_forward_hook(lambda m, i, o, seen=seen: seen.append(len(o)))
        scorer.score(scorer.preprocess(torch.from_numpy(x[:7])), Inversion("encoder"))
        hook.remove()
        calls.append(seen)
    assert calls == [[7], [7, 7]]  # D(x) always; D(G(E(x))) only for feature_residual


def test_refit_gives_the_new_model_its_own_calibration(digits):
    from conftest import tiny_config

    x = digits.x[digits.y == "0"]
    det = AnoGAN(config=tiny_config(train__epochs=1, encoder__epochs=1)).fit(x)
    first = det.threshold_
    det.set_params(random_state=7)
    assert det.fit(x).threshold_ != first


def test_the_bank_is_kept_in_the_run_and_scores_training_samples_near_zero(det, trained_run):
    bank = det.scorer_.bank
    assert bank is not None and bank.ndim == 2 and 0 < len(bank) <= det.config_.score.bank_size
    stored = load_run(trained_run).scorer["state"]["bank"]
    assert torch.equal(stored, bank)
    train_x = _train_x(det)
    one = AnoGAN.load(trained_run, device="cpu")
    one.scorer_.spec.knn_k = 1  # with k = 1, a sample that is in the bank is its own nearest neighbour
    near = one.score_components(train_x[:20])["feature_knn"]
    far = one.score_components(np.random.default_rng(0).random((20, 1, 8, 8)).astype(np.float32))["feature_knn"]
    assert np.all(near < 0.05 * np.median(far)), (near, far)


def test_a_component_weighing_zero_is_neither_computed_nor_stored(digits, tmp_path):
    from conftest import tiny_config

    x = digits.x[digits.y == "0"]
    cfg = tiny_config(train__epochs=1, encoder__epochs=1, score__weights={"residual": 1.0, "feature_knn": 1.0})
    det = AnoGAN(config=cfg).fit(x)
    assert det.scorer_.components == ("residual", "feature_knn")
    assert det.scorer_.feature_gaussian is None and len(det.scorer_.layer_gaussians) == 0
    assert set(det.score_components(digits.x[:5], "encoder")) == {"residual", "feature_knn", "anomaly_score",
                                                                  "threshold", "is_anomaly"}
    det.save(tmp_path / "r")
    state = load_run(tmp_path / "r").scorer["state"]
    assert not any(k.startswith(("feature_gaussian", "layer_gaussians")) for k in state)
    cfg = tiny_config(train__epochs=1, encoder__epochs=1, score__weights={"feature_maha": 1.0})
    maha = AnoGAN(config=cfg).fit(x)  # a choice: weighted, it is fitted, stored and scored
    assert maha.scorer_.components == ("feature_maha",) and maha.scorer_.feature_gaussian is not None
    assert np.isfinite(maha.score_components(digits.x[:5], "encoder")["feature_maha"]).all()


def test_layer_maha_is_kept_in_the_run_and_tells_normal_from_noise(det, trained_run):
    state = load_run(trained_run).scorer["state"]
    n_layers = len(det.scorer_.layer_gaussians)
    assert n_layers >= 2 and all(f"layer_gaussians.{i}.precision" in state for i in range(n_layers))
    train_x = _train_x(det)
    normal = det.score_components(train_x[:40], "encoder")["layer_maha"]
    noise = det.score_components(np.random.default_rng(0).random((40, 1, 8, 8)).astype(np.float32),
                                 "encoder")["layer_maha"]
    assert np.isfinite(normal).all() and normal.min() >= 0 and np.median(noise) > 3 * np.median(normal)


def test_layer_knn_keeps_a_coreset_per_layer_and_tells_normal_from_noise(det):
    import copy

    from anomgan.training.fit import rescore_with

    cfg = copy.deepcopy(det.config_)
    cfg.score.weights = {**cfg.score.weights, "layer_knn": 5.0}
    cfg.score.coreset_size = 24
    x = _train_x(det)
    scorer = rescore_with(det.scorer_, cfg, x[:60], x[60:])
    layers = det.scorer_.discriminator.forward_with_layers(_model_space(det, x[:60]))[2]
    assert len(scorer.layer_banks) == len(layers) >= 2
    for bank, acts in zip(scorer.layer_banks, layers):
        assert bank.rows.shape == (24, acts.shape[1])  # each layer's own coreset of the 60 bank samples
        found = {tuple(r.tolist()) for r in acts.float()}
        assert all(tuple(r.tolist()) in found for r in bank.rows.float())
        assert bank.scale > 0
    # held-out normal images lie near each layer's bank; noise lies far from every layer's normal activations
    normal = scorer.score(_model_space(det, x[60:100]), Inversion("encoder"))["layer_knn"]
    noise = scorer.score(_model_space(det, np.random.default_rng(0).random((40, 1, 8, 8)).astype(np.float32)),
                         Inversion("encoder"))["layer_knn"]
    assert torch.isfinite(normal).all() and torch.median(noise) > 2 * torch.median(normal)
    again = Scorer.from_saved(scorer.saved())  # the banks travel with the run's state
    assert len(again.layer_banks) == len(scorer.layer_banks) and again.missing_statistics() == []
    assert torch.equal(again.score(_model_space(det, x[60:70]), Inversion("encoder"))["layer_knn"],
                       scorer.score(_model_space(det, x[60:70]), Inversion("encoder"))["layer_knn"])


def test_refitting_the_statistics_drops_stale_calibrations(det, trained_run, digits):
    fresh = AnoGAN.load(trained_run, device="cpu").scorer_
    assert fresh.missing_statistics() == []
    x1 = fresh.preprocess(torch.from_numpy(digits.x[digits.y == "1"][:30]))
    fit_normal_statistics(fresh, x1, bank_size=4096, seed=0)  # another class's bank
    assert len(fresh.calibrations) == 0  # thresholds of the old bank would be wrong for the new one
    cal = fresh.fit_calibration(Inversion("encoder"))
    old = det.scorer_.calibration(Inversion("encoder"))
    knn = fresh.components.index("feature_knn")
    assert not torch.allclose(cal.values[:, knn], old.values[:, knn])


def test_reweighting_without_inverting_again(det, digits):
    s = det.scorer_
    x = _model_space(det, digits.x[:30])
    cal = s.calibration(Inversion("encoder"))
    values = s.component_values(x, Inversion("encoder"))
    np.testing.assert_allclose(s.combine(values, cal).numpy(), s.score(x, Inversion("encoder"))["anomaly_score"])
    i = s.components.index("residual")
    only = s.combine(values, cal, weights={"residual": 1.0}).numpy()
    np.testing.assert_allclose(only, ((values["residual"].double() - cal.loc[i]) / cal.scale[i]).numpy())


def test_registry_declares_every_component_once():
    assert NAMES == tuple(COMPONENTS) and len(set(NAMES)) == len(NAMES)
    for c in COMPONENTS.values():
        assert c.meaning and callable(c.compute)


def test_a_new_inversion_setting_is_calibrated_once_and_kept_in_the_run(trained_run, tmp_path, digits):
    import shutil

    from anomgan.runs import score_input
    from anomgan.training.fit import inversion_for

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    np.save(tmp_path / "x.npy", digits.x[:6])
    first = score_input(run, str(tmp_path / "x.npy"), tmp_path / "a.csv", method="hybrid", steps=2, device="cpu")
    det = AnoGAN.load(run, device="cpu")
    key = inversion_for(det.config_, "hybrid", 2).key
    assert key in det.scorer_.calibrations  # stored in the run: the next call reads it
    assert float(det.scorer_.calibrations[key].threshold) == pytest.approx(first.threshold)
    state = load_run(run).training_state()  # the rest of the run is intact: it still resumes
    assert {"generator", "generator_ema", "discriminator", "encoder", "opt_g"} <= set(state)
