"""Store fixtures: a store on each backend (a SQLite file, and a fresh PostgreSQL schema), and a ticking clock.

PostgreSQL tests get a database of their own per test module (``bastion_store_<hex>``, dropped
afterwards) and a fresh schema per test inside it, so they never touch the shared ``test``
database's tables. Where the role may not create databases, the schemas go into the database
named by ``BASTION_TEST_POSTGRES_URL`` instead, which is just as isolated.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gateway_live import postgres_database, postgres_url

from bastion.gateway.store import Store

__all__ = ["postgres_database", "postgres_url"]

BACKENDS = ["sqlite", "postgresql"]
START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class TickingClock:
    """A thread-safe clock that moves one millisecond each time it is read: distinct, ordered times."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self.now += timedelta(milliseconds=1)
            return self.now


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def clock() -> TickingClock:
    return TickingClock()


@pytest.fixture
def store(store_url: str, clock: TickingClock) -> Iterator[Store]:
    """An open store on each backend, closed afterwards."""
    opened = Store.open(store_url, clock=clock)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def memory_store(clock: TickingClock) -> Iterator[Store]:
    """An in-memory store: for checks of what callers pass, which happen before any backend sees it."""
    opened = Store.open("sqlite://", clock=clock)
    try:
        yield opened
    finally:
        opened.close()
