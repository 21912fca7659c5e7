"""Value types the gateway store reads and writes: audit events, predictions, quarantined items, flags, decisions.

Every ``time`` is timezone-aware UTC; ids are uuid4 hex. Feedback and submissions wait in
quarantine (``ItemStatus.QUARANTINED``) until a reviewer approves or rejects them; a monitor may
set a client's items aside (``OMITTED``). Flags stay ``OPEN`` until a reviewer dismisses or
confirms them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from bastion.gateway.keys import Role

__all__ = [
    "AuditEvent",
    "Decision",
    "Feedback",
    "Flag",
    "FlagStatus",
    "ItemKind",
    "ItemStatus",
    "PredictionRecord",
    "ReviewDecision",
    "Submission",
]


class ItemKind(str, enum.Enum):
    """What a reviewer decides on."""

    FEEDBACK = "feedback"
    SUBMISSION = "submission"
    FLAG = "flag"


class ItemStatus(str, enum.Enum):
    """Where a feedback or submission stands."""

    QUARANTINED = "quarantined"  # waiting for a reviewer
    OMITTED = "omitted"  # its client is omitted by a monitor; a reviewer may still decide it
    APPROVED = "approved"
    REJECTED = "rejected"


class FlagStatus(str, enum.Enum):
    """Where a monitor's flag stands."""

    OPEN = "open"
    DISMISSED = "dismissed"
    CONFIRMED = "confirmed"


class Decision(str, enum.Enum):
    """A reviewer's verdict: approve or reject feedback and submissions, dismiss or confirm flags."""

    APPROVE = "approve"
    REJECT = "reject"
    DISMISS = "dismiss"
    CONFIRM = "confirm"


@dataclass(frozen=True)
class AuditEvent:
    """One request (or review decision) and what the gateway did with it; never secrets or bodies."""

    request_id: str
    time: datetime
    client: str | None  # the key id, None before authentication
    role: Role | None
    endpoint: str
    action: str
    outcome: str  # "ok", "rejected", "error"
    status: int  # the HTTP status sent
    code: str | None  # the RequestRejectedError code, if any
    detail: str  # truncated to 500 characters when stored
    duration_ms: float


@dataclass(frozen=True)
class PredictionRecord:
    """A prediction the gateway answered, kept so that feedback and monitors can refer to it."""

    prediction_id: str
    time: datetime
    client: str
    label: int
    scores: tuple[float, ...]
    input_sha256: str
    x: np.ndarray | None = field(default=None, compare=False, repr=False)  # the input, when kept


@dataclass(frozen=True)
class Feedback:
    """A client's word on an earlier prediction: right or wrong, and maybe the right label."""

    feedback_id: str
    time: datetime
    client: str
    prediction_id: str
    correct: bool
    label: int | None
    status: ItemStatus


@dataclass(frozen=True)
class Submission:
    """A labelled training example offered by a client; equality goes by ``input_sha256``, not ``x``."""

    submission_id: str
    time: datetime
    client: str
    x: np.ndarray = field(compare=False, repr=False)
    label: int
    status: ItemStatus
    input_sha256: str  # of the .npy bytes: see bastion.gateway.store.input_sha256


@dataclass(frozen=True)
class Flag:
    """Something a monitor noticed about a client, with the evidence, for a reviewer."""

    flag_id: str
    time: datetime
    client: str
    kind: str
    reason: str
    evidence: dict[str, object]
    prediction_id: str | None
    linked_clients: tuple[str, ...]
    status: FlagStatus


@dataclass(frozen=True)
class ReviewDecision:
    """A reviewer's decision on one item, with their reason."""

    decision_id: str
    time: datetime
    kind: ItemKind
    item_id: str
    decision: Decision
    reviewer: str
    reason: str
