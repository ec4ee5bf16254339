"""Batches scored side by side on threads: order, laziness, errors, and the same scores as one stream."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from anomgan import AnoGAN
from anomgan.scoring.parallel import ordered_map, scoring_threads, shared_threads, split_and_score, threads_per_batch


def test_ordered_map_keeps_the_order_and_reads_at_most_two_per_worker_ahead():
    read = []

    def items():
        for i in range(20):
            read.append(i)
            yield i

    def slow_for_even(i):
        time.sleep(0.02 if i % 2 == 0 else 0.0)  # later items finish first
        return i * i, threading.current_thread().name

    results = ordered_map(slow_for_even, items(), workers=2)
    first = next(results)
    assert first[0] == 0 and len(read) <= 4  # lazily: 2 x workers in flight, not the whole stream
    rest = list(results)
    assert [r[0] for r in [first, *rest]] == [i * i for i in range(20)]
    assert {r[1] for r in [first, *rest]} <= {f"anomgan-score_{k}" for k in range(2)}


def test_ordered_map_raises_at_the_failing_item_and_runs_inline_for_one_worker():
    def fails_at_3(i):
        if i == 3:
            raise ValueError("item 3")
        return i

    got = []
    with pytest.raises(ValueError, match="item 3"):
        for r in ordered_map(fails_at_3, range(10), workers=2):
            got.append(r)
    assert got == [0, 1, 2]
    names = list(ordered_map(lambda _: threading.current_thread().name, range(3), workers=1))
    assert names == [threading.current_thread().name] * 3


def test_split_and_score_gives_each_input_batch_its_sub_batches():
    batches = [np.arange(5), np.arange(0), np.arange(3)]
    got = list(split_and_score(batches, np.asarray, lambda x: x.tolist(), batch_size=2, workers=2))
    assert got == [[[0, 1], [2, 3], [4]], [[0, 1], [2]]]  # the empty batch yields nothing


def test_torch_threads_are_shared_out_and_restored():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        assert scoring_threads("cpu") == 4 and scoring_threads("cpu", setting=1) == 1
        assert scoring_threads("meta") == 1  # an accelerator: one batch at a time, its own parallelism
        assert scoring_threads("cpu", sample_values=3 * 256 * 256) == 1  # large images: one batch at a time
        assert scoring_threads("cpu", setting=2, sample_values=3 * 256 * 256) == 2  # unless set
        assert threads_per_batch(2) == 2 and threads_per_batch(4) == 1 and threads_per_batch(1) == 0
        with shared_threads(2) as init:
            seen = list(ordered_map(lambda _: torch.get_num_threads(), range(4), workers=2, initializer=init))
            assert seen == [2, 2, 2, 2]  # each worker at its share
            assert torch.get_num_threads() == 4  # the caller keeps its own
        assert torch.get_num_threads() == 4
        with shared_threads(1) as init:
            assert init is None and torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_scores_are_the_same_on_one_or_two_streams(trained_run, digits, monkeypatch):
    det = AnoGAN.load(trained_run, device="cpu")
    x = digits.x[:150]
    before = torch.get_num_threads()
    threads_seen = set()
    score = det.scorer_.score

    def spy(*args, **kwargs):
        threads_seen.add((threading.current_thread().name, torch.get_num_threads()))
        return score(*args, **kwargs)

    monkeypatch.setattr(det.scorer_, "score", spy)
    try:
        torch.set_num_threads(1)
        one = next(det.iter_scores([x], method="encoder", batch_size=32))
        assert threads_seen == {(threading.current_thread().name, 1)}
        torch.set_num_threads(2)
        threads_seen.clear()
        stream = det.iter_scores([x, x[:40]], method="encoder", batch_size=32)
        two = next(stream)
        assert torch.get_num_threads() == 2  # between two batches the caller keeps both threads
        list(stream)
        assert threads_seen and all(n.startswith("anomgan-score") and k == 1 for n, k in threads_seen)
        assert torch.get_num_threads() == 2  # and after the stream
        threads_seen.clear()
        det.config_.score.parallel_batches = 1  # off: one batch at a time on both threads
        next(det.iter_scores([x], method="encoder", batch_size=32))
        assert threads_seen == {(threading.current_thread().name, 2)}
    finally:
        torch.set_num_threads(before)
    assert np.allclose(two["anomaly_score"], one["anomaly_score"], rtol=1e-5, atol=1e-6)
    assert np.array_equal(two["is_anomaly"], one["is_anomaly"])
