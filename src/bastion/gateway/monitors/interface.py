"""The monitor protocol, its verdict value, and the bounded per-client state that every monitor keeps.

The gateway shows each answered predict request to its monitors, after the model::

    for verdict in monitor.observe(client, x, probs):   # x (n, *input_shape) float32, probs (n, num_classes)
        act_on(verdict)                                # flag, omit or throttle verdict.client

A monitor speaks about a client at most once, until the gateway calls ``reset(client)``. Its
state lives in memory, per gateway process, and is bounded: at most ``max_clients`` clients,
the least recently seen forgotten first, so an attacker holding many keys cannot exhaust memory.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from bastion.errors import ConfigError, DataError

__all__ = ["ClientStates", "Evidence", "Monitor", "Verdict", "check_batch", "input_digest"]

# What a verdict may carry as evidence: JSON-serialisable scalars and lists.
Evidence = Mapping[str, float | int | str | list[float] | list[int] | list[str]]

S = TypeVar("S")


@dataclass(frozen=True)
class Verdict:
    """A monitor's finding about one client, with the evidence a reviewer sees."""

    monitor: str  # the monitor's name, e.g. "boundary"
    client: str  # the key id the verdict is about
    reason: str  # stable snake_case, e.g. "near_duplicate_queries"
    evidence: Evidence
    linked_clients: tuple[str, ...] = ()  # other keys judged to belong to the same attacker


@runtime_checkable
class Monitor(Protocol):
    """Watches each client's predict requests and returns verdicts; speaks once per client until reset."""

    name: str

    def observe(self, client: str, x: np.ndarray, probs: np.ndarray) -> list[Verdict]:
        """Take in one request: inputs ``(n, *input_shape)`` and the model's probabilities ``(n, num_classes)``."""
        ...

    def reset(self, client: str) -> None:
        """Forget ``client``: its state, its evidence, and that it was flagged."""
        ...


class ClientStates(Generic[S]):
    """Per-client state, at most ``max_clients`` of them; seeing a client makes it the most recent."""

    def __init__(self, max_clients: int) -> None:
        if not max_clients >= 1:
            raise ConfigError(f"expected max_clients >= 1, got {max_clients}")
        self.max_clients = max_clients
        self._states: OrderedDict[str, S] = OrderedDict()

    def get(self, client: str, make: Callable[[], S]) -> S:
        """The client's state (made with ``make`` if new), marked as just seen; evicts the least recent."""
        state = self._states.get(client)
        if state is None:
            state = self._states[client] = make()
            while len(self._states) > self.max_clients:
                self._states.popitem(last=False)
        else:
            self._states.move_to_end(client)
        return state

    def peek(self, client: str) -> S | None:
        """The client's state without marking it seen, or None."""
        return self._states.get(client)

    def pop(self, client: str) -> S | None:
        """Remove and return the client's state, or None."""
        return self._states.pop(client, None)

    def __contains__(self, client: object) -> bool:
        return client in self._states

    def __len__(self) -> int:
        return len(self._states)

    def __iter__(self) -> Iterator[str]:
        """Clients from the least to the most recently seen."""
        return iter(list(self._states))


def check_batch(x: np.ndarray, probs: np.ndarray) -> int:
    """The number of rows of a request's inputs and probabilities, after checking that they agree."""
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise DataError(f"expected probabilities of shape (n, num_classes >= 2), got {probs.shape}")
    if x.ndim < 2 or x.shape[0] != probs.shape[0]:
        raise DataError(f"expected inputs of shape ({probs.shape[0]}, *input_shape), got {x.shape}")
    return int(x.shape[0])


def input_digest(row: np.ndarray) -> bytes:
    """A 16-byte digest of one input as float32 bytes, to recognise exact repeats (not a security boundary)."""
    return hashlib.blake2b(np.ascontiguousarray(row, dtype=np.float32).tobytes(), digest_size=16).digest()
