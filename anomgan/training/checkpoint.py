"""Checkpoints: one self-describing file per run, written atomically, loaded without executing code."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from anomgan.errors import RunError
from anomgan.io import atomic_path

CHECKPOINT = "checkpoint.pt"
FORMAT = "anomgan-checkpoint"
VERSION = 1


def save_checkpoint(state: dict, path: Path) -> None:
    """Write ``state`` (tensors, dicts, lists, numbers, strings only) via temp file + rename."""
    state = {"format": FORMAT, "version": VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict:
    """Load with ``weights_only=True``: a pickle that would run code is refused, never executed."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"no checkpoint at {path}: not a run directory (train one with 'anomgan train')")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise RunError(f"{path}: refused to load, the checkpoint holds objects other than weights ({first[:160]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"{path}: corrupt or truncated checkpoint ({first[:160]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RunError(f"{path}: not an anomgan checkpoint")
    if state.get("version") != VERSION:
        raise RunError(f"{path}: checkpoint version {state.get('version')} is not supported (expected {VERSION})")
    return state
