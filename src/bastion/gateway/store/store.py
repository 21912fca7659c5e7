"""The gateway's store: API keys, the audit log, predictions, quarantined feedback and submissions, flags and reviews.

``Store.open(url)`` reaches SQLite (``sqlite:///path.db``, or ``sqlite://`` in memory) or
PostgreSQL (``postgresql://...``, driven by psycopg 3) and migrates the schema. Every method is
synchronous and thread-safe, and every write commits before it returns: a write the client was
told succeeded is durable.

Text from clients: all SQL goes through SQLAlchemy Core's bound parameters, so text is data and
never SQL. Text is stored verbatim except for two characters no backend can keep in a text column
(PostgreSQL refuses NUL, and neither driver can encode a lone surrogate): the store strips NUL
characters and replaces lone surrogates with U+FFFD, on both backends alike. JSON fields (a
flag's evidence) keep both, escaped. Bounded fields (ids, client, kind) longer than their column
raise :class:`~bastion.errors.InvalidInputError`; an audit event is never refused for its text,
its fields are truncated instead (``detail`` to 500 characters).

Secrets: an API key's secret is returned once by :meth:`Store.create_key` and stored only as its
SHA-256 digest; audit rows hold key ids, never secrets or request bodies.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import Connection, Row, Select, Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from bastion.errors import BastionError, ConfigError, InvalidInputError, NotFoundError
from bastion.gateway.keys import ApiKey, Role, hash_secret, key_id_of, new_secret
from bastion.gateway.store.migrations import apply_migrations
from bastion.gateway.store.records import (
    AuditEvent,
    Decision,
    Feedback,
    Flag,
    FlagStatus,
    ItemKind,
    ItemStatus,
    PredictionRecord,
    ReviewDecision,
    Submission,
)
from bastion.gateway.store.schema import (
    CLIENT_MAX,
    ID_MAX,
    KIND_MAX,
    NAME_MAX,
    Database,
    api_keys,
    audit_events,
    clients,
    decisions,
    feedback,
    flags,
    mask_url,
    open_database,
    predictions,
    submissions,
)

__all__ = ["DETAIL_MAX", "MAX_LIMIT", "Store", "input_sha256", "utc_now"]

logger = logging.getLogger(__name__)

DETAIL_MAX = 500  # characters of an audit event's detail that are kept
MAX_LIMIT = 10_000  # the most rows one list call returns
_LABEL_MAX = 2**31 - 1  # labels are 32-bit integer columns
_SURROGATE = re.compile("[\ud800-\udfff]")
_DUMMY_HASH = "0" * 64  # compared against when a key id is unknown, so unknown and wrong cost the same
E = TypeVar("E", bound=Enum)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC: the store's default clock."""
    return datetime.now(UTC)


def input_sha256(x: np.ndarray) -> str:
    """SHA-256 hex of ``x`` as C-ordered ``.npy`` bytes (dtype and shape included): how the store names an input."""
    return hashlib.sha256(_npy_bytes(x)).hexdigest()


@dataclass(frozen=True)
class _Target:
    """How a reviewer's decision applies to one kind of item."""

    table: Table
    id_column: str
    pending: tuple[str, ...]  # statuses that still await a decision
    outcomes: Mapping[Decision, str]  # decision -> the item's new status


_ITEM_OUTCOMES = {Decision.APPROVE: ItemStatus.APPROVED.value, Decision.REJECT: ItemStatus.REJECTED.value}
_ITEM_PENDING = (ItemStatus.QUARANTINED.value, ItemStatus.OMITTED.value)
_TARGETS = {
    ItemKind.FEEDBACK: _Target(feedback, "feedback_id", _ITEM_PENDING, _ITEM_OUTCOMES),
    ItemKind.SUBMISSION: _Target(submissions, "submission_id", _ITEM_PENDING, _ITEM_OUTCOMES),
    ItemKind.FLAG: _Target(
        flags,
        "flag_id",
        (FlagStatus.OPEN.value,),
        {Decision.DISMISS: FlagStatus.DISMISSED.value, Decision.CONFIRM: FlagStatus.CONFIRMED.value},
    ),
}


class Store:
    """Durable, thread-safe records of the gateway, on SQLite or PostgreSQL; build it with :meth:`open`."""

    def __init__(self, db: Database, *, url: str, clock: Callable[[], datetime] = utc_now) -> None:
        self._db = db
        self._url = url
        self._clock = clock

    @classmethod
    def open(cls, url: str, *, clock: Callable[[], datetime] = utc_now) -> Store:
        """Reach the database at ``url``, bring its schema up to date, and return the store."""
        db = open_database(url)
        masked = mask_url(db.engine.url)
        try:
            apply_migrations(db, clock=clock, where=f"the store at {masked}")
        except OperationalError as error:
            db.dispose()
            reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
            raise ConfigError(f"cannot open the store at {masked}: {reason}") from error
        except BaseException:
            db.dispose()
            raise
        logger.info("store open at %s", masked)
        return cls(db, url=masked, clock=clock)

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        return self._url

    def close(self) -> None:
        """Close the store's connections; every write has already been committed."""
        self._db.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    # -- keys -------------------------------------------------------------------------------------

    def create_key(self, role: Role, name: str) -> tuple[str, ApiKey]:
        """A new key: its secret (shown only now) and its record; only the secret's hash is stored."""
        role = _enum(Role, role, "role")
        name = _text(name, "name", NAME_MAX, required=True)
        for _ in range(3):  # 48-bit key ids collide rarely; draw again if one does
            secret = new_secret()
            key = ApiKey(_secret_key_id(secret), name, role, self._now(), revoked=False)
            try:
                with self._db.write() as conn:
                    conn.execute(insert(api_keys).values(_key_row(key, secret)))
            except IntegrityError:
                logger.warning("key id %s already taken; drawing another", key.key_id)
                continue
            logger.info("created %s key %s (%s)", role.value, key.key_id, name)
            return secret, key
        raise BastionError("could not draw an unused key id in 3 attempts")

    def authenticate(self, secret: str) -> ApiKey | None:
        """The key whose secret this is; None for a malformed, unknown or revoked secret."""
        key_id = key_id_of(secret)
        if key_id is None:
            return None
        with self._db.read() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        stored = row.secret_hash if row is not None else _DUMMY_HASH
        matches = hmac.compare_digest(hash_secret(secret), stored)
        if row is None or not matches or row.revoked:
            return None
        return _api_key(row)

    def get_key(self, key_id: str) -> ApiKey | None:
        """The key with this id (revoked or not), or None; for sessions that name a key, never its secret."""
        if len(key_id) > ID_MAX:
            return None
        with self._db.read() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        return None if row is None else _api_key(row)

    def list_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        with self._db.read() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id)).all()
        return [_api_key(row) for row in rows]

    def revoke_key(self, key_id: str) -> None:
        """Revoke a key for good (again is a no-op); NotFoundError for an unknown id."""
        key_id = _text(key_id, "key_id", ID_MAX)
        with self._db.write() as conn:
            done = conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked.is_(False))
                .values(revoked=True, revoked_at=self._now())
            ).rowcount
            if not done and conn.execute(select(api_keys.c.key_id).where(api_keys.c.key_id == key_id)).first() is None:
                raise NotFoundError(f"no API key with id {key_id!r}")
        logger.info("revoked key %s", key_id)

    # -- audit ------------------------------------------------------------------------------------

    def audit(self, event: AuditEvent) -> None:
        """Append one event to the audit log (text truncated to fit, never refused)."""
        with self._db.write() as conn:
            conn.execute(insert(audit_events).values(_audit_row(event)))

    def write_batch(self, *, events: Sequence[AuditEvent] = (), records: Sequence[PredictionRecord] = ()) -> None:
        """Audit events and predictions in one transaction: the gateway's write-behind path."""
        if not events and not records:
            return
        with self._db.write() as conn:
            if events:
                conn.execute(insert(audit_events), [_audit_row(event) for event in events])
            if records:
                conn.execute(insert(predictions), [_prediction_row(p) for p in records])

    def audit_log(self, *, client: str | None = None, limit: int = 100) -> list[AuditEvent]:
        """The latest ``limit`` events, newest first, of one client or of all."""
        query = select(audit_events).order_by(audit_events.c.seq.desc()).limit(_limit(limit))
        if client is not None:
            query = query.where(audit_events.c.client == _text(client, "client"))
        with self._db.read() as conn:
            return [_audit_event(row) for row in conn.execute(query)]

    # -- predictions ------------------------------------------------------------------------------

    def record_prediction(self, p: PredictionRecord) -> None:
        """Keep a prediction; InvalidInputError if its id was recorded before."""
        row = _prediction_row(p)
        try:
            with self._db.write() as conn:
                conn.execute(insert(predictions).values(row))
        except IntegrityError as error:
            raise InvalidInputError(f"prediction {row['prediction_id']!r} was already recorded") from error

    def get_prediction(self, prediction_id: str) -> PredictionRecord | None:
        """The prediction with this id, or None."""
        query = select(predictions).where(predictions.c.prediction_id == _text(prediction_id, "prediction_id"))
        with self._db.read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _prediction(row)

    # -- feedback and submissions -----------------------------------------------------------------

    def add_feedback(self, *, client: str, prediction_id: str, correct: bool, label: int | None) -> str:
        """Quarantine a client's word on one of its own predictions; the feedback id.

        NotFoundError when ``prediction_id`` is unknown or was made for another client;
        InvalidInputError when ``label`` contradicts ``correct`` (a "correct" label other than
        the predicted one, or a "wrong" label equal to it).
        """
        client = _text(client, "client", CLIENT_MAX, required=True)
        prediction_id = _text(prediction_id, "prediction_id", ID_MAX, required=True)
        label = None if label is None else _label(label)
        if not isinstance(correct, (bool, np.bool_)):
            raise InvalidInputError(f"expected correct to be true or false, got {correct!r}")
        feedback_id = uuid.uuid4().hex
        with self._db.write() as conn:
            _lock_client(conn, self._db, client, exclusive=False)
            _check_feedback(conn, client, prediction_id, bool(correct), label)
            status = _intake_status(conn, client)
            conn.execute(
                insert(feedback).values(
                    feedback_id=feedback_id, time=self._now(), client=client, prediction_id=prediction_id,
                    correct=bool(correct), label=label, status=status.value,
                )
            )  # fmt: skip
        return feedback_id

    def add_submission(self, *, client: str, x: np.ndarray, label: int) -> str:
        """Quarantine a labelled example a client offers; the submission id."""
        client = _text(client, "client", CLIENT_MAX, required=True)
        data, label = _npy_bytes(x), _label(label)
        submission_id = uuid.uuid4().hex
        with self._db.write() as conn:
            _lock_client(conn, self._db, client, exclusive=False)
            status = _intake_status(conn, client)
            conn.execute(
                insert(submissions).values(
                    submission_id=submission_id, time=self._now(), client=client, x=data, label=label,
                    status=status.value, input_sha256=hashlib.sha256(data).hexdigest(),
                )
            )  # fmt: skip
        return submission_id

    def get_submission(self, submission_id: str) -> Submission | None:
        """The submission with this id, its input loaded without pickle, or None."""
        query = select(submissions).where(submissions.c.submission_id == _text(submission_id, "submission_id"))
        with self._db.read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _submission(row)

    def list_feedback(
        self, *, status: ItemStatus | None = None, client: str | None = None, limit: int = 100
    ) -> list[Feedback]:
        """Feedback, newest first, optionally of one status or client."""
        query = _filtered(feedback, status=_optional_status(status), client=client, limit=limit)
        with self._db.read() as conn:
            return [_feedback(row) for row in conn.execute(query)]

    def list_submissions(
        self, *, status: ItemStatus | None = None, client: str | None = None, limit: int = 100
    ) -> list[Submission]:
        """Submissions (inputs included), newest first, optionally of one status or client."""
        query = _filtered(submissions, status=_optional_status(status), client=client, limit=limit)
        with self._db.read() as conn:
            return [_submission(row) for row in conn.execute(query)]

    def set_client_omitted(self, client: str, omitted: bool) -> None:
        """Omit a client (its undecided items become "omitted", and so will new ones), or take it back."""
        client = _text(client, "client", CLIENT_MAX, required=True)
        if not isinstance(omitted, (bool, np.bool_)):
            raise InvalidInputError(f"expected omitted to be true or false, got {omitted!r}")
        old, new = (
            (ItemStatus.QUARANTINED, ItemStatus.OMITTED) if omitted else (ItemStatus.OMITTED, ItemStatus.QUARANTINED)
        )
        with self._db.write() as conn:
            _lock_client(conn, self._db, client, exclusive=True)
            _set_client_row(conn, client, omitted=bool(omitted), now=self._now())
            for table in (feedback, submissions):
                conn.execute(
                    update(table).where(table.c.client == client, table.c.status == old.value).values(status=new.value)
                )
        logger.info("client %s %s", client, "omitted" if omitted else "no longer omitted")

    def omitted_clients(self) -> list[str]:
        """The clients currently omitted, sorted."""
        query = select(clients.c.client).where(clients.c.omitted.is_(True)).order_by(clients.c.client)
        with self._db.read() as conn:
            return list(conn.execute(query).scalars())

    # -- flags ------------------------------------------------------------------------------------

    def add_flag(
        self,
        *,
        client: str,
        kind: str,
        reason: str,
        evidence: Mapping[str, object],
        prediction_id: str | None = None,
        linked_clients: Sequence[str] = (),
    ) -> str:
        """Record what a monitor noticed about a client (``evidence`` must be JSON-serialisable); the flag id."""
        row = {
            "flag_id": uuid.uuid4().hex,
            "time": self._now(),
            "client": _text(client, "client", CLIENT_MAX, required=True),
            "kind": _text(kind, "kind", KIND_MAX, required=True),
            "reason": _text(reason, "reason"),
            "evidence": _evidence_json(evidence),
            "prediction_id": None if prediction_id is None else _text(prediction_id, "prediction_id", ID_MAX),
            "linked_clients": json.dumps(_clients(linked_clients)),
            "status": FlagStatus.OPEN.value,
        }
        with self._db.write() as conn:
            conn.execute(insert(flags).values(row))
        return str(row["flag_id"])

    def list_flags(self, *, client: str | None = None, open_only: bool = True, limit: int = 100) -> list[Flag]:
        """Flags, newest first: open ones only by default, optionally of one client."""
        status = FlagStatus.OPEN.value if open_only else None
        query = _filtered(flags, status=status, client=client, limit=limit)
        with self._db.read() as conn:
            return [_flag(row) for row in conn.execute(query)]

    # -- review -----------------------------------------------------------------------------------

    def decide(
        self,
        *,
        kind: ItemKind,
        item_id: str,
        decision: Decision,
        reviewer: str,
        reason: str,
        request_id: str | None = None,
    ) -> ReviewDecision:
        """Decide an item: its status, the decision row and an audit event change in one transaction.

        Feedback and submissions take approve or reject (omitted ones too); flags take dismiss or
        confirm. NotFoundError for an unknown id; InvalidInputError for an item already decided.
        """
        kind, decision = _enum(ItemKind, kind, "kind"), _enum(Decision, decision, "decision")
        target = _TARGETS[kind]
        if decision not in target.outcomes:
            allowed = ", ".join(d.value for d in target.outcomes)
            raise InvalidInputError(f"expected a decision on a {kind.value} in {{{allowed}}}, got {decision.value!r}")
        record = ReviewDecision(
            uuid.uuid4().hex, self._now(), kind, _text(item_id, "item_id", ID_MAX, required=True), decision,
            _text(reviewer, "reviewer", CLIENT_MAX, required=True), _text(reason, "reason"),
        )  # fmt: skip
        with self._db.write() as conn:
            _transition(conn, target, record)
            conn.execute(insert(decisions).values(_decision_row(record)))
            conn.execute(insert(audit_events).values(_audit_row(_decision_event(record, request_id))))
        logger.info("%s %s %s by %s", decision.value, kind.value, record.item_id, record.reviewer)
        return record

    def list_decisions(self, limit: int = 100) -> list[ReviewDecision]:
        """The latest decisions, newest first."""
        query = select(decisions).order_by(decisions.c.time.desc(), decisions.c.decision_id).limit(_limit(limit))
        with self._db.read() as conn:
            return [_review_decision(row) for row in conn.execute(query)]

    def counts(self) -> dict[str, int]:
        """Item counts by status, active and revoked keys, omitted clients: every key always present."""
        with self._db.read() as conn:
            result = _status_counts(conn, "feedback", feedback, ItemStatus)
            result |= _status_counts(conn, "submissions", submissions, ItemStatus)
            result |= _status_counts(conn, "flags", flags, FlagStatus)
            keys: dict[bool, int] = dict(
                conn.execute(select(api_keys.c.revoked, func.count()).group_by(api_keys.c.revoked)).all()
            )
            omitted = conn.execute(select(func.count()).where(clients.c.omitted.is_(True))).scalar_one()
        result |= {"keys_active": int(keys.get(False, 0)), "keys_revoked": int(keys.get(True, 0))}
        return result | {"clients_omitted": int(omitted)}

    def _now(self) -> datetime:
        """The injected clock's time, checked to be timezone-aware."""
        return _aware(self._clock(), "the store's clock")


# -- transactions' steps ---------------------------------------------------------------------------


def _lock_client(conn: Connection, db: Database, client: str, *, exclusive: bool) -> None:
    """Serialise omitting a client against adding its items (SQLite's BEGIN IMMEDIATE already does)."""
    if not db.is_postgres:
        return
    key = int.from_bytes(hashlib.sha256(f"bastion.client:{client}".encode()).digest()[:8], "big", signed=True)
    lock = func.pg_advisory_xact_lock if exclusive else func.pg_advisory_xact_lock_shared
    conn.execute(select(lock(key)))


def _intake_status(conn: Connection, client: str) -> ItemStatus:
    """The status a new item of ``client`` gets: omitted while its client is."""
    omitted = conn.execute(select(clients.c.omitted).where(clients.c.client == client)).scalar_one_or_none()
    return ItemStatus.OMITTED if omitted else ItemStatus.QUARANTINED


def _set_client_row(conn: Connection, client: str, *, omitted: bool, now: datetime) -> None:
    """Insert or update the client's row (the caller holds the client's lock)."""
    done = conn.execute(update(clients).where(clients.c.client == client).values(omitted=omitted, updated_at=now))
    if not done.rowcount:
        conn.execute(insert(clients).values(client=client, omitted=omitted, updated_at=now))


def _check_feedback(conn: Connection, client: str, prediction_id: str, correct: bool, label: int | None) -> None:
    """The prediction exists, is the client's own, and ``label`` agrees with ``correct``."""
    query = select(predictions.c.client, predictions.c.label).where(predictions.c.prediction_id == prediction_id)
    prediction = conn.execute(query).first()
    if prediction is None or prediction.client != client:
        raise NotFoundError(f"no prediction {prediction_id!r} was made for client {client!r}")
    if label is not None and correct and label != prediction.label:
        raise InvalidInputError(f"feedback says prediction {prediction.label} was correct but gives label {label}")
    if label is not None and not correct and label == prediction.label:
        raise InvalidInputError(f"feedback says prediction {label} was wrong but gives the same label")


def _transition(conn: Connection, target: _Target, record: ReviewDecision) -> None:
    """Move a pending item to the decision's status, or explain why it cannot move."""
    id_column, status = target.table.c[target.id_column], target.table.c.status
    moved = conn.execute(
        update(target.table)
        .where(id_column == record.item_id, status.in_(target.pending))
        .values(status=target.outcomes[record.decision])
    ).rowcount
    if moved:
        return
    current = conn.execute(select(status).where(id_column == record.item_id)).scalar_one_or_none()
    if current is None:
        raise NotFoundError(f"no {record.kind.value} with id {record.item_id!r}")
    raise InvalidInputError(f"{record.kind.value} {record.item_id!r} was already decided: its status is {current!r}")


def _decision_event(record: ReviewDecision, request_id: str | None) -> AuditEvent:
    """The audit event a decision writes (the request's own event carries the role)."""
    return AuditEvent(
        request_id=request_id or record.decision_id, time=record.time, client=record.reviewer, role=None,
        endpoint="review", action=f"{record.decision.value} {record.kind.value}", outcome="ok", status=200,
        code=None, detail=f"{record.kind.value} {record.item_id}: {record.reason}", duration_ms=0.0,
    )  # fmt: skip


def _status_counts(conn: Connection, prefix: str, table: Table, statuses: type[Enum]) -> dict[str, int]:
    """``{prefix_status: n}`` for every status, zeros included."""
    found: dict[str, int] = dict(conn.execute(select(table.c.status, func.count()).group_by(table.c.status)).all())
    return {f"{prefix}_{s.value}": int(found.get(s.value, 0)) for s in statuses}


def _filtered(table: Table, *, status: str | None, client: str | None, limit: int) -> Select[Any]:
    """``SELECT`` newest first from ``table``, optionally of one status and one client."""
    id_column = table.primary_key.columns.values()[0]
    query = select(table).order_by(table.c.time.desc(), id_column).limit(_limit(limit))
    if status is not None:
        query = query.where(table.c.status == status)
    if client is not None:
        query = query.where(table.c.client == _text(client, "client"))
    return query


# -- rows to records and back ----------------------------------------------------------------------


def _key_row(key: ApiKey, secret: str) -> dict[str, object]:
    return {
        "key_id": key.key_id, "secret_hash": hash_secret(secret), "name": key.name, "role": key.role.value,
        "created_at": key.created_at, "revoked": False,
    }  # fmt: skip


def _api_key(row: Row[Any]) -> ApiKey:
    return ApiKey(row.key_id, row.name, Role(row.role), row.created_at, bool(row.revoked))


def _audit_row(event: AuditEvent) -> dict[str, object]:
    """The event as a row: text cleaned and truncated to its column, never refused."""
    return {
        "request_id": _clip(event.request_id, ID_MAX),
        "time": _aware(event.time, "the audit event's time"),
        "client": None if event.client is None else _clip(event.client, CLIENT_MAX),
        "role": None if event.role is None else Role(event.role).value,
        "endpoint": _clip(event.endpoint, None),
        "action": _clip(event.action, None),
        "outcome": _clip(event.outcome, 16),
        "status": int(event.status),
        "code": None if event.code is None else _clip(event.code, KIND_MAX),
        "detail": _clip(event.detail, DETAIL_MAX),
        "duration_ms": float(event.duration_ms),
    }


def _audit_event(row: Row[Any]) -> AuditEvent:
    return AuditEvent(
        request_id=row.request_id, time=row.time, client=row.client, role=None if row.role is None else Role(row.role),
        endpoint=row.endpoint, action=row.action, outcome=row.outcome, status=row.status, code=row.code,
        detail=row.detail, duration_ms=row.duration_ms,
    )  # fmt: skip


def _prediction_row(p: PredictionRecord) -> dict[str, object]:
    try:
        scores = [float(s) for s in p.scores]
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"expected scores to be numbers, got {p.scores!r}") from error
    return {
        "prediction_id": _text(p.prediction_id, "prediction_id", ID_MAX, required=True),
        "time": _aware(p.time, "the prediction's time"),
        "client": _text(p.client, "client", CLIENT_MAX, required=True),
        "label": _label(p.label),
        "scores": json.dumps(scores),
        "input_sha256": _text(p.input_sha256, "input_sha256", 64, required=True),
        "x": None if p.x is None else _npy_bytes(p.x),
    }


def _prediction(row: Row[Any]) -> PredictionRecord:
    scores = tuple(float(s) for s in json.loads(row.scores))
    x = None if row.x is None else np.load(io.BytesIO(row.x), allow_pickle=False)
    return PredictionRecord(row.prediction_id, row.time, row.client, row.label, scores, row.input_sha256, x)


def _feedback(row: Row[Any]) -> Feedback:
    return Feedback(
        row.feedback_id, row.time, row.client, row.prediction_id, bool(row.correct), row.label, ItemStatus(row.status)
    )


def _submission(row: Row[Any]) -> Submission:
    try:
        x = np.load(io.BytesIO(row.x), allow_pickle=False)
    except ValueError as error:  # e.g. an object array: only a pickle could load it, and none ever is
        raise BastionError(f"submission {row.submission_id} holds an input that cannot be loaded: {error}") from error
    return Submission(row.submission_id, row.time, row.client, x, row.label, ItemStatus(row.status), row.input_sha256)


def _flag(row: Row[Any]) -> Flag:
    return Flag(
        row.flag_id, row.time, row.client, row.kind, row.reason, json.loads(row.evidence), row.prediction_id,
        tuple(json.loads(row.linked_clients)), FlagStatus(row.status),
    )  # fmt: skip


def _decision_row(record: ReviewDecision) -> dict[str, object]:
    return {
        "decision_id": record.decision_id, "time": record.time, "kind": record.kind.value, "item_id": record.item_id,
        "decision": record.decision.value, "reviewer": record.reviewer, "reason": record.reason,
    }  # fmt: skip


def _review_decision(row: Row[Any]) -> ReviewDecision:
    return ReviewDecision(
        row.decision_id, row.time, ItemKind(row.kind), row.item_id, Decision(row.decision), row.reviewer, row.reason
    )


# -- validation of what callers pass ---------------------------------------------------------------


def _clean(value: str) -> str:
    """``value`` without NUL characters and with lone surrogates replaced by U+FFFD (see the module docstring)."""
    value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = _SURROGATE.sub("\ufffd", value)
    return value


def _clip(value: str, limit: int | None) -> str:
    """``value`` cleaned and cut to ``limit`` characters: for audit fields, which are never refused."""
    cleaned = _clean(str(value))
    return cleaned if limit is None else cleaned[:limit]


def _text(value: str, name: str, limit: int | None = None, *, required: bool = False) -> str:
    """``value`` cleaned; InvalidInputError if it is not a string, is too long, or is empty when required."""
    if not isinstance(value, str):
        raise InvalidInputError(f"expected {name} to be a string, got {type(value).__name__}")
    cleaned = _clean(value)
    if limit is not None and len(cleaned) > limit:
        raise InvalidInputError(f"expected {name} of at most {limit} characters, got {len(cleaned)}")
    if required and not cleaned:
        raise InvalidInputError(f"expected a non-empty {name}, got {value!r}")
    return cleaned


def _label(value: int) -> int:
    """A class label: an integer in [0, 2**31)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"expected label to be an integer, got {value!r}")
    if not 0 <= int(value) <= _LABEL_MAX:
        raise InvalidInputError(f"expected label in [0, {_LABEL_MAX}], got {int(value)}")
    return int(value)


def _limit(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidInputError(f"expected limit in [1, {MAX_LIMIT}], got {value!r}")
    return value


def _enum(enum_type: type[E], value: object, name: str) -> E:
    """``value`` as a member of ``enum_type``; InvalidInputError listing the choices otherwise."""
    try:
        return enum_type(value)
    except ValueError as error:
        choices = ", ".join(str(m.value) for m in enum_type)
        raise InvalidInputError(f"expected {name} in {{{choices}}}, got {value!r}") from error


def _optional_status(status: ItemStatus | None) -> str | None:
    return None if status is None else _enum(ItemStatus, status, "status").value


def _aware(value: datetime, name: str) -> datetime:
    """``value`` if it is a timezone-aware datetime (the store keeps UTC)."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidInputError(f"expected {name} to be a timezone-aware datetime, got {value!r}")
    return value


def _npy_bytes(x: np.ndarray) -> bytes:
    """``x`` as C-ordered ``.npy`` bytes; InvalidInputError unless it is a numeric array."""
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "biuf":
        shown = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
        raise InvalidInputError(f"expected x to be a numeric numpy array (bool, int or float), got {shown}")
    buffer = io.BytesIO()
    # Not np.ascontiguousarray: it turns a 0-d array into a 1-d one.
    np.save(buffer, x if x.flags.c_contiguous else np.copy(x, order="C"), allow_pickle=False)
    return buffer.getvalue()


def _evidence_json(evidence: Mapping[str, object]) -> str:
    """``evidence`` as JSON text (ASCII: NUL and lone surrogates survive, escaped)."""
    if not isinstance(evidence, Mapping):
        raise InvalidInputError(f"expected evidence to be a mapping, got {type(evidence).__name__}")
    try:
        return json.dumps(dict(evidence), default=_json_default, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"expected evidence to be JSON-serialisable: {error}") from error


def _json_default(value: object) -> object:
    """numpy scalars and arrays as plain Python values; TypeError for anything else."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _clients(values: Sequence[str]) -> list[str]:
    """Linked client names, each checked like a client."""
    if isinstance(values, str):
        raise InvalidInputError(f"expected linked_clients to be a sequence of names, got the string {values!r}")
    return [_text(v, "linked client", CLIENT_MAX, required=True) for v in values]


def _secret_key_id(secret: str) -> str:
    key_id = key_id_of(secret)
    if key_id is None:  # new_secret() always makes a well-formed secret
        raise BastionError("new_secret() made a malformed secret")
    return key_id
