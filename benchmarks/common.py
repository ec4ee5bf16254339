"""Helpers the benchmark scripts share: timing and the machine label their CSVs carry."""

from __future__ import annotations

import platform
import time

import numpy as np
import torch


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
