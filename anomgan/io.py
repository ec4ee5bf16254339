"""Atomic file writes: a reader never sees a half-written file, a crash never leaves one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from anomgan.errors import AnomganError, OutputError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else delete it."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output directory does not exist: {parent}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise OutputError(f"cannot write to {parent}: {exc.strerror}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` then move the finished file to ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)


def check_output(path: str | Path, force: bool = False, what: str = "output") -> Path:
    """Refuse to overwrite without ``force`` and check the destination folder exists and is writable."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.exists() and not force:
        raise OutputError(f"{what} already exists: {path} (force=True overwrites it)",
                          cli=f"{what} already exists: {path} (use --force to overwrite)")
    if not parent.is_dir():
        raise OutputError(f"output directory does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output directory is not writable: {parent}")
    return path


def check_score_table(path: Path) -> str:
    """The format of a per-sample score table from its suffix: ``csv`` or ``parquet``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        require("pyarrow", "Parquet output", "parquet")
        return "parquet"
    if suffix in ("", ".csv", ".txt", ".tsv"):
        return "csv"
    raise OutputError(f"{path}: scores are written as .csv or .parquet, not '{suffix}'")


@contextlib.contextmanager
def score_table_writer(path: Path) -> Iterator[Callable]:
    """Yield ``write(frame)``: per-sample score frames appended to one CSV or Parquet file (by ``path``'s suffix),
    written under a temporary name and renamed when complete, so an interrupted run leaves no half table. Every
    frame has the first one's columns; Parquet keeps the first frame's column types."""
    kind = check_score_table(path)
    with atomic_path(path) as tmp:
        state = {"n": 0, "writer": None, "schema": None}
        fh = open(tmp, "w", newline="") if kind == "csv" else None

        def write(frame) -> None:
            if kind == "csv":
                frame.to_csv(fh, header=state["n"] == 0, index=False)
            else:
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.Table.from_pandas(frame, schema=state["schema"], preserve_index=False)
                if state["writer"] is None:
                    state["schema"] = table.schema
                    state["writer"] = pq.ParquetWriter(str(tmp), table.schema)
                state["writer"].write_table(table)
            state["n"] += len(frame)

        try:
            yield write
        finally:
            if fh is not None:
                fh.close()
            if state["writer"] is not None:
                state["writer"].close()


def require(module: str, what: str, extra: str):
    """Import an optional dependency, or raise one line naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise AnomganError(f"{what} needs the '{module}' package: pip install \"anomgan[{extra}]\"") from None
