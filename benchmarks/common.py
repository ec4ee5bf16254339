"""Helpers the benchmark scripts share: timing, the machine label their CSVs carry, a run refitted with other score
settings."""

from __future__ import annotations

import platform
import time

import numpy as np
import torch

from anomgan.config import build_config
from anomgan.training.fit import rescore_with


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def machine_label() -> str:
    """Architecture, torch's thread count and version: what a CPU timing was measured on."""
    return f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}"


def refit_score(det, ds, split, overrides: list) -> None:
    """Give the loaded run ``det`` a config with the score settings ``overrides`` (KEY=VALUE) and a scorer of its
    networks built with them (``rescore_with``: bank, Gaussians and calibration from the run's own ``split`` of
    ``ds``), as a fresh run with those settings would build it."""
    det.config_ = build_config(base=det.config_.to_dict(), overrides=list(overrides))
    det.scorer_ = rescore_with(det.scorer_, det.config_, ds.x[split.train], ds.x[split.val])
