"""Shared fixtures: tiny configs and one tiny trained digits run reused across tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anomgan.config import build_config

TINY = {
    "data.source": "digits", "data.normal_classes": [0], "data.image_size": 8,
    "model.z_dim": 8, "model.width": 8,
    "train.epochs": 2, "train.batch_size": 32, "train.device": "cpu", "train.sample_every": 1,
    "encoder.epochs": 2, "score.refine_steps": 3, "score.steps": 20, "score.batch_size": 64,
}


def tiny_config(**overrides):
    flags = dict(TINY)
    flags.update({k.replace("__", "."): v for k, v in overrides.items()})
    return build_config(flags=flags)


@pytest.fixture
def tiny_cfg():
    return tiny_config()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A digits run (normal = 0) trained long enough that 0s score below other digits and noise."""
    from anomgan.runs import train_run

    out = tmp_path_factory.mktemp("runs") / "d0"
    cfg = tiny_config(train__epochs=40, encoder__epochs=40, model__width=16, model__z_dim=16)
    train_run(cfg, out)
    return out


@pytest.fixture(scope="session")
def digits():
    from anomgan.data import load_source

    return load_source("digits")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
