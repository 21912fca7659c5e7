"""The in-process engine: batches run one after another on the model's device."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from bastion.engine.interface import Batch
from bastion.engine.memory import trim

__all__ = ["LocalEngine"]

R = TypeVar("R")


class LocalEngine:
    """Runs each batch in this process, in order."""

    name = "local"

    def map(self, task: Callable[[Batch], R], batches: Iterable[Batch]) -> Iterator[R]:
        for batch in batches:
            result = task(batch)
            trim()  # the next batch reuses memory, rather than growing the heap (see engine.memory)
            yield result
