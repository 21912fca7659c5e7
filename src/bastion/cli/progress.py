"""A rich progress bar that the assessment runner reports to."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

__all__ = ["RichProgress", "progress_bar"]


def progress_bar(console: Console, *, enabled: bool = True) -> Progress:
    """The bar every command shows: label, bar, done of total, elapsed time; left on screen when done."""
    return Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


class RichProgress:
    """One bar per (attack, epsilon) run; use as a context manager."""

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self._bar = progress_bar(console, enabled=enabled)
        self._task: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._bar.stop()

    def start(self, label: str, total: int) -> None:
        self._task = self._bar.add_task(label, total=max(total, 1) if total else 1)
        if total == 0:
            self._bar.advance(self._task, 1)

    def advance(self, n: int) -> None:
        if self._task is not None:
            self._bar.advance(self._task, n)
