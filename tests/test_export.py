"""ONNX export: one file, preprocessing inside, dynamic batch, checked against torch; Parquet in and out."""

import threading

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from test_cli import assert_one_line_error, invoke  # noqa: E402

from anomgan import AnoGAN, Inversion  # noqa: E402
from anomgan.export import METADATA_KEY, OnnxDetector, export_run  # noqa: E402

from conftest import tiny_config  # noqa: E402


def agree(onnx_scores: np.ndarray, torch_scores: np.ndarray) -> float:
    """|onnx - torch| relative to the spread of the scores: the issue's bar is 1e-3."""
    return float(np.abs(onnx_scores - torch_scores).max() / torch_scores.std())


@pytest.fixture(scope="module")
def digits_onnx(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "d0.onnx"
    res = invoke("export", "--run", trained_run, "--out", out)
    assert res.exit_code == 0, res.output
    return out


def test_export_is_one_file_with_its_metadata(digits_onnx, trained_run):
    import onnx

    assert sorted(p.name for p in digits_onnx.parent.iterdir()) == ["d0.onnx"]  # no M.onnx.data beside it
    model = onnx.load(str(digits_onnx))
    props = {p.key for p in model.metadata_props}
    assert METADATA_KEY in props
    assert [o.name for o in model.graph.output][:2] == ["anomaly_score", "d_score"]
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param and not dim0.dim_value  # a symbolic batch, not a fixed one
    det = OnnxDetector(digits_onnx)
    scorer = AnoGAN.load(trained_run, device="cpu").scorer_
    assert det.threshold_ == pytest.approx(float(scorer.calibration(Inversion("encoder")).threshold))


def test_onnx_scores_equal_torch_for_any_batch(digits_onnx, trained_run, digits, tmp_path):
    x = digits.x[:100]
    ref = AnoGAN.load(trained_run, device="cpu").score_components(x, method="encoder")
    det = OnnxDetector(digits_onnx)
    for bs in (1, 7, 100):
        got = next(det.iter_scores([x], batch_size=bs))
        assert agree(got["anomaly_score"], ref["anomaly_score"]) < 1e-3
        assert agree(got["feature_knn"], ref["feature_knn"]) < 1e-3
        assert (got["is_anomaly"] == ref["is_anomaly"]).mean() > 0.98  # equal up to scores at the threshold


def test_onnx_batches_run_side_by_side_on_one_thread_sessions(digits_onnx, digits):
    det = OnnxDetector(digits_onnx)
    x, seen = digits.x[:100], set()
    assert det.session.get_session_options().intra_op_num_threads == (1 if det.workers > 1 else 0)
    session = det.session

    class Spy:
        def run(self, *args):
            seen.add(threading.current_thread().name)
            return session.run(*args)

    det.session, det.workers = Spy(), 2
    two = next(det.iter_scores([x], batch_size=16))
    assert seen and all(name.startswith("anomgan-score") for name in seen)
    det.workers = 1
    one = next(det.iter_scores([x], batch_size=16))
    assert np.array_equal(two["anomaly_score"], one["anomaly_score"])
    assert len(two["anomaly_score"]) == len(two["threshold"]) == 100


def test_score_cli_gives_the_same_table_from_either_backend(digits_onnx, trained_run, digits, tmp_path):
    np.save(tmp_path / "x.npy", digits.x[:60])
    a = invoke("score", "--run", trained_run, "--input", tmp_path / "x.npy", "--out", tmp_path / "t.csv",
               "--method", "encoder", "--quiet", "--device", "cpu")
    b = invoke("score", "--run", digits_onnx, "--input", tmp_path / "x.npy", "--out", tmp_path / "o.parquet",
               "--quiet")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    t, o = pd.read_csv(tmp_path / "t.csv"), pd.read_parquet(tmp_path / "o.parquet")
    assert list(t.columns) == list(o.columns)
    assert (t["id"].astype(str) == o["id"]).all()
    assert agree(o["anomaly_score"].to_numpy(), t["anomaly_score"].to_numpy()) < 1e-3
    res = invoke("score", "--run", digits_onnx, "--input", tmp_path / "x.npy", "--out", tmp_path / "h.csv",
                 "--method", "hybrid")
    assert_one_line_error(res, "encoder path only")


def test_tabular_export_takes_raw_features(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(300, 6)).astype(np.float32)  # raw, unscaled: the graph standardises
    weights = {"d_score": 0.5, "residual": 1.0, "feature_knn": 5.0, "layer_maha": 10.0, "layer_knn": 5.0,
               "input_knn": 5.0}
    det = AnoGAN(epochs=3, encoder_epochs=2, width=16, z_dim=4, weights=weights, random_state=0,
                 device="cpu").fit(x)
    det.save(tmp_path / "run")
    res = export_run(tmp_path / "run", tmp_path / "t.onnx")
    exported = OnnxDetector(tmp_path / "t.onnx")
    assert {"input_knn", "layer_knn"} <= set(next(exported.iter_scores([x[:4]])))  # the data's and the layers' banks
    assert res["max_score_diff"] <= res["score_bound"]
    test = np.vstack([x[:20], x[:20] + 12.0])
    got = exported.anomaly_score(test)
    assert agree(got, det.anomaly_score(test, method="encoder")) < 1e-3


def test_padded_inputs_keep_their_own_size(digits, tmp_path):
    """A run that pads its inputs (8-px digits in a 16-px model, as MNIST's 28 in 32) exports a graph that takes
    the inputs' own size: the padding is inside the graph."""
    cfg = tiny_config(data__image_size=16, data__resize="pad", train__epochs=1, encoder__epochs=1)
    det = AnoGAN(config=cfg, method="encoder", random_state=0).fit(digits.x[:120])
    det.save(tmp_path / "run")
    export_run(tmp_path / "run", tmp_path / "p.onnx")
    got = OnnxDetector(tmp_path / "p.onnx").anomaly_score(digits.x[200:260])
    assert digits.x.shape[-1] == 8
    assert agree(got, det.anomaly_score(digits.x[200:260], method="encoder")) < 1e-3


def test_image_export_carries_the_anomaly_map(tmp_path):
    from test_maps import smooth_noise, with_square

    cfg = tiny_config(data__image_size=32, train__epochs=2, encoder__epochs=1, model__width=8,
                      score__weights={"layer_maha": 1.0, "map_max": 1.0},
                      score__map_weights={"layer_maha_map": 1.0, "residual_map": 0.5}, score__bank_size=128)
    det = AnoGAN(config=cfg, method="encoder", random_state=0).fit(smooth_noise(80, 32, 0))
    det.save(tmp_path / "run")
    res = export_run(tmp_path / "run", tmp_path / "m.onnx")
    assert res["outputs"][-1] == "anomaly_map" and res["max_map_diff"] <= res["map_bound"]
    x, _ = with_square(smooth_noise(5, 32, 1), 2)
    got = next(OnnxDetector(tmp_path / "m.onnx").iter_scores([x]))
    ref = det.score_components(x)
    assert got["anomaly_map"].shape == (5, 32, 32)
    assert np.abs(got["anomaly_map"] - ref["anomaly_map"]).max() < 1e-3 * ref["anomaly_map"].std()


def test_export_refuses_what_it_cannot_check(trained_run, tmp_path, monkeypatch):
    import anomgan.export as export

    res = invoke("export", "--run", tmp_path, "--out", tmp_path / "x.onnx")
    assert_one_line_error(res, "not a run directory")
    assert not (tmp_path / "x.onnx").exists()
    monkeypatch.setattr(export, "SCORE_TOLERANCE", 0.0)  # nothing can pass: the file must not stay
    res = invoke("export", "--run", trained_run, "--out", tmp_path / "y.onnx")
    assert_one_line_error(res, "differ from torch")
    assert list(tmp_path.glob("*.onnx*")) == [] and list(tmp_path.glob(".y.onnx*")) == []
    (tmp_path / "fake.onnx").write_text("not a model")
    res = invoke("score", "--run", tmp_path / "fake.onnx", "--input", tmp_path / "any.npy", "--out", tmp_path / "s.csv")
    assert_one_line_error(res, "not an ONNX file exported by anomgan")


def test_parquet_tables_in_and_out(tmp_path):
    rng = np.random.default_rng(1)
    cols = [f"f{i}" for i in range(4)]
    train = pd.DataFrame(rng.normal(size=(200, 4)).astype(np.float32), columns=cols)
    train.to_csv(tmp_path / "train.csv", index=False)
    cfg = tiny_config(data__source=str(tmp_path / "train.csv"), data__normal_classes=None, data__image_size=None,
                      train__epochs=2)
    from anomgan.runs import train_run

    train_run(cfg, tmp_path / "run")
    test = train.iloc[:30].assign(label="x")
    test.to_parquet(tmp_path / "in.parquet")
    test.to_csv(tmp_path / "in.csv", index=False)
    for src, dst in (("in.parquet", "a.parquet"), ("in.csv", "b.csv")):
        res = invoke("score", "--run", tmp_path / "run", "--input", tmp_path / src, "--out", tmp_path / dst,
                     "--quiet", "--device", "cpu", "--batch-size", "7")
        assert res.exit_code == 0, res.output
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_csv(tmp_path / "b.csv")
    assert a["id"].tolist() == [str(i) for i in range(30)] and (a["label"] == "x").all()
    np.testing.assert_allclose(a["anomaly_score"], b["anomaly_score"], rtol=1e-9)
    train.drop(columns=["f2"]).to_parquet(tmp_path / "missing.parquet")
    res = invoke("score", "--run", tmp_path / "run", "--input", tmp_path / "missing.parquet", "--out",
                 tmp_path / "m.csv")
    assert_one_line_error(res, "missing f2")
    train.assign(f1="word").to_parquet(tmp_path / "text.parquet")
    res = invoke("score", "--run", tmp_path / "run", "--input", tmp_path / "text.parquet", "--out",
                 tmp_path / "t.parquet")
    assert_one_line_error(res, "column 'f1' is not numeric")
    assert not (tmp_path / "m.csv").exists() and not (tmp_path / "t.parquet").exists()
    res = invoke("score", "--run", tmp_path / "run", "--input", tmp_path / "in.csv", "--out", tmp_path / "s.json")
    assert_one_line_error(res, "written as .csv or .parquet")


def test_critic_encoder_export_agrees_and_runs_one_trunk_less(digits, tmp_path):
    import onnx

    weights = {"d_score": 0.5, "residual": 1.0, "feature_knn": 5.0, "layer_maha": 10.0,  # the MNIST config's:
               "layer_knn": 5.0}  # no pass on G(E(x))
    convs = {}
    for trunk in ("own", "critic"):
        cfg = tiny_config(train__epochs=1, encoder__epochs=1, model__encoder_trunk=trunk, score__weights=weights)
        det = AnoGAN(config=cfg, method="encoder", random_state=0).fit(digits.x[:120])
        det.save(tmp_path / trunk)
        export_run(tmp_path / trunk, tmp_path / f"{trunk}.onnx")
        graph = onnx.load(str(tmp_path / f"{trunk}.onnx")).graph
        convs[trunk] = sum(n.op_type == "Conv" for n in graph.node)
        got = OnnxDetector(tmp_path / f"{trunk}.onnx").anomaly_score(digits.x[200:260])
        assert agree(got, det.anomaly_score(digits.x[200:260], method="encoder")) < 1e-3
    n_trunk = len([m for m in det.scorer_.discriminator.trunk.body if isinstance(m, torch.nn.Conv2d)])
    assert convs["own"] - convs["critic"] == n_trunk  # E's trunk is gone; D runs once
