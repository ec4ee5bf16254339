"""``anomgan score --engine ray``: Ray Data reads the input, a pool of actors scores it, the driver writes one table.

- Without an address a local Ray starts (and stops) on loopback; with ``address`` the driver joins that cluster.
- The detector travels through Ray's object store (the run's scorer as plain data, or the ONNX file's bytes):
  workers need no copy of the run directory. The input must be readable by every node (a path on shared
  storage), as for any Ray Data read.
- Each actor builds the detector once and scores whole batches; scores do not depend on how rows are grouped into
  batches (exact kNN, per-sample inversion), so they equal ``--engine local``.
- Order is preserved and the driver writes one CSV or Parquet file (not Ray's folder of parts), atomically.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from anomgan.errors import AnomganError, ConfigError, DataError, OutputError

# Keep Ray on loopback (else it swaps 127.0.0.1 for the machine's address) and token-free (a token left by an
# earlier ray.init breaks later drivers); set before ray is imported, also in the workers it starts.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
CONNECT_TIMEOUT = 5.0  # seconds to reach --address before giving up with one line


def _import_ray():
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    from anomgan.io import require

    return require("ray", "--engine ray", "ray")


@dataclass
class _Input:
    kind: str  # folder | npy | table
    path: Path


def _plan(input_path: str, pre, label_column: str) -> _Input:
    """Check the input on the driver (one-line errors before any worker starts), with the local engine's readers:
    an array's rank, a table's first rows (columns, types)."""
    from anomgan.data.sources import read_csv_table
    from anomgan.data.stream import check_rank, open_npy, table_head

    p = Path(input_path)
    if not p.exists():
        raise DataError(f"input not found: {input_path}")
    if p.is_dir():
        if pre.kind != "image":
            raise DataError(f"{p}: the run was trained on tabular data, an image folder cannot be scored with it")
        return _Input("folder", p)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        arr = open_npy(p)
        if len(arr) == 0:
            raise DataError(f"{p}: no samples")
        check_rank(arr, pre, p)
        return _Input("npy", p)
    if suffix in (".csv", ".parquet"):
        if pre.kind != "tabular":
            raise DataError(f"{p}: the run was trained on images, a table cannot be scored with it")
        read_csv_table(table_head(p), str(p), label_column, pre.feature_names)
        return _Input("table", p)
    raise DataError(f"{p}: --engine ray reads .npy, .csv, .parquet or an image folder, not '{suffix}'")


class _Scorer:
    """A Ray actor: builds the detector once from the object store, then scores batches."""

    def __init__(self, detector_ref, backend: str, kind: str, where: str, label_column: str, threads: int):
        import torch

        torch.set_num_threads(max(1, threads))
        if backend == "onnx":
            from anomgan.export import OnnxDetector

            self.det = OnnxDetector(model_bytes=detector_ref)
        else:
            self.det = detector_ref  # an AnoGAN, unpickled from its scorer's plain data
        self.backend, self.kind, self.where, self.label_column = backend, kind, where, label_column
        self.pre = self.det.preprocessor_

    def __call__(self, batch):
        import pandas as pd

        from anomgan.data.sources import as_images, as_table, read_csv_table
        from anomgan.data.stream import Chunk, read_image_files
        from anomgan.runs import score_frame

        if self.kind == "folder":
            x, sizes = read_image_files([Path(p) for p in batch["path"]], self.pre)
            labels = None if "label" not in batch else np.asarray(batch["label"]).astype(str)
            chunk = Chunk(ids=np.asarray(batch["id"]).astype(str), x=x, labels=labels, sizes=sizes)
        elif self.kind == "npy":
            raw = np.stack(list(batch["data"]))
            x = as_table(raw, self.where) if self.pre.kind == "tabular" else as_images(raw, self.where)
            chunk = Chunk(ids=np.zeros(len(x), dtype=str), x=x)
        else:
            x, y, _ = read_csv_table(pd.DataFrame(batch), self.where, self.label_column, self.pre.feature_names)
            chunk = Chunk(ids=np.zeros(len(x), dtype=str), x=x, labels=None if y is None else y.astype(str))
        if self.backend == "onnx":
            res = next(self.det.iter_scores([chunk.x]))
        else:
            res = next(self.det.iter_scores([chunk.x], "encoder", batch_size=len(chunk.x)))
        return score_frame(chunk, res)


def _reachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"address must be HOST:PORT, got {address!r}",
                          cli=f"--address must be HOST:PORT, got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        why = exc.strerror or exc
        raise OutputError(f"cannot reach a Ray cluster at {address} ({why})",
                          cli=f"--address {address}: cannot reach a Ray cluster there ({why})") from None


def _cause(exc: BaseException) -> Optional[AnomganError]:
    """The library error behind a Ray task error, if any (its message is then the one line to show)."""
    seen = exc
    for _ in range(5):
        if isinstance(seen, AnomganError) and type(seen).__module__ == "anomgan.errors":
            return seen
        seen = getattr(seen, "cause", None) or seen.__cause__
        if seen is None:
            return None
    return None


def score_with_ray(run: Path, input_path: str, out: Path, address: Optional[str] = None, workers: int = 1,
                   batch_size: Optional[int] = None, force: bool = False, verbose: bool = False,
                   cpus_per_worker: float = 1.0):
    """Score ``input_path`` with a pool of ``workers`` Ray actors into one table at ``out``; the ScoreResult of
    the local engine. The encoder path (the one that scales: no per-sample optimisation)."""
    from anomgan.io import check_output, check_score_table, score_table_writer
    from anomgan.runs import ScoreResult, scoring_setup

    out = check_output(out, force, "output file")
    check_score_table(out)
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}", cli=f"--workers must be >= 1, got {workers}")
    if address is not None:
        _reachable(address)
    setup = scoring_setup(Path(run), "cpu")
    plan = _plan(input_path, setup.preprocessor, setup.label_column)
    bs = batch_size or setup.batch_size
    _import_ray()
    import ray
    import ray.data

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose, logging_level="ERROR",
                 **({} if address else {"num_cpus": max(2, int(np.ceil(workers * cpus_per_worker)) + 1)}))
    try:
        if not verbose:
            import logging

            logging.getLogger("ray.data").setLevel(logging.ERROR)
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.op_resource_reservation_enabled = False  # its per-operator budget starved the read behind 2 actors
        ctx.enable_progress_bars = verbose
        ds = _dataset(ray, plan, setup)
        if setup.backend == "onnx":
            detector_ref = Path(run).read_bytes()
        else:
            detector_ref = setup.detector
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # max_restarts: Ray's own deprecation notice
            scored = ds.map_batches(
                _Scorer, batch_size=bs, batch_format="numpy" if plan.kind != "table" else "pandas",
                fn_constructor_args=(detector_ref, setup.backend, plan.kind, str(plan.path), setup.label_column,
                                     max(1, int(cpus_per_worker))),
                compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus_per_worker,
                max_restarts=0)  # a failed actor is an error to report, not to retry from stale arguments
        n = flagged = 0
        threshold = float("nan")
        start = time.perf_counter()
        with score_table_writer(out) as write, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*minimum number of concurrent actors.*")  # small inputs
            for frame in scored.iter_batches(batch_size=None, batch_format="pandas"):
                if plan.kind != "folder":  # row ids count from the input's first row, as the local engine's
                    frame["id"] = np.arange(n, n + len(frame)).astype(str)
                write(frame)
                n += len(frame)
                flagged += int(frame["is_anomaly"].sum())
                threshold = float(frame["threshold"].iloc[0]) if len(frame) else threshold
        seconds = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - errors raised inside workers arrive wrapped by Ray
        cause = _cause(exc)
        if cause is not None:
            raise type(cause)(str(cause), cli=cause.cli_message) from None
        if isinstance(exc, AnomganError):
            raise
        raise OutputError(f"Ray scoring failed: {str(exc).strip().splitlines()[0][:200]}") from None
    finally:
        if started:
            ray.shutdown()
    if n == 0:
        raise DataError(f"{input_path}: no samples")
    return ScoreResult(out, n, flagged, threshold, seconds)


def _dataset(ray, plan: _Input, setup):
    if plan.kind == "folder":
        from anomgan.data.sources import list_image_folder

        files, labels = list_image_folder(plan.path)
        items = [{"id": str(f.relative_to(plan.path)), "path": str(f.resolve()),
                  **({"label": labels[i]} if labels is not None else {})} for i, f in enumerate(files)]
        return ray.data.from_items(items)
    if plan.kind == "npy":
        return ray.data.read_numpy(str(plan.path.resolve()))
    if plan.path.suffix.lower() == ".parquet":
        return ray.data.read_parquet(str(plan.path.resolve()))
    return ray.data.read_csv(str(plan.path.resolve()))
