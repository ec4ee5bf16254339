"""The run directory: one versioned writer (``save_run``) and one reader (``load_run``).

A run directory holds
- ``checkpoint.pt``: ``{"format": "anomgan-run", "version": 2, "config", "phase", "training", "scorer", "meta"}``;
  ``training`` is everything needed to continue training (live generator, EMA, optimisers, RNG, counters,
  history), ``scorer`` the finished detector (``ScorerSpec`` + ``Scorer.state_dict()``; None until training ends).
  When the scorer is there, ``training`` leaves out the weights the scorer already holds.
- ``config.yaml`` (the resolved config), ``metrics.csv`` (one row per epoch), ``run.json`` (``meta``), and the
  sample pictures the run layer draws (``samples.png``, ``samples/``).
Every file is written to a temporary name and renamed; loading never executes code (``weights_only=True``).
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from anomgan.config import Config, config_from_dict, save_config
from anomgan.errors import RunError
from anomgan.io import atomic_path, atomic_write, atomic_write_text
from anomgan.model import Scorer

FORMAT = "anomgan-run"
VERSION = 2
RUN_FILE = "checkpoint.pt"
RUN_FILES = (RUN_FILE, "metrics.csv", "config.yaml", "samples.png", "run.json")
RUN_DIRS = ("samples",)


def scorer_networks(config: dict) -> dict:
    """The trainer's networks a finished scorer holds, training-state name -> the scorer's prefix: the EMA generator,
    the D the scorer reads (the live one, or its weight average with ``train.d_ema_decay``) and the encoder. A
    finished run stores them once, in the scorer."""
    d = "discriminator_ema" if config.get("train", {}).get("d_ema_decay", 0) > 0 else "discriminator"
    return {"generator_ema": "generator.", d: "discriminator.", "encoder": "encoder."}


@dataclass
class RunFile:
    """What ``load_run`` read: plain data and tensors, nothing built yet."""

    path: Path
    config: dict
    phase: str  # gan | encoder | done
    training: dict
    scorer: Optional[dict]  # {"spec": dict, "state": state_dict}, None while training
    meta: dict

    @property
    def done(self) -> bool:
        return self.phase == "done" and self.scorer is not None

    def training_state(self) -> dict:
        """The trainer's state with the networks filled in from the scorer when the run stored them only there."""
        state = dict(self.training)
        if self.scorer is not None:
            for name, prefix in scorer_networks(self.config).items():
                if name not in state:
                    state[name] = {k[len(prefix):]: v for k, v in self.scorer["state"].items() if k.startswith(prefix)}
        return state

    def build_scorer(self, device: str | torch.device = "cpu") -> Scorer:
        """The finished detector, on ``device``."""
        if not self.done:
            raise RunError(f"{self.path.parent}: training is not finished (phase '{self.phase}', GAN epoch "
                           f"{self.training.get('epoch')}); resume the training of this run first",
                           cli=f"resume it with 'anomgan train --resume --out {self.path.parent}'")
        try:
            scorer = Scorer.from_saved(self.scorer)
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise RunError(f"{self.path}: the scorer does not match its architecture "
                           f"({str(exc).splitlines()[0][:160]})") from None
        return scorer.to(device)

    def resolved_config(self) -> Config:
        return config_from_dict(self.config)


def save_run(run_dir: str | Path, config: Config, phase: str, training: dict, scorer: Optional[Scorer] = None,
             meta: Optional[dict] = None, descriptors: bool = True) -> Path:
    """Write (or overwrite) the run in ``run_dir``: checkpoint, metrics, and (``descriptors``) config and metadata,
    each atomically. Per-epoch saves leave the descriptors alone (``write_descriptors`` wrote them when training
    started; rewriting the YAML every epoch cost ~1 s per 100 epochs)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    training = dict(training)
    scorer_part = None
    if scorer is not None:
        scorer_part = scorer.saved()
        for name in scorer_networks(config.to_dict()):  # held by the scorer already
            training.pop(name, None)
    meta = {**_versions(), **(meta or {})}
    state = {"format": FORMAT, "version": VERSION, "config": config.to_dict(), "phase": phase,
             "training": training, "scorer": scorer_part, "meta": meta}
    with atomic_path(run_dir / RUN_FILE) as tmp:
        torch.save(state, tmp)
    _write_metrics(training.get("history", []), run_dir / "metrics.csv")
    if descriptors:
        write_descriptors(run_dir, config, phase, meta)
    return run_dir


def _versions() -> dict:
    """What produced a run: package versions and the time it was written (UTC)."""
    import datetime
    import platform

    from anomgan import __version__

    return {"anomgan_version": __version__, "torch_version": str(torch.__version__), "python_version":
            platform.python_version(), "saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds")}


def write_descriptors(run_dir: Path, config: Config, phase: str, meta: Optional[dict] = None) -> None:
    """``config.yaml`` (the resolved config) and ``run.json`` (phase and metadata)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    atomic_write_text(run_dir / "run.json", json.dumps({"phase": phase, **(meta or {})}, indent=2, default=str))


def update_scorer(run: RunFile, scorer: Scorer) -> None:
    """Store a changed scorer (e.g. a new calibration) back into its run, keeping everything else."""
    training = run.training_state()  # the networks come from the stored scorer: read them before replacing it
    save_run(run.path.parent, run.resolved_config(), run.phase, training, scorer, run.meta)
    run.scorer = scorer.saved()


def load_run(run_dir: str | Path) -> RunFile:
    """Read ``run_dir``'s checkpoint; a missing, corrupt, foreign or older-version file is a one-line RunError."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunError(f"run directory not found: {run_dir}")
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise RunError(f"no checkpoint at {path}: not a run directory (train one first)",
                       cli=f"no checkpoint at {path}: not a run directory (train one with 'anomgan train')")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise RunError(f"{path}: refused to load, the checkpoint holds objects other than weights ({first[:160]})") \
            from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"{path}: corrupt or truncated checkpoint ({first[:160]})") from None
    if not isinstance(state, dict) or state.get("format") not in (FORMAT, "anomgan-checkpoint"):
        raise RunError(f"{path}: not an anomgan run")
    version = state.get("version")
    if version != VERSION:
        raise RunError(f"{path}: run format version {version} is not supported by this anomgan (reads version "
                       f"{VERSION}); retrain the run with this version")
    return RunFile(path=path, config=state["config"], phase=state["phase"], training=state["training"],
                   scorer=state["scorer"], meta=state.get("meta") or {})


def clear_run(run_dir: Path) -> None:
    """Remove the files a run writes (before training it anew in the same directory)."""
    import shutil

    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for name in RUN_DIRS:
        shutil.rmtree(run_dir / name, ignore_errors=True)


def _write_metrics(history: list, path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame(history)
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
