"""Schema migrations: an ordered list of steps, each applied once, in its own locked transaction.

The ``schema_version`` table records every applied step (version ``n`` is ``MIGRATIONS[n - 1]``).
:func:`apply_migrations` applies the missing steps in order at ``Store.open``; an up-to-date
database is left as it is, and one newer than this code is refused with a
:class:`~bastion.errors.ConfigError` naming both versions.

Two processes may open the same database at once: each step runs in a transaction that first
takes a lock (``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) and only
then reads the version, so the second process waits and then finds the step already applied.

To change the schema, append a step; never edit an applied one. Step 1 creates the tables as
``schema.py`` declares them; once a later step alters a table, freeze step 1 to its own copy of
the version-1 tables (a test checks that migrating a fresh database yields exactly ``schema.py``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, Connection, Integer, MetaData, Table, Text, func, insert, inspect, select

from bastion.errors import ConfigError
from bastion.gateway.store import schema
from bastion.gateway.store.schema import Database, UtcDateTime

__all__ = ["MIGRATIONS", "MIGRATION_LOCK_KEY", "Migration", "apply_migrations", "current_version", "schema_version"]

logger = logging.getLogger(__name__)

# One 64-bit advisory-lock key for all Bastion stores on a PostgreSQL server: opening is rare, so
# stores in different schemas of one database may as well queue behind each other.
MIGRATION_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"bastion.gateway.store.migrations").digest()[:8], "big", signed=True
)

schema_version = Table(
    "schema_version",
    MetaData(),
    Column("version", Integer(), primary_key=True, autoincrement=False),
    Column("description", Text(), nullable=False),
    Column("applied_at", UtcDateTime(), nullable=False),
)


@dataclass(frozen=True)
class Migration:
    """One schema change: ``apply`` runs inside the transaction that records it."""

    description: str
    apply: Callable[[Connection], None]


def _initial_tables(conn: Connection) -> None:
    """Version 1: keys, audit events, predictions, feedback, submissions, flags, decisions, clients."""
    schema.metadata.create_all(conn)


def _prediction_inputs(conn: Connection) -> None:
    """Version 2: predictions keep their input, so that feedback on them can become training data.

    Version 1 creates the tables from ``schema.py``, which already has the column on a fresh
    database; only a database created by an older release lacks it.
    """
    columns = {column["name"] for column in inspect(conn).get_columns("predictions")}
    if "x" not in columns:
        kind = "BYTEA" if conn.dialect.name == "postgresql" else "BLOB"
        conn.exec_driver_sql(f"ALTER TABLE predictions ADD COLUMN x {kind}")


MIGRATIONS: tuple[Migration, ...] = (
    Migration("initial tables", _initial_tables),
    Migration("prediction inputs", _prediction_inputs),
)


def apply_migrations(
    db: Database,
    migrations: Sequence[Migration] = MIGRATIONS,
    *,
    clock: Callable[[], datetime] | None = None,
    where: str = "the database",
) -> int:
    """Apply the steps ``db`` lacks, each in its own locked transaction; the version it ends at."""
    now = clock or (lambda: datetime.now(UTC))
    while True:
        with db.write() as conn:
            _lock(conn, db)
            version = current_version(conn)
            if version > len(migrations):
                raise ConfigError(
                    f"{where} has schema version {version}, newer than version {len(migrations)} that this "
                    "Bastion knows; upgrade Bastion, or point it at another store"
                )
            if version == len(migrations):
                return version
            step = migrations[version]
            step.apply(conn)
            row = {"version": version + 1, "description": step.description, "applied_at": now()}
            conn.execute(insert(schema_version).values(row))
        logger.info("store schema migrated to version %d (%s)", version + 1, step.description)


def current_version(conn: Connection) -> int:
    """The highest applied version, 0 for a new database (creating ``schema_version`` if missing)."""
    schema_version.create(conn, checkfirst=True)
    return int(conn.execute(select(func.coalesce(func.max(schema_version.c.version), 0))).scalar_one())


def _lock(conn: Connection, db: Database) -> None:
    """Hold the migration lock until the transaction ends (SQLite: BEGIN IMMEDIATE already does)."""
    if db.is_postgres:
        conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
