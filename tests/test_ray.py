"""--engine ray: the same scores, ids and order as --engine local, one output file, on a local Ray (loopback only)."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ray")

from test_cli import assert_one_line_error, invoke  # noqa: E402

from anomgan.ray_engine import RAY_ENV  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def same_scores(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert a["id"].astype(str).tolist() == b["id"].astype(str).tolist()  # same ids, same order
    # equal within 1e-6 (relative; float32 convolutions round by the batch's shape: <= 8e-8 measured)
    np.testing.assert_allclose(a["anomaly_score"], b["anomaly_score"], rtol=1e-6, atol=1e-6)
    assert (a["is_anomaly"] == b["is_anomaly"]).all()


def test_ray_npy_to_csv_equals_local(trained_run, digits, tmp_path):
    np.save(tmp_path / "x.npy", digits.x[:45])
    local = invoke("score", "--run", trained_run, "--input", tmp_path / "x.npy", "--out", tmp_path / "l.csv",
                   "--method", "encoder", "--quiet", "--device", "cpu")
    ray = invoke("score", "--run", trained_run, "--input", tmp_path / "x.npy", "--out", tmp_path / "r.csv",
                 "--engine", "ray", "--workers", "2", "--batch-size", "4", "--quiet")  # many small blocks
    assert local.exit_code == 0 and ray.exit_code == 0, local.output + ray.output
    same_scores(pd.read_csv(tmp_path / "r.csv"), pd.read_csv(tmp_path / "l.csv"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.csv", "r.csv", "x.npy"]  # one file, no parts folder


def test_ray_image_folder_keeps_ids_and_labels(trained_run, digits, tmp_path):
    from PIL import Image

    for i in range(12):
        cls = tmp_path / "in" / ("zero" if str(digits.y[i]) == "0" else "other")
        cls.mkdir(parents=True, exist_ok=True)
        Image.fromarray((digits.x[i, 0] * 255).astype(np.uint8)).save(cls / f"{i:02d}.png")
    for engine, out in (("local", "l.csv"), ("ray", "r.csv")):
        res = invoke("score", "--run", trained_run, "--input", tmp_path / "in", "--out", tmp_path / out, "--engine",
                     engine, "--method", "encoder", "--batch-size", "5", "--quiet", "--device", "cpu")
        assert res.exit_code == 0, res.output
    r, loc = pd.read_csv(tmp_path / "r.csv"), pd.read_csv(tmp_path / "l.csv")
    same_scores(r, loc)
    assert set(r["label"]) == {"zero", "other"} and r["id"].str.endswith(".png").all()


@pytest.fixture
def ray_head(tmp_path):
    """`ray start --head` on 127.0.0.1 at a free port, stopped by `ray stop` afterwards. Its output goes to a file:
    the daemons it leaves running would hold a captured pipe open forever."""
    ray_cli = Path(sys.executable).parent / "ray"
    if not ray_cli.exists():
        ray_cli = shutil.which("ray")
    env = {**os.environ, **RAY_ENV}
    port = free_port()
    subprocess.run([str(ray_cli), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                    "--num-cpus", "3", "--include-dashboard", "false", "--disable-usage-stats"],
                   env=env, check=True, stdout=open(tmp_path / "ray-start.log", "w"), stderr=subprocess.STDOUT,
                   timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray_cli), "stop", "--force"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120)


def anomgan_process(*args) -> subprocess.CompletedProcess:
    """The CLI as its own process, as a user runs it against a cluster (a driver joins once per process)."""
    return subprocess.run([sys.executable, "-m", "anomgan.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **RAY_ENV})


def test_ray_cluster_parquet_to_parquet_equals_local(tmp_path, ray_head):
    from anomgan.runs import train_run

    from conftest import tiny_config

    rng = np.random.default_rng(0)
    cols = [f"f{i}" for i in range(5)]
    pd.DataFrame(rng.normal(size=(200, 5)), columns=cols).to_csv(tmp_path / "train.csv", index=False)
    cfg = tiny_config(data__source=str(tmp_path / "train.csv"), data__normal_classes=None, data__image_size=None)
    train_run(cfg, tmp_path / "run")
    test = pd.DataFrame(np.vstack([rng.normal(size=(40, 5)), rng.normal(4, 1, size=(13, 5))]), columns=cols)
    test.to_parquet(tmp_path / "in.parquet")
    local = invoke("score", "--run", tmp_path / "run", "--input", tmp_path / "in.parquet", "--out",
                   tmp_path / "l.parquet", "--method", "encoder", "--quiet", "--device", "cpu")
    ray = anomgan_process("score", "--run", tmp_path / "run", "--input", tmp_path / "in.parquet", "--out",
                          tmp_path / "r.parquet", "--engine", "ray", "--address", ray_head, "--workers", "2",
                          "--batch-size", "6", "--quiet")
    assert local.exit_code == 0 and ray.returncode == 0, local.output + ray.stderr
    same_scores(pd.read_parquet(tmp_path / "r.parquet"), pd.read_parquet(tmp_path / "l.parquet"))
    test.drop(columns=["f3"]).to_parquet(tmp_path / "bad.parquet")
    res = anomgan_process("score", "--run", tmp_path / "run", "--input", tmp_path / "bad.parquet", "--out",
                          tmp_path / "b.parquet", "--engine", "ray", "--address", ray_head, "--quiet")
    assert res.returncode != 0 and res.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert "missing f3" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "b.parquet").exists()


def test_ray_bad_requests_are_one_line(trained_run, digits, tmp_path):
    np.save(tmp_path / "x.npy", digits.x[:5])
    res = invoke("score", "--run", trained_run, "--input", tmp_path / "x.npy", "--out", tmp_path / "a.csv",
                 "--engine", "ray", "--address", f"127.0.0.1:{free_port()}", "--quiet")
    assert_one_line_error(res, "cannot reach a Ray cluster")
    res = invoke("score", "--run", trained_run, "--input", tmp_path / "x.npy", "--out", tmp_path / "a.csv",
                 "--engine", "ray", "--save-maps", tmp_path / "m")
    assert_one_line_error(res, "needs --engine local")
    assert not (tmp_path / "a.csv").exists()
