"""Bad input, interruption and untrusted files: clear errors, nothing half-written, nothing executed."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from anomgan.errors import RunError
from anomgan.run_format import load_run
from cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _error(res, fragment):
    assert res.exit_code != 0, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and fragment in last, res.output
    assert "Traceback" not in res.output


@pytest.fixture(scope="module")
def tab_run(tmp_path_factory):
    """A tiny tabular run on columns a, b, c."""
    from anomgan.runs import train_run

    from conftest import tiny_config

    d = tmp_path_factory.mktemp("tab")
    rng = np.random.default_rng(0)
    pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"]).to_csv(d / "train.csv", index=False)
    cfg = tiny_config(data__source=str(d / "train.csv"), data__normal_classes=None, data__image_size=None)
    train_run(cfg, d / "run")
    return d / "run"


@pytest.mark.parametrize("content, fragment", [
    ("a,b,c\n1,2,x\n", "column 'c' is not numeric"),
    ("a,b,c\n1,2,nan\n", "NaN or inf in column 'c'"),
    ("a,b\n1,2\n", "columns differ from training (missing c)"),
    ("a,b,c,d\n1,2,3,4\n", "unexpected d"),
    ("a,b,c\n", "zero rows"),
    ("", "empty file"),
])
def test_bad_csv_scoring_leaves_no_output(tab_run, tmp_path, content, fragment):
    (tmp_path / "in.csv").write_text(content)
    out = tmp_path / "out.csv"
    _error(invoke("score", "--run", tab_run, "--input", tmp_path / "in.csv", "--out", out), fragment)
    assert not out.exists() and not list(tmp_path.glob(".out.csv*"))


def test_bad_npy_and_images_for_image_run(trained_run, tmp_path):
    out = tmp_path / "o.csv"
    np.save(tmp_path / "wrong.npy", np.zeros((3, 10, 10)))
    _error(invoke("score", "--run", trained_run, "--input", tmp_path / "wrong.npy", "--out", out), "trained on 8x8")
    np.save(tmp_path / "rgb.npy", np.zeros((3, 3, 8, 8)))
    _error(invoke("score", "--run", trained_run, "--input", tmp_path / "rgb.npy", "--out", out), "3 channel(s)")
    np.save(tmp_path / "vec.npy", np.zeros((3, 64)))
    _error(invoke("score", "--run", trained_run, "--input", tmp_path / "vec.npy", "--out", out), "expects images")
    bad = np.zeros((3, 8, 8))
    bad[2, 1, 1] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    _error(invoke("score", "--run", trained_run, "--input", tmp_path / "inf.npy", "--out", out), "non-finite")
    folder = tmp_path / "imgs"
    folder.mkdir()
    from PIL import Image

    Image.new("L", (8, 8), 10).save(folder / "ok.png")
    (folder / "zz_corrupt.png").write_bytes(b"garbage")
    _error(invoke("score", "--run", trained_run, "--input", folder, "--out", out), "zz_corrupt.png")
    assert not out.exists()


def test_out_directory_missing_or_unwritable(trained_run, tmp_path, digits):
    np.save(tmp_path / "x.npy", digits.x[:4])
    _error(invoke("score", "--run", trained_run, "--input", tmp_path / "x.npy", "--out", tmp_path / "no" / "s.csv"),
           "output directory does not exist")
    if os.geteuid() != 0:  # root ignores permissions
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        _error(invoke("score", "--run", trained_run, "--input", tmp_path / "x.npy", "--out", ro / "s.csv"),
               "not writable")


def test_not_a_run_truncated_and_foreign_checkpoints(trained_run, tmp_path):
    import shutil

    _error(invoke("evaluate", "--run", tmp_path), "no checkpoint")
    broken = tmp_path / "broken"
    shutil.copytree(trained_run, broken)
    data = (broken / "checkpoint.pt").read_bytes()
    (broken / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    _error(invoke("evaluate", "--run", broken), "corrupt or truncated checkpoint")
    other = tmp_path / "other"
    shutil.copytree(trained_run, other)
    ckpt = torch.load(other / "checkpoint.pt", weights_only=True)
    args = ckpt["scorer"]["spec"]["model_args"]
    args["width"] *= 2
    torch.save(ckpt, other / "checkpoint.pt")
    _error(invoke("evaluate", "--run", other), "does not match its architecture")


def test_run_of_an_older_format_names_its_version(trained_run, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    torch.save({"format": "anomgan-checkpoint", "version": 1, "phase": "done"}, old / "checkpoint.pt")
    _error(invoke("evaluate", "--run", old), "run format version 1 is not supported")
    _error(invoke("score", "--run", old, "--input", "digits", "--out", tmp_path / "s.csv"), "version 1")
    assert not (tmp_path / "s.csv").exists()


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp/anomgan_pwned_marker")


def test_pickle_payload_in_checkpoint_is_refused_without_running(trained_run, tmp_path):
    import shutil

    MARKER.unlink(missing_ok=True)
    evil = tmp_path / "evil"
    shutil.copytree(trained_run, evil)
    ckpt = torch.load(evil / "checkpoint.pt", weights_only=True)
    ckpt["payload"] = _Payload()
    torch.save(ckpt, evil / "checkpoint.pt", pickle_protocol=2)
    with pytest.raises(RunError, match="refused to load"):
        load_run(evil)
    _error(invoke("evaluate", "--run", evil), "refused to load")
    assert not MARKER.exists()


def test_evaluate_refuses_single_class_test(tab_run):
    _error(invoke("evaluate", "--run", tab_run, "--out", tab_run / "r.csv"), "ROC-AUC is undefined")
    assert not (tab_run / "r.csv").exists()


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=kw.get("cwd"))


TRAIN_ARGS = ["train", "--data", "digits", "--normal-classes", "0", "--quiet", "--device", "cpu",
              "--set", "model.width=8", "--set", "model.z_dim=8", "--set", "train.batch_size=16",
              "--set", "encoder.epochs=2", "--set", "data.image_size=8"]


def _wait_for_epoch(run: Path, epoch: int, proc, timeout=120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (run / "metrics.csv").exists():
            try:
                if len(pd.read_csv(run / "metrics.csv")) >= epoch:
                    return
            except (pd.errors.EmptyDataError, pd.errors.ParserError):
                pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("training did not reach the epoch in time")


def test_kill_9_then_resume_completes_without_gaps(tmp_path):
    run = tmp_path / "run"
    proc = _cli(*TRAIN_ARGS, "--out", run, "--epochs", "30")
    _wait_for_epoch(run, 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = load_run(run).training  # intact despite the kill
    assert 3 <= ckpt["epoch"] < 30
    res = _cli(*TRAIN_ARGS, "--out", run, "--epochs", "30", "--resume")
    out, err = res.communicate(timeout=300)
    assert res.returncode == 0, err
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics[metrics.phase == "gan"].epoch.tolist() == list(range(1, 31))
    assert metrics[metrics.phase == "encoder"].epoch.tolist() == [1, 2]
    assert load_run(run).phase == "done"


def test_sigint_saves_and_exits_cleanly(tmp_path):
    run = tmp_path / "run"
    proc = _cli(*TRAIN_ARGS, "--out", run, "--epochs", "200")
    _wait_for_epoch(run, 2, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Interrupted" in err and "--resume" in err and "Traceback" not in err
    assert load_run(run).training["epoch"] >= 2


def test_score_killed_midway_leaves_no_output(trained_run, tmp_path, digits):
    np.save(tmp_path / "many.npy", np.tile(digits.x[:, 0], (4, 1, 1)))
    out = tmp_path / "scores.csv"
    proc = _cli("score", "--run", trained_run, "--input", tmp_path / "many.npy", "--out", out, "--method",
                "iterative", "--steps", "200", "--batch-size", "16", "--quiet", "--device", "cpu")
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.stat().st_size > 0 for p in tmp_path.glob(".scores.csv.*.tmp")):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # mid-way: some rows already streamed to the temporary file
    proc.wait()
    assert not out.exists()
