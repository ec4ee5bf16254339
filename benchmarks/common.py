"""Helpers the benchmark scripts share: timing, the machine label their CSVs carry, a run refitted with other score
settings, the ``calibrated`` combination of component values, the file those values are saved in, and the
component weights they are recombined with."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import torch

from anomgan.config import build_config
from anomgan.training.fit import rescore_with

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def machine_label() -> str:
    """Architecture, the vector instructions torch dispatches to, torch's thread count and version: what a CPU
    timing was measured on. The instructions matter: on two 2-core machines of this project the same GAN step took
    431 ms (train-profile-r10.csv, bf16 10x slower than float32) and 146 ms (train-profile-r14.csv, AVX512)."""
    isa = torch.backends.cpu.get_cpu_capability()
    return f"{platform.machine()} {isa} {torch.get_num_threads()} threads, torch {torch.__version__}"


def refit_score(det, ds, split, overrides: list) -> None:
    """Give the loaded run ``det`` a config with the score settings ``overrides`` (KEY=VALUE) and a scorer of its
    networks built with them (``rescore_with``: bank, Gaussians and calibration from the run's own ``split`` of
    ``ds``), as a fresh run with those settings would build it."""
    det.config_ = build_config(base=det.config_.to_dict(), overrides=list(overrides))
    det.scorer_ = rescore_with(det.scorer_, det.config_, ds.x[split.train], ds.x[split.val])


def calibration_scale(v: float) -> float:
    """A standardiser's scale, 1 where the calibration values do not spread."""
    return float(v) if v > 1e-12 else 1.0


def mean_std(calib: np.ndarray) -> tuple[float, float]:
    """The ``calibrated`` combination's location and scale of one component: mean and std of its calib values."""
    return calib.mean(), calibration_scale(calib.std())


def combine(values: dict, weights: dict, standardise=mean_std) -> dict:
    """The weighted mean of each component standardised by ``standardise`` of its ``values["calib"]``, for every
    set of ``values`` (``{set: {component: array}}``). With ``mean_std`` this is the scorer's ``calibrated``
    combination, its ``anomaly_score``."""
    out: dict = {}
    for c, w in weights.items():
        loc, scale = standardise(values["calib"][c])
        for name, per_set in values.items():
            out[name] = out.get(name, 0.0) + w * (per_set[c] - loc) / scale
    total = sum(weights.values())
    return {name: v / total for name, v in out.items()}


def save_values(path: Path, values: dict, targets: dict) -> None:
    """One run's component values per set and each labelled set's targets, as ``<set>.<component>`` and
    ``<set>.target`` arrays of one ``.npz`` (``score_levers.py --values``)."""
    np.savez(path, **{f"{k}.{c}": v for k, vals in values.items() for c, v in vals.items()},
             **{f"{k}.target": y for k, y in targets.items() if y is not None})


def read_values(path: Path) -> tuple[dict, dict]:
    """``save_values``' file back: (``{set: {component: float64 array}}``, ``{set: targets}``)."""
    z = np.load(path)
    values: dict = {}
    targets = {}
    for key in z.files:
        name, _, c = key.partition(".")
        if c == "target":
            targets[name] = z[key]
        else:
            values.setdefault(name, {})[c] = z[key].astype(np.float64)
    return values, targets


def parse_weights(text: str) -> dict:
    """``"d_score=0.5,feature_knn=5"`` as ``{component: weight}``."""
    return {c: float(w) for c, w in (pair.split("=") for pair in text.split(","))}


def mnist_weights() -> str:
    """``configs/mnist.yaml``'s non-zero score weights in ``parse_weights``' format: the default ``--weights`` of
    the scripts that recombine saved component values."""
    weights = build_config(ROOT / "configs" / "mnist.yaml").score.weights
    return ",".join(f"{c}={w:g}" for c, w in weights.items() if w > 0)


def read_weighted_values(path: Path, weights: dict) -> tuple[dict, dict]:
    """``read_values`` of ``path``, refusing a file that lacks a component of ``weights``."""
    values, targets = read_values(path)
    missing = set(weights) - set(values["calib"])
    if missing:
        raise SystemExit(f"{path}: no values of {', '.join(sorted(missing))}")
    return values, targets
