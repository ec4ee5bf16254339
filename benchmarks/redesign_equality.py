"""Same seed, same data: do this version's scores equal those of anomgan 0.1 (the last run format 1 version)?

    git worktree add ../anomgan-0.1 bdef05a
    python benchmarks/redesign_equality.py --old-repo ../anomgan-0.1 --data-root ../shared/data \
        --out reports/benchmarks/redesign-equality.csv

Trains and evaluates each case with both versions through their CLIs (the old one as ``python cli.py`` in its
own checkout, so it imports its own package), then compares the per-sample scores CSVs column by column: the
largest absolute and relative difference of every score column both have, whether every ``is_anomaly`` decision
is the same, and both ROC-AUCs. Cases: the README's digits quickstart and one MNIST digit (3, seed 0) with the
shipped configs. Finished cases in ``--work`` are reused, so an interrupted comparison resumes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
CASES = {"digits-0": ["--config", "configs/digits.yaml", "--normal-classes", "0"],
         "mnist-3": ["--config", "configs/mnist.yaml", "--normal-classes", "3"]}


def run_case(repo: Path, work: Path, name: str, args: list[str], data_root: str) -> pd.DataFrame:
    """Train + evaluate one case with the checkout at ``repo``; returns its per-sample scores."""
    run, report = work / name, work / f"{name}.csv"
    scores = work / f"{name}.scores.csv"
    if not scores.exists():
        common = ["--device", "cpu", "--quiet"]
        cli = [sys.executable, "cli.py"]
        subprocess.run([*cli, "train", *args, "--data-root", data_root, "--out", str(run), *common], cwd=repo,
                       check=True)
        subprocess.run([*cli, "evaluate", "--run", str(run), "--out", str(report), *common], cwd=repo, check=True)
    return pd.read_csv(scores)


def compare(case: str, old: pd.DataFrame, new: pd.DataFrame) -> list[dict]:
    assert old["id"].astype(str).tolist() == new["id"].astype(str).tolist(), "different test samples"
    rows = []
    for col in [c for c in new.columns if c in old.columns and new[c].dtype.kind == "f"]:
        a, b = old[col].to_numpy(np.float64), new[col].to_numpy(np.float64)
        diff = np.abs(a - b)
        rows.append({"case": case, "column": col, "max_abs_diff": diff.max(),
                     "max_rel_diff": (diff / np.maximum(np.abs(a), 1e-12)).max(),
                     "roc_auc_old": roc_auc_score(old["target"], a) if col != "threshold" else np.nan,
                     "roc_auc_new": roc_auc_score(new["target"], b) if col != "threshold" else np.nan})
    same = bool((old["is_anomaly"] == new["is_anomaly"]).all())
    rows.append({"case": case, "column": "is_anomaly", "max_abs_diff": float(not same), "max_rel_diff": np.nan,
                 "roc_auc_old": np.nan, "roc_auc_new": np.nan})
    only_old = sorted(set(old.columns) - set(new.columns))
    for col in only_old:  # components the new version does not compute (they weigh 0)
        rows.append({"case": case, "column": f"{col} (0.1 only: weighs 0)", "max_abs_diff": np.nan,
                     "max_rel_diff": np.nan, "roc_auc_old": roc_auc_score(old["target"], old[col]),
                     "roc_auc_new": np.nan})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old-repo", type=Path, required=True, help="a checkout of anomgan 0.1 (commit bdef05a)")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--work", type=Path, default=Path("runs/redesign-equality"))
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "benchmarks" / "redesign-equality.csv")
    args = ap.parse_args()
    data_root = str(Path(args.data_root).resolve())
    rows = []
    for name in args.cases.split(","):
        old = run_case(args.old_repo.resolve(), (args.work / "0.1").resolve(), name, CASES[name], data_root)
        new = run_case(ROOT, (args.work / "0.2").resolve(), name, CASES[name], data_root)
        rows += compare(name, old, new)
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out, index=False)
    print(frame.to_string(index=False))


if __name__ == "__main__":
    main()
