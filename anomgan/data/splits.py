"""Deterministic splits: normal-train, normal-validation, test (normal test + every anomalous class)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from anomgan.data.sources import Dataset
from anomgan.errors import ConfigError, DataError


@dataclass
class Splits:
    train: np.ndarray  # indices of normal-train samples
    val: np.ndarray  # indices of normal-validation samples (calibration, model selection)
    test: np.ndarray  # indices of test samples: held-out normal + anomalous
    normal_classes: list  # as strings

    def test_targets(self, dataset: Dataset) -> np.ndarray:
        """Binary targets of the test split: 1 = anomaly, 0 = normal."""
        if dataset.y is None:
            return np.zeros(len(self.test), dtype=np.int64)
        return (~np.isin(dataset.y[self.test], self.normal_classes)).astype(np.int64)


def resolve_normal_classes(dataset: Dataset, normal_classes: Optional[list]) -> list[str]:
    if dataset.y is None:
        return []
    if not normal_classes:
        classes = ", ".join(dataset.classes[:20])
        raise ConfigError(f"{dataset.name} is labelled: choose the normal classes with data.normal_classes "
                          f"(classes: {classes})",
                          cli=f"{dataset.name} is labelled: choose the normal classes with --normal-classes "
                              f"(classes: {classes})")
    wanted = [str(c) for c in normal_classes]
    known = set(dataset.classes)
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise ConfigError(
            f"normal class '{unknown[0]}' not in {dataset.name} (classes: {', '.join(dataset.classes[:20])})"
        )
    if set(wanted) == known:
        raise ConfigError(f"every class of {dataset.name} is marked normal: nothing is left to test as anomalous")
    return wanted


def make_splits(dataset: Dataset, normal_classes: Optional[list], val_fraction: float, test_fraction: float,
                seed: int, max_train: Optional[int] = None) -> Splits:
    """Split by seed. Anomalous samples never enter train/val; the official test split is used when present."""
    rng = np.random.default_rng(seed)
    normal = resolve_normal_classes(dataset, normal_classes)
    n = len(dataset)
    is_normal = np.ones(n, bool) if dataset.y is None else np.isin(dataset.y, normal)
    if dataset.official_test is not None:
        test = np.flatnonzero(dataset.official_test)
        pool = np.flatnonzero(is_normal & ~dataset.official_test)
    else:
        normal_idx = rng.permutation(np.flatnonzero(is_normal))
        n_test = int(round(test_fraction * len(normal_idx))) if dataset.y is not None else 0
        test = np.sort(np.concatenate([normal_idx[:n_test], np.flatnonzero(~is_normal)]))
        pool = normal_idx[n_test:]
    pool = rng.permutation(pool)
    n_val = max(1, int(round(val_fraction * len(pool))))
    val, train = np.sort(pool[:n_val]), np.sort(pool[n_val:])
    if max_train is not None and len(train) > max_train:
        train = np.sort(rng.choice(train, size=max_train, replace=False))
    if len(train) < 2:
        raise DataError(f"{dataset.name}: only {len(train)} normal training samples after the splits; need at least 2")
    return Splits(train=train, val=val, test=test, normal_classes=normal)
