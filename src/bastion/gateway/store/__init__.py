"""The gateway's durable records (keys, audit log, predictions, quarantine, flags, reviews) on SQLite or PostgreSQL."""

from bastion.gateway.store.migrations import MIGRATIONS, Migration, apply_migrations
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
from bastion.gateway.store.store import DETAIL_MAX, Store, input_sha256, utc_now

__all__ = [
    "DETAIL_MAX",
    "MIGRATIONS",
    "AuditEvent",
    "Decision",
    "Feedback",
    "Flag",
    "FlagStatus",
    "ItemKind",
    "ItemStatus",
    "Migration",
    "PredictionRecord",
    "ReviewDecision",
    "Store",
    "Submission",
    "apply_migrations",
    "input_sha256",
    "utc_now",
]
