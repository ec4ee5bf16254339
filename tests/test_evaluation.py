import numpy as np
import pandas as pd
import pytest

from anomgan.errors import DataError
from anomgan.evaluation.metrics import evaluate_scores, threshold_metrics


def _frame():
    # normal: 0.1, 0.4; class a: 0.35, 0.8; class b: 0.9
    return pd.DataFrame({
        "target": [0, 0, 1, 1, 1], "label": ["n", "n", "a", "a", "b"],
        **{c: [0.1, 0.4, 0.35, 0.8, 0.9] for c in ("d_score", "residual", "feature_residual", "anomaly_score")},
    })


def test_metrics_match_hand_computed_values():
    report = evaluate_scores(_frame(), threshold=0.5)
    row = report[(report.anomalous_class == "all") & (report.component == "anomaly_score")].iloc[0]
    # pairs (normal, anomalous): 6 total; 0.35 < 0.4 is the only mis-ordered pair -> AUC 5/6
    assert row.roc_auc == pytest.approx(5 / 6)
    # ranking: 0.9(+) 0.8(+) 0.4(-) 0.35(+) 0.1(-): AP = (1 + 1 + 3/4) / 3
    assert row.average_precision == pytest.approx((1 + 1 + 0.75) / 3)
    assert (row.tpr, row.fpr, row.precision) == (pytest.approx(2 / 3), 0.0, 1.0)
    assert row.f1 == pytest.approx(0.8)


def test_per_class_rows():
    report = evaluate_scores(_frame(), threshold=0.5)
    assert set(report.anomalous_class) == {"all", "a", "b"}
    assert len(report) == 3 * 4
    a = report[(report.anomalous_class == "a") & (report.component == "residual")].iloc[0]
    assert (a.n_normal, a.n_anomalous) == (2, 2) and a.roc_auc == pytest.approx(3 / 4)
    b = report[(report.anomalous_class == "b") & (report.component == "anomaly_score")].iloc[0]
    assert b.roc_auc == 1.0


def test_single_class_is_refused():
    frame = _frame()
    frame["target"] = 0
    with pytest.raises(DataError, match="ROC-AUC is undefined"):
        evaluate_scores(frame, 0.5)


def test_threshold_metrics_edge_cases():
    m = threshold_metrics(np.array([0, 0, 1]), np.array([0.0, 0.0, 0.0]), 1.0)
    assert m["tpr"] == 0.0 and m["precision"] == 0.0 and m["f1"] == 0.0


def test_evaluate_run_writes_report_and_pictures(trained_run, tmp_path):
    from anomgan.runs import evaluate_run

    ev = evaluate_run(trained_run, tmp_path / "rep.csv", method="encoder", device="cpu")
    report = pd.read_csv(tmp_path / "rep.csv")
    assert set(report.anomalous_class.astype(str)) == {"all", *[str(i) for i in range(1, 10)]}
    overall = report[(report.anomalous_class == "all") & (report.component == "anomaly_score")].iloc[0]
    assert overall.roc_auc > 0.8 and overall.n_anomalous > 1000
    for suffix in ("roc.png", "hist.png", "roc_per_class.png", "top_anomalies.png", "most_normal_anomalies.png",
                   "scores.csv"):
        assert (tmp_path / f"rep.{suffix}").stat().st_size > 0, suffix
    from PIL import Image

    grid = Image.open(tmp_path / "rep.top_anomalies.png")
    assert grid.width >= 3 * 128  # x | G(z*) | residual: 8-px digits upscaled to tiles a person can read
    assert ev.threshold == pytest.approx(report.threshold.dropna().iloc[0])


def test_benchmark_resume_skips_finished_cases(tmp_path, monkeypatch):
    from anomgan import benchmark as bm

    from conftest import tiny_config

    cfg = tiny_config(train__epochs=1, encoder__epochs=1)
    out = tmp_path / "b.csv"
    first = bm.run_benchmark(cfg, "one-class", [1, 2], [0], out, method="encoder")
    assert first.cases.normal_classes.astype(str).tolist() == ["1", "2"] and first.skipped == 0
    summary = pd.read_csv(tmp_path / "b.summary.csv")
    assert "all" in summary.normal_classes.astype(str).tolist()

    trained = []
    original = bm.cases_for

    def spy(*args):
        cases = original(*args)
        trained.extend(cases)
        return cases

    monkeypatch.setattr(bm, "cases_for", spy)
    from anomgan.training import fit

    calls = []
    real_fit = fit.fit_detector
    monkeypatch.setattr(fit, "fit_detector", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    second = bm.run_benchmark(cfg, "one-class", [1, 2, 3], [0], out, method="encoder")
    assert second.skipped == 2 and len(calls) == 1
    again = pd.read_csv(out)
    assert again.normal_classes.astype(str).tolist() == ["1", "2", "3"]
    assert list(again.columns) == list(first.cases.columns)  # no index column piling up over resumes


def test_leave_one_out_cases():
    from anomgan.benchmark import cases_for

    cases = cases_for("leave-one-out", [1], ["0", "1", "2"])
    assert cases == [(["0", "2"], ["1"])]
