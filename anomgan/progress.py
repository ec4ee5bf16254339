"""Progress bars on stderr (rich), silent unless enabled, so library calls stay quiet by default."""

from __future__ import annotations

from typing import Any


class ProgressBar:
    """``with ProgressBar("train", total, enabled) as bar: bar.update(1, loss=0.3)``"""

    def __init__(self, description: str, total: int | None, enabled: bool = False):
        self.description = description
        self.total = total
        self.enabled = enabled
        self._progress = None
        self._task = None

    def __enter__(self) -> "ProgressBar":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"), console=Console(stderr=True), transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, info="")
        return self

    def update(self, n: int = 1, **fields: Any) -> None:
        if self._progress is None:
            return
        info = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
        self._progress.update(self._task, advance=n, info=info)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
