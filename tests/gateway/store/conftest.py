"""Store fixtures: a store on each backend (a SQLite file, and a fresh PostgreSQL schema), and a ticking clock.

PostgreSQL tests get a database of their own per test module (``bastion_store_<hex>``, dropped
afterwards) and a fresh schema per test inside it, so they never touch the shared ``test``
database's tables. Where the role may not create databases, the schemas go into the database
named by ``BASTION_TEST_POSTGRES_URL`` instead, which is just as isolated.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from bastion.gateway.store import Store

logger = logging.getLogger(__name__)

POSTGRES_URL = os.environ.get("BASTION_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]
START = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


class TickingClock:
    """A thread-safe clock that moves one millisecond each time it is read: distinct, ordered times."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self.now += timedelta(milliseconds=1)
            return self.now


def missing_service(what: str, reason: str) -> None:
    """Skip with the reason, except in CI, where a missing service is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required in CI: {reason}")
    pytest.skip(f"{what} unavailable: {reason}")


def _psycopg(url: str | URL) -> URL:
    return make_url(url).set(drivername="postgresql+psycopg")


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[URL]:
    """A database of this test module's own, dropped afterwards (or the configured one, see above)."""
    base = _psycopg(POSTGRES_URL)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"bastion_store_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except ProgrammingError as error:  # no CREATEDB privilege: fresh schemas in the base database still isolate
        logger.warning("cannot create a database (%s); using schemas in %s", error.orig, base.database)
        admin.dispose()
        yield base
        return
    except OperationalError as error:
        admin.dispose()
        missing_service("PostgreSQL", str(error.orig))
    try:
        yield base.set(database=name)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_database: URL) -> Iterator[str]:
    """A URL whose search path is a fresh schema, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(postgres_database, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = postgres_database.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


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
