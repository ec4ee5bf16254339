"""torchrun with 2 CPU processes (gloo) trains a complete, consistent run directory."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from anomgan.run_format import load_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("extra", [[], ["--set", "train.contrastive=1"]], ids=["plain", "contrastive"])
def test_torchrun_two_processes_gloo(tmp_path, extra):
    run = tmp_path / "ddp"
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", str(ROOT / "cli.py"), "train", "--data", "digits",
           "--normal-classes", "0", "--out", str(run), "--epochs", "2", "--quiet", "--device", "cpu",
           "--set", "model.width=8", "--set", "model.z_dim=8", "--set", "encoder.epochs=1",
           "--set", "train.loss=wgan-gp", "--set", "train.batch_size=16", *extra]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                                "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    saved = load_run(run)
    assert saved.done and saved.training["epoch"] == 2
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics[metrics.phase == "gan"].epoch.tolist() == [1, 2]  # rank 0 alone wrote, once per epoch
    assert (run / "samples.png").is_file()
    assert '"world_size": 2' in (run / "run.json").read_text()
    # the contrastive head, wrapped like D, is checkpointed
    assert (saved.training.get("aux_names") == ["projection"]) == bool(extra)
    # the run scores like any other
    from anomgan import AnoGAN
    from anomgan.data import load_source

    det = AnoGAN.load(run, device="cpu")
    scores = det.anomaly_score(load_source("digits").x[:8], "encoder")
    assert scores.shape == (8,) and all(map(float.__instancecheck__, scores.tolist()))
