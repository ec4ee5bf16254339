"""Benchmark protocols across classes and seeds; resumable (finished cases in the CSV are skipped).

one-class:      normal = {c}, anomalous = every other class (Deep SVDD / OCGAN / GEOM tables).
leave-one-out:  normal = every class but c, anomalous = {c} (GANomaly / EGBAD).
The AUC reported is that of the final model; the test split is looked at once per case, after training.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from anomgan.components import NAMES as COMPONENTS
from anomgan.config import Config
from anomgan.errors import ConfigError
from anomgan.evaluation.metrics import evaluate_scores
from anomgan.io import atomic_write

KEY = ["protocol", "dataset", "normal_classes", "seed", "method"]


@dataclass
class BenchmarkResult:
    cases: pd.DataFrame  # one row per (class, seed)
    summary: pd.DataFrame  # mean/std per class and overall
    out: Path
    summary_out: Path
    skipped: int


def cases_for(protocol: str, classes: list, all_classes: list[str]) -> list[tuple[list[str], list[str]]]:
    """(normal classes, anomalous classes) per case."""
    wanted = [str(c) for c in classes]
    unknown = [c for c in wanted if c not in all_classes]
    if unknown:
        raise ConfigError(f"class '{unknown[0]}' not in the data (classes: {', '.join(all_classes)})")
    if protocol == "one-class":
        return [([c], [o for o in all_classes if o != c]) for c in wanted]
    if protocol == "leave-one-out":
        return [([o for o in all_classes if o != c], [c]) for c in wanted]
    raise ConfigError(f"unknown protocol '{protocol}' (use one-class or leave-one-out)")


def summarise(cases: pd.DataFrame) -> pd.DataFrame:
    group = ["protocol", "dataset", "method", "normal_classes"]
    cols = [c for c in cases.columns if c.endswith("roc_auc") or c in ("average_precision", "train_seconds")]
    per_class = cases.groupby(group, sort=False)[cols].agg(["mean", "std"])
    per_class.columns = [f"{a}_{b}" for a, b in per_class.columns]
    per_class = per_class.reset_index()
    overall = cases.groupby(["protocol", "dataset", "method"], sort=False)[cols].agg(["mean", "std"])
    overall.columns = [f"{a}_{b}" for a, b in overall.columns]
    overall = overall.reset_index().assign(normal_classes="all")
    # overall std: of the per-seed means over classes, i.e. run-to-run spread of the headline number
    seed_means = cases.groupby(["protocol", "dataset", "method", "seed"])["roc_auc"].mean()
    overall["roc_auc_std"] = seed_means.groupby(["protocol", "dataset", "method"]).std().to_numpy() \
        if len(seed_means) else float("nan")
    return pd.concat([per_class, overall], ignore_index=True)


def read_cases(path) -> pd.DataFrame:
    """A benchmark CSV as written: the class lists stay text ("3", "0,1,2"), not numbers."""
    return pd.read_csv(path, dtype={"normal_classes": str, "anomalous_classes": str})


def default_runs_dir(out) -> Path:
    """Where a benchmark writing ``out`` keeps its cases' runs unless told otherwise: ``<stem>.runs/`` beside it."""
    out = Path(out)
    return out.parent / f"{out.stem}.runs"


def case_run_dir(runs_dir, protocol: str, normal_classes: str, seed) -> Path:
    """Where a benchmark keeps one case's run: ``<runs_dir>/<protocol>-<normal classes, _-joined>-s<seed>``
    (``normal_classes`` as the CSV writes it, comma-joined)."""
    return Path(runs_dir) / f"{protocol}-{normal_classes.replace(',', '_')[:40]}-s{seed}"


def run_benchmark(cfg: Config, protocol: str, classes: Optional[list], seeds: list[int], out: Path,
                  runs_dir: Optional[Path] = None, method: Optional[str] = None, verbose: bool = False,
                  on_case: Optional[Callable[[dict], None]] = None) -> BenchmarkResult:
    from anomgan.run_format import RUN_FILE
    from anomgan.runs import load_data, score_test_split, split_data, train_run

    out = Path(out)
    if not out.parent.is_dir():
        from anomgan.errors import OutputError

        raise OutputError(f"output directory does not exist: {out.parent}")
    ds = load_data(cfg)
    if ds.y is None:
        raise ConfigError(f"{ds.name} is unlabelled: a benchmark needs classes")
    all_classes = ds.classes
    case_list = cases_for(protocol, classes if classes else all_classes, all_classes)
    method = method or cfg.score.method
    done = read_cases(out) if out.is_file() else pd.DataFrame()
    # earlier versions wrote the frame's index too, and each resume added one more such column
    done = done.loc[:, ~done.columns.astype(str).str.startswith("Unnamed:")]
    finished = set(map(tuple, done[KEY].astype(str).to_numpy())) if len(done) else set()
    runs_dir = Path(runs_dir) if runs_dir else default_runs_dir(out)
    rows = done.to_dict("records")
    skipped = 0
    for seed in seeds:
        for normal, anomalous in case_list:
            key = (protocol, ds.name, ",".join(normal), str(seed), method)
            if key in finished:
                skipped += 1
                continue
            case_cfg = copy.deepcopy(cfg)
            case_cfg.data.normal_classes = normal
            case_cfg.train.seed = seed
            splits = split_data(case_cfg, ds)
            run_dir = case_run_dir(runs_dir, protocol, ",".join(normal), seed)
            run_dir.mkdir(parents=True, exist_ok=True)
            resume = (run_dir / RUN_FILE).exists()
            start = time.perf_counter()
            det = train_run(case_cfg, run_dir, resume=resume, verbose=verbose, dataset=ds).detector
            train_seconds = time.perf_counter() - start
            frame, res, score_seconds = score_test_split(det, ds, splits, method)
            report = evaluate_scores(frame, float(res["threshold"][0]))
            overall = report[report["anomalous_class"] == "all"].set_index("component")
            row = {"protocol": protocol, "dataset": ds.name, "normal_classes": ",".join(normal),
                   "anomalous_classes": ",".join(anomalous), "seed": seed, "method": method,
                   "roc_auc": overall.loc["anomaly_score", "roc_auc"],
                   "average_precision": overall.loc["anomaly_score", "average_precision"],
                   **{f"{c}_roc_auc": overall.loc[c, "roc_auc"] if c in overall.index else float("nan")
                      for c in COMPONENTS},
                   "f1": overall.loc["anomaly_score", "f1"], "train_seconds": train_seconds,
                   "score_seconds": score_seconds, "n_train": len(splits.train), "n_test": len(splits.test)}
            rows.append(row)
            atomic_write(out, lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))  # durable after every case
            if on_case:
                on_case(row)
    cases = pd.DataFrame(rows)
    summary = summarise(cases) if len(cases) else pd.DataFrame()
    summary_out = out.with_name(f"{out.stem}.summary.csv")
    atomic_write(summary_out, lambda tmp: summary.to_csv(tmp, index=False))
    return BenchmarkResult(cases, summary, out, summary_out, skipped)
