"""Batches scored on several CPU threads at once, each on its share of the intra-op threads, results in order.

Small networks keep a CPU's cores busier as several one-thread streams than as one stream on all threads: on a
2-core CPU, `anomgan score` on 20,000 MNIST images (width 16) ran 14 % faster through torch and 22 % faster
through onnxruntime that way (docs/tuning.md, round six; reports/benchmarks/cli-score-speed-parallel.csv). Both
engines release the GIL inside their kernels, so plain threads suffice, and at most ``2 x workers`` batches are
in flight, so memory stays bounded on streams.

``scoring_threads`` is the one rule for how many streams a backend gets; ``ordered_map`` runs them, and
``split_and_score`` is the streaming loop both scoring engines share (torch's ``AnoGAN.iter_scores`` and
``OnnxDetector.iter_scores``).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


SMALL_SAMPLE = 3 * 64 * 64  # input values per sample (a 64-px RGB image) up to which 0 scores batches side by side


def scoring_threads(device: torch.device | str = "cpu", setting: int = 0, sample_values: int = 0) -> int:
    """Batches scored side by side on ``device`` (``score.parallel_batches``): on a CPU the setting, or when 0
    torch's intra-op thread count (so ``torch.set_num_threads`` and ``OMP_NUM_THREADS`` bound it, and a Ray
    worker with one CPU scores one batch at a time) for samples of up to ``SMALL_SAMPLE`` values, else 1. Larger
    images keep the cores busy within one batch, and each batch in flight holds its activations. 1 on an
    accelerator, which has parallelism of its own."""
    if torch.device(device).type != "cpu":
        return 1
    if setting > 0:
        return setting
    return max(1, torch.get_num_threads()) if sample_values <= SMALL_SAMPLE else 1


def threads_per_batch(workers: int) -> int:
    """Each side-by-side batch's share of torch's threads; 0 (the engine's own default) for one batch at a time."""
    return max(1, torch.get_num_threads() // workers) if workers > 1 else 0


@contextmanager
def shared_threads(workers: int) -> Iterator[Callable[[], None] | None]:
    """While ``workers`` > 1 batches run side by side: yields the initializer that puts each worker thread at its
    share of torch's threads (``ordered_map``'s ``initializer``); afterwards torch's count is what it was. The
    calling thread keeps its own count throughout (OpenMP's thread count is per thread), so a caller's torch work
    between two scored batches runs on all threads. ``None`` for one batch at a time."""
    if workers <= 1:
        yield None
        return
    before, share = torch.get_num_threads(), threads_per_batch(workers)
    try:
        yield lambda: torch.set_num_threads(share)
    finally:
        torch.set_num_threads(before)  # the default that threads started later inherit


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int,
                initializer: Callable[[], None] | None = None) -> Iterator[R]:
    """``fn(item)`` for each item, in the items' order, on ``workers`` threads (the caller's own when 1), each
    started by ``initializer``.

    Items are read lazily, at most ``2 * workers`` ahead of the results handed out; an exception in ``fn`` is
    raised here, at that item's turn.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="anomgan-score", initializer=initializer) as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:  # the consumer stopped early or an item failed: drop what has not started
                f.cancel()


def split_and_score(batches: Iterable[Any], prepare: Callable[[Any], Sequence], score: Callable[[Sequence], R],
                    batch_size: int, workers: int, initializer: Callable[[], None] | None = None
                    ) -> Iterator[list[R]]:
    """Per input batch (in order), the list of ``score`` results of its sub-batches of at most ``batch_size``.

    ``prepare`` turns an input batch into an indexable array (checked, in the engine's type); empty batches
    yield nothing. Sub-batches of consecutive input batches are scored side by side on ``workers`` threads.
    """

    def parts():
        for raw in batches:
            x = prepare(raw)
            for i in range(0, len(x), batch_size):
                yield x[i:i + batch_size], i + batch_size >= len(x)

    def run(part):
        return score(part[0]), part[1]

    done: list = []
    for result, ends_batch in ordered_map(run, parts(), workers, initializer):
        done.append(result)
        if ends_batch:
            yield done
            done = []
