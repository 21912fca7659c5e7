"""The engine seam: where batches of attack work run (in-process now; a cluster engine plugs in here)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from torch import Tensor

__all__ = ["Batch", "Engine"]

R = TypeVar("R")


@dataclass(frozen=True)
class Batch:
    """A slice of the examples under assessment: positions in the full set, inputs and labels."""

    index: Tensor
    x: Tensor
    y: Tensor


class Engine(Protocol):
    """Runs a task over batches and yields the results in order."""

    name: str

    def map(self, task: Callable[[Batch], R], batches: Iterable[Batch]) -> Iterator[R]: ...
