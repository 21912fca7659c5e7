"""The store's tables as of the latest migration, and the database handle whose transactions reach them.

SQLite (the default) and PostgreSQL hold the same tables. SQLite runs in WAL mode with
``synchronous=FULL``, so a transaction that committed survives the process being killed; a write
transaction there starts with ``BEGIN IMMEDIATE``, taking the database's single write lock at
once, so writers queue (up to :data:`SQLITE_BUSY_TIMEOUT_S`) instead of failing half-way.

Text that clients control lives in unbounded ``Text`` columns; the indexed columns (ids, client,
status, kind) are bounded, and the store checks their lengths before it writes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from bastion.errors import ConfigError

__all__ = [
    "CLIENT_MAX",
    "ID_MAX",
    "KIND_MAX",
    "NAME_MAX",
    "SQLITE_BUSY_TIMEOUT_S",
    "Database",
    "UtcDateTime",
    "api_keys",
    "audit_events",
    "clients",
    "decisions",
    "feedback",
    "flags",
    "mask_url",
    "metadata",
    "open_database",
    "predictions",
    "submissions",
]

logger = logging.getLogger(__name__)

ID_MAX = 64  # ids: uuid4 hex is 32, request ids from clients may be longer
CLIENT_MAX = 128  # a client is a key id (12 hex) or a name the gateway gives an unauthenticated caller
KIND_MAX = 64  # flag kinds, audit codes
NAME_MAX = 200  # key names
SQLITE_BUSY_TIMEOUT_S = 30.0  # how long a SQLite writer waits for another to commit
_BEGIN_OPTION = "bastion_sqlite_begin"  # execution option: "IMMEDIATE" for write transactions


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime: stored as UTC, read back aware (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """UTC; naive for SQLite, whose column type drops offsets silently."""
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(f"expected a timezone-aware datetime, got naive {value.isoformat()}")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Aware UTC whatever the backend returned."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _serial() -> BigInteger:
    """A 64-bit autoincrementing key; SQLite needs INTEGER PRIMARY KEY for its rowid alias."""
    return BigInteger().with_variant(Integer(), "sqlite")


metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(ID_MAX), primary_key=True),
    Column("secret_hash", String(64), nullable=False),  # sha256 hex of the secret; the secret is never stored
    Column("name", String(NAME_MAX), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked", Boolean(), nullable=False, default=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", _serial(), primary_key=True, autoincrement=True),
    Column("request_id", String(ID_MAX), nullable=False, index=True),
    Column("time", UtcDateTime(), nullable=False, index=True),
    Column("client", String(CLIENT_MAX), nullable=True),
    Column("role", String(16), nullable=True),
    Column("endpoint", Text(), nullable=False),
    Column("action", Text(), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("status", Integer(), nullable=False),
    Column("code", String(KIND_MAX), nullable=True),
    Column("detail", Text(), nullable=False),
    Column("duration_ms", Float(), nullable=False),
    Index("ix_audit_events_client_seq", "client", "seq"),
)

predictions = Table(
    "predictions",
    metadata,
    Column("prediction_id", String(ID_MAX), primary_key=True),
    Column("time", UtcDateTime(), nullable=False),
    Column("client", String(CLIENT_MAX), nullable=False, index=True),
    Column("label", Integer(), nullable=False),
    Column("scores", Text(), nullable=False),  # a JSON list of floats
    Column("input_sha256", String(64), nullable=False, index=True),
    # The input as .npy bytes (allow_pickle=False), so that feedback on it can become training data (version 2).
    Column("x", LargeBinary(), nullable=True),
)

feedback = Table(
    "feedback",
    metadata,
    Column("feedback_id", String(ID_MAX), primary_key=True),
    Column("time", UtcDateTime(), nullable=False),
    Column("client", String(CLIENT_MAX), nullable=False, index=True),
    Column("prediction_id", String(ID_MAX), nullable=False, index=True),
    Column("correct", Boolean(), nullable=False),
    Column("label", Integer(), nullable=True),
    Column("status", String(16), nullable=False, index=True),
)

submissions = Table(
    "submissions",
    metadata,
    Column("submission_id", String(ID_MAX), primary_key=True),
    Column("time", UtcDateTime(), nullable=False),
    Column("client", String(CLIENT_MAX), nullable=False, index=True),
    Column("x", LargeBinary(), nullable=False),  # .npy bytes, written and read with allow_pickle=False
    Column("label", Integer(), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("input_sha256", String(64), nullable=False, index=True),
)

flags = Table(
    "flags",
    metadata,
    Column("flag_id", String(ID_MAX), primary_key=True),
    Column("time", UtcDateTime(), nullable=False),
    Column("client", String(CLIENT_MAX), nullable=False, index=True),
    Column("kind", String(KIND_MAX), nullable=False, index=True),
    Column("reason", Text(), nullable=False),
    Column("evidence", Text(), nullable=False),  # a JSON object
    Column("prediction_id", String(ID_MAX), nullable=True),
    Column("linked_clients", Text(), nullable=False),  # a JSON list of client names
    Column("status", String(16), nullable=False, index=True),
)

decisions = Table(
    "decisions",
    metadata,
    Column("decision_id", String(ID_MAX), primary_key=True),
    Column("time", UtcDateTime(), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("item_id", String(ID_MAX), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("reviewer", String(CLIENT_MAX), nullable=False),
    Column("reason", Text(), nullable=False),
    UniqueConstraint("kind", "item_id", name="uq_decisions_kind_item"),  # one decision per item
)

clients = Table(
    "clients",
    metadata,
    Column("client", String(CLIENT_MAX), primary_key=True),
    Column("omitted", Boolean(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)


@dataclass(frozen=True)
class Database:
    """An engine and the transactions the store runs on it; thread-safe."""

    engine: Engine
    lock: AbstractContextManager[object]  # serialises a single shared in-memory connection; else a no-op

    @property
    def is_postgres(self) -> bool:
        """Whether the backend is PostgreSQL (else SQLite)."""
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that commits when the block ends, and on SQLite holds the write lock from the start."""
        with self.lock, self.engine.connect() as conn:
            conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A transaction for reading: one consistent snapshot, rolled back at the end."""
        with self.lock, self.engine.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def mask_url(url: str | URL) -> str:
    """``url`` with any password replaced by ``***``."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # unparseable: keep only what follows the last "@", where no credentials are
        return f"***@{url.rsplit('@', 1)[1]}" if "@" in url else url


def open_database(url: str) -> Database:
    """A :class:`Database` for ``sqlite:///path``, ``sqlite://`` (in memory) or ``postgresql://...``."""
    parsed = _parse(url)
    if parsed.get_backend_name() == "postgresql":
        return Database(create_engine(parsed, pool_pre_ping=True), nullcontext())
    if parsed.database in (None, "", ":memory:"):
        engine = create_engine(parsed, poolclass=StaticPool, connect_args={"check_same_thread": False})
        _configure_sqlite(engine, wal=False)
        return Database(engine, threading.RLock())
    Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
    engine = create_engine(parsed, connect_args=connect_args)
    _configure_sqlite(engine, wal=True)
    return Database(engine, nullcontext())


def _parse(url: str) -> URL:
    """The URL with PostgreSQL pinned to psycopg 3; ConfigError for anything but SQLite or PostgreSQL."""
    expected = "expected sqlite:///path.db, sqlite:// (in memory) or postgresql://user@host/db"
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise ConfigError(f"{expected}, got {mask_url(url)!r}") from error
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return parsed
    raise ConfigError(f"{expected}, got {mask_url(parsed)!r}")


def _enter_wal(cursor: Any) -> None:
    """Put the database file in WAL mode (it stays so), waiting out other connections doing the same.

    Changing the journal mode needs the database to itself, and SQLite reports "database is locked"
    at once, without calling the busy handler, when several connections of a new file switch it
    together. The mode is persistent, so later connections only read it.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() == "wal":
            return
        try:
            if str(cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower() == "wal":
                return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error):
                raise
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError(f"could not put the database in WAL mode within {SQLITE_BUSY_TIMEOUT_S} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    """Durable pragmas on each new connection, and BEGIN emitted by us (sqlite3's own is unreliable)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # sqlite3 must not BEGIN on its own: see _on_begin
        cursor = dbapi_connection.cursor()
        if wal:
            _enter_wal(cursor)
        cursor.execute("PRAGMA synchronous=FULL")  # fsync the WAL at every commit
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Python's sqlite3 starts transactions lazily and never for SELECT; SQLAlchemy's documented
        # fix is to emit BEGIN here. IMMEDIATE takes the write lock now, so a read-then-write
        # transaction cannot fail with SQLITE_BUSY half-way through.
        immediate = conn.get_execution_options().get(_BEGIN_OPTION) == "IMMEDIATE"
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
