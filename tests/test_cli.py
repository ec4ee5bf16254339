"""The CLI through typer's CliRunner: exit codes, one-line errors, outputs never half-written."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()
COMMANDS = ("train", "score", "evaluate", "report", "benchmark", "export", "generate", "datasets", "components")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, fragment):
    assert result.exit_code != 0
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Error: "), result.output
    assert fragment in lines[-1], result.output
    assert "Traceback" not in result.output


def test_help_lists_commands_with_examples():
    res = invoke("--help")
    assert res.exit_code == 0
    for cmd in COMMANDS:
        assert cmd in res.output
        sub = invoke(cmd, "--help")
        assert sub.exit_code == 0 and "Example: anomgan " + cmd in sub.output


def test_datasets_reports_availability(tmp_path):
    res = invoke("datasets", "--data-root", tmp_path)
    assert res.exit_code == 0
    assert "digits         available" in res.output and "mnist          missing" in res.output


def test_components_come_from_the_registry():
    from anomgan.components import COMPONENTS

    res = invoke("components", "--config", Path(__file__).resolve().parents[1] / "configs" / "digits.yaml")
    assert res.exit_code == 0, res.output
    for c in COMPONENTS.values():
        assert c.name in res.output and c.meaning in res.output
    assert "feature_maha      weight 0       not computed" in res.output
    assert "layer_maha        weight 10      computed" in res.output
    res = invoke("components")  # no config: weights unset, the defaults for images / tables
    assert res.exit_code == 0, res.output
    assert "input_knn         weight 0 / 40  computed" in res.output
    assert "feature_maha      weight 0 / 0   not computed" in res.output


def test_train_generate_score_end_to_end(tmp_path, digits):
    run = tmp_path / "run"
    res = invoke("train", "--data", "digits", "--normal-classes", "0", "--out", run, "--epochs", "1", "--quiet",
                 "--set", "model.width=8", "--set", "encoder.epochs=1", "--set", "data.image_size=8",
                 "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "trained" in res.output and (run / "checkpoint.pt").is_file()
    png = tmp_path / "g.png"
    assert invoke("generate", "--run", run, "--n", "16", "--out", png).exit_code == 0 and png.stat().st_size > 0
    np.save(tmp_path / "batch.npy", digits.x[:10, 0] * 255)
    out = tmp_path / "scores.csv"
    res = invoke("score", "--run", run, "--input", tmp_path / "batch.npy", "--out", out, "--method", "encoder",
                 "--batch-size", "3", "--save-reconstructions", tmp_path / "rec", "--quiet")
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["id", "d_score", "residual", "feature_residual", "feature_knn",
                                   "layer_maha", "anomaly_score", "threshold", "is_anomaly"]
    assert len(frame) == 10 and frame.id.tolist() == list(range(10))
    assert (tmp_path / "rec" / "top_anomalies.png").stat().st_size > 0
    # existing output is never overwritten without --force
    res = invoke("score", "--run", run, "--input", tmp_path / "batch.npy", "--out", out)
    assert_one_line_error(res, "already exists")
    assert invoke("score", "--run", run, "--input", tmp_path / "batch.npy", "--out", out, "--force",
                  "--quiet").exit_code == 0


@pytest.mark.parametrize("args, fragment", [
    (("train", "--data", "nowhere.npy"), "data source not found"),
    (("train", "--data", "digits", "--normal-classes", "42"), "normal class '42'"),
    (("train", "--set", "train.lr_d=0"), "train.lr_d"),
    (("train", "--set", "train.bogus=1"), "unknown config key 'train.bogus'"),
    (("train", "--config", "missing.yaml"), "config file not found"),
    (("score", "--run", "no_such_run", "--input", "x.npy", "--out", "s.csv"), "run directory not found"),
    (("evaluate", "--run", "."), "no checkpoint"),
    (("generate", "--run", "no_such_run"), "run directory not found"),
])
def test_errors_are_one_line(tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(invoke(*args), fragment)


def test_debug_shows_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke("--debug", "train", "--data", "nowhere.npy")
    assert res.exit_code != 0 and res.exception is not None
