"""Schema migrations and opening: idempotent, refusing newer databases, one step applied once under concurrency."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Column as SqlColumn
from sqlalchemy import Connection, Integer, MetaData, Table, insert, inspect, select, text

from bastion.errors import ConfigError
from bastion.gateway.store import MIGRATIONS, Migration, PredictionRecord, Store, apply_migrations, utc_now
from bastion.gateway.store.migrations import current_version, schema_version
from bastion.gateway.store.schema import SQLITE_BUSY_TIMEOUT_S, _enter_wal, metadata, open_database

THREADS = 4


def versions(url: str) -> list[tuple[int, str]]:
    db = open_database(url)
    try:
        with db.read() as conn:
            rows = conn.execute(select(schema_version.c.version, schema_version.c.description).order_by("version"))
            return [(int(v), str(d)) for v, d in rows]
    finally:
        db.dispose()


class CountingStep:
    """A migration step that creates a table and counts how often it ran."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, conn: Connection) -> None:
        with self._lock:
            self.calls += 1
        Table(self.table, MetaData(), SqlColumn("id", Integer, primary_key=True)).create(conn)


def test_a_fresh_database_gets_exactly_the_declared_schema(store_url: str) -> None:
    Store.open(store_url).close()
    db = open_database(store_url)
    try:
        with db.read() as conn:
            inspector = inspect(conn)
            assert set(inspector.get_table_names()) == set(metadata.tables) | {"schema_version"}
            for name, table in metadata.tables.items():
                assert [c["name"] for c in inspector.get_columns(name)] == [c.name for c in table.columns]
                assert {i["name"] for i in inspector.get_indexes(name)} >= {i.name for i in table.indexes}
            assert current_version(conn) == len(MIGRATIONS)
    finally:
        db.dispose()
    assert versions(store_url) == [(i + 1, m.description) for i, m in enumerate(MIGRATIONS)]


def test_status_and_client_columns_are_indexed(store_url: str) -> None:
    Store.open(store_url).close()
    db = open_database(store_url)
    try:
        with db.read() as conn:
            inspector = inspect(conn)
            for table in ("feedback", "submissions", "flags"):
                indexed = {tuple(i["column_names"]) for i in inspector.get_indexes(table)}
                assert ("client",) in indexed and ("status",) in indexed
            assert ("client", "seq") in {tuple(i["column_names"]) for i in inspector.get_indexes("audit_events")}
    finally:
        db.dispose()


def test_reopening_an_up_to_date_database_changes_nothing(store_url: str) -> None:
    with Store.open(store_url) as store:
        secret, key = store.create_key("client", "kept")  # type: ignore[arg-type]
    step = CountingStep("never_created")
    db = open_database(store_url)
    try:
        with db.read() as conn:
            applied_at = conn.execute(select(schema_version.c.applied_at)).scalars().all()
        assert apply_migrations(db, MIGRATIONS) == len(MIGRATIONS)
    finally:
        db.dispose()
    with Store.open(store_url) as store:
        assert store.authenticate(secret) == key
    db = open_database(store_url)
    try:
        with db.read() as conn:
            assert conn.execute(select(schema_version.c.applied_at)).scalars().all() == applied_at
            assert "never_created" not in inspect(conn).get_table_names()
    finally:
        db.dispose()
    assert step.calls == 0


def test_new_steps_are_applied_in_order_once(store_url: str) -> None:
    Store.open(store_url).close()
    second, third = CountingStep("extra_two"), CountingStep("extra_three")
    steps = (*MIGRATIONS, Migration("second", second), Migration("third", third))
    db = open_database(store_url)
    try:
        assert apply_migrations(db, steps) == len(MIGRATIONS) + 2
        assert apply_migrations(db, steps) == len(MIGRATIONS) + 2
    finally:
        db.dispose()
    assert (second.calls, third.calls) == (1, 1)
    assert versions(store_url) == [(i + 1, m.description) for i, m in enumerate(steps)]


def test_a_failing_step_leaves_the_database_at_the_previous_version(store_url: str) -> None:
    def broken(conn: Connection) -> None:
        Table("half_made", MetaData(), SqlColumn("id", Integer, primary_key=True)).create(conn)
        conn.execute(text("SELECT * FROM no_such_table"))

    db = open_database(store_url)
    try:
        with pytest.raises(Exception, match="no_such_table"):
            apply_migrations(db, (*MIGRATIONS, Migration("broken", broken)))
        with db.read() as conn:
            assert "half_made" not in inspect(conn).get_table_names()
    finally:
        db.dispose()
    assert versions(store_url) == [(i + 1, m.description) for i, m in enumerate(MIGRATIONS)]


def test_a_database_newer_than_the_code_is_refused(store_url: str) -> None:
    db = open_database(store_url)
    try:
        apply_migrations(db, (*MIGRATIONS, Migration("from the future", CountingStep("future"))))
    finally:
        db.dispose()
    newer, known = len(MIGRATIONS) + 1, len(MIGRATIONS)
    with pytest.raises(
        ConfigError, match=rf"has schema version {newer}, newer than version {known} that this Bastion knows"
    ):
        Store.open(store_url)


def test_a_much_newer_version_row_is_refused_too(store_url: str) -> None:
    Store.open(store_url).close()
    db = open_database(store_url)
    try:
        with db.write() as conn:
            conn.execute(insert(schema_version).values(version=42, description="x", applied_at=datetime.now(UTC)))
    finally:
        db.dispose()
    with pytest.raises(ConfigError, match=f"schema version 42, newer than version {len(MIGRATIONS)}"):
        Store.open(store_url)


def test_concurrent_openers_apply_each_step_once(store_url: str) -> None:
    """Threads with engines of their own contend exactly as processes would, on the database's lock."""
    step = CountingStep("raced")
    steps = (*MIGRATIONS, Migration("raced", step))
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def open_and_migrate() -> None:
        db = open_database(store_url)
        try:
            barrier.wait(timeout=30)
            apply_migrations(db, steps)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)
        finally:
            db.dispose()

    threads = [threading.Thread(target=open_and_migrate) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert step.calls == 1
    assert versions(store_url) == [
        *[(i + 1, m.description) for i, m in enumerate(MIGRATIONS)],
        (len(MIGRATIONS) + 1, "raced"),
    ]


def test_concurrent_store_opens_all_succeed(store_url: str) -> None:
    barrier = threading.Barrier(THREADS)
    opened: list[Store] = []
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            barrier.wait(timeout=30)
            opened.append(Store.open(store_url))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_store) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for store in opened:
        store.close()
    assert errors == [] and len(opened) == THREADS
    assert versions(store_url) == [(i + 1, m.description) for i, m in enumerate(MIGRATIONS)]


# -- URLs -----------------------------------------------------------------------------------------


def test_sqlite_file_store_creates_its_folder_and_runs_durable(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "gateway.db"
    with Store.open(f"sqlite:///{path}") as store:
        assert store.url == f"sqlite:///{path}"
        store.create_key("client", "k")  # type: ignore[arg-type]
    assert path.exists()
    db = open_database(f"sqlite:///{path}")
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        db.dispose()


def test_in_memory_store_works_and_is_private() -> None:
    with Store.open("sqlite://") as store:
        secret, key = store.create_key("admin", "memory")  # type: ignore[arg-type]
        assert store.authenticate(secret) == key
    with Store.open("sqlite://") as other:
        assert other.list_keys() == []


@pytest.mark.parametrize(
    "url", ["mysql://user:hunter2@localhost/db", "postgresql+asyncpg://u:hunter2@h/db", "not a url :hunter2@"]
)
def test_unsupported_urls_are_refused_without_their_password(url: str) -> None:
    with pytest.raises(ConfigError, match=r"expected sqlite:///path\.db") as caught:
        Store.open(url)
    assert "hunter2" not in str(caught.value)


def test_unreachable_postgres_is_a_config_error_without_the_password() -> None:
    with pytest.raises(
        ConfigError, match=r"cannot open the store at postgresql\+psycopg://u:\*\*\*@127.0.0.1:1/"
    ) as caught:
        Store.open("postgresql://u:hunter2@127.0.0.1:1/db?connect_timeout=5")
    assert "hunter2" not in str(caught.value)


def test_plain_postgresql_urls_use_psycopg_and_mask_the_password(postgres_url: str) -> None:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1).replace("root@", "root:hunter2@", 1)
    with Store.open(plain) as store:  # trust authentication ignores the password
        assert store.url.startswith("postgresql+psycopg://root:***@")
        assert "hunter2" not in store.url
        assert store.counts()["keys_active"] == 0


def test_a_version_1_database_gains_the_prediction_inputs_column(store_url: str) -> None:
    """A database made by the first release (version 1, predictions without inputs) is upgraded in place."""
    db = open_database(store_url)
    try:
        apply_migrations(db, MIGRATIONS[:1])
        with db.write() as conn:
            conn.execute(text("ALTER TABLE predictions DROP COLUMN x"))  # as version 1 of the code made it
    finally:
        db.dispose()
    with Store.open(store_url) as store:
        record = PredictionRecord("a" * 32, utc_now(), "c", 1, (0.2, 0.8), "0" * 64, x=np.ones((2, 2), np.float32))
        store.record_prediction(record)
        found = store.get_prediction("a" * 32)
    assert found is not None and found.x is not None
    np.testing.assert_array_equal(found.x, np.ones((2, 2), np.float32))
    assert versions(store_url) == [(1, "initial tables"), (2, "prediction inputs")]


def test_connections_switching_a_new_sqlite_file_to_wal_together_all_succeed(tmp_path: Path) -> None:
    """SQLite answers a concurrent ``PRAGMA journal_mode=WAL`` with "database is locked" at once.

    It does not wait on the busy timeout there, so several connections opened on a new file that
    switch it together failed (a few trials in a hundred here; once in CI). Each connection is
    opened before the barrier, as a pool holds them, and the switch is the store's own.
    """
    errors: list[BaseException] = []
    for trial in range(100):
        path = tmp_path / f"race-{trial}.db"
        connections = [
            sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            for _ in range(8)
        ]
        barrier = threading.Barrier(len(connections))

        def switch(connection: sqlite3.Connection, barrier: threading.Barrier = barrier) -> None:
            try:
                barrier.wait(timeout=30)
                _enter_wal(connection.cursor())
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=switch, args=(c,)) for c in connections]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        modes = {c.execute("PRAGMA journal_mode").fetchone()[0] for c in connections}
        for connection in connections:
            connection.close()
        assert errors == [], f"trial {trial}"
        assert modes == {"wal"}
