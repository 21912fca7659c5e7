"""Reviewers' decisions: item status, decision row and audit event change together, once; and the counts."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import select

from bastion.errors import InvalidInputError, NotFoundError
from bastion.gateway.store import (
    Decision,
    FlagStatus,
    ItemKind,
    ItemStatus,
    PredictionRecord,
    ReviewDecision,
    Store,
)
from bastion.gateway.store.schema import decisions, open_database

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ALICE = "a11ce0000000"


def feedback_item(store: Store, n: int = 0) -> str:
    prediction_id = f"pred-{n}"
    store.record_prediction(PredictionRecord(prediction_id, START, ALICE, 1, (0.4, 0.6), "ab" * 32))
    return store.add_feedback(client=ALICE, prediction_id=prediction_id, correct=False, label=0)


def test_deciding_feedback_updates_status_and_writes_decision_and_audit(store: Store) -> None:
    feedback_id = feedback_item(store)
    made = store.decide(
        kind=ItemKind.FEEDBACK, item_id=feedback_id, decision=Decision.APPROVE, reviewer="rev1", reason="label checked",
        request_id="req-77",
    )  # fmt: skip
    assert made == ReviewDecision(
        made.decision_id, made.time, ItemKind.FEEDBACK, feedback_id, Decision.APPROVE, "rev1", "label checked"
    )
    assert store.list_feedback()[0].status is ItemStatus.APPROVED
    assert store.list_decisions() == [made]
    (audited,) = store.audit_log(client="rev1")
    assert (audited.request_id, audited.action, audited.outcome, audited.status) == (
        "req-77", "approve feedback", "ok", 200,
    )  # fmt: skip
    assert audited.detail == f"feedback {feedback_id}: label checked" and audited.time == made.time


@pytest.mark.parametrize(
    ("kind", "decision", "status"),
    [
        (ItemKind.SUBMISSION, Decision.APPROVE, ItemStatus.APPROVED),
        (ItemKind.SUBMISSION, Decision.REJECT, ItemStatus.REJECTED),
        (ItemKind.FLAG, Decision.CONFIRM, FlagStatus.CONFIRMED),
        (ItemKind.FLAG, Decision.DISMISS, FlagStatus.DISMISSED),
    ],
)
def test_each_kind_takes_its_decisions(store: Store, kind: ItemKind, decision: Decision, status: str) -> None:
    if kind is ItemKind.SUBMISSION:
        item_id = store.add_submission(client=ALICE, x=np.zeros(4), label=1)
        current = lambda: store.list_submissions()[0].status  # noqa: E731
    else:
        item_id = store.add_flag(client=ALICE, kind="probe", reason="r", evidence={"n": 1})
        current = lambda: store.list_flags(open_only=False)[0].status  # noqa: E731
    store.decide(kind=kind.value, item_id=item_id, decision=decision.value, reviewer="r", reason="why")  # type: ignore[arg-type]
    assert current() == status
    assert store.audit_log()[0].action == f"{decision.value} {kind.value}"


def test_a_decided_item_cannot_be_decided_again(store: Store) -> None:
    feedback_id = feedback_item(store)
    first = store.decide(
        kind=ItemKind.FEEDBACK, item_id=feedback_id, decision=Decision.REJECT, reviewer="a", reason="x"
    )
    with pytest.raises(
        InvalidInputError, match=f"feedback '{feedback_id}' was already decided: its status is 'rejected'"
    ):
        store.decide(kind=ItemKind.FEEDBACK, item_id=feedback_id, decision=Decision.APPROVE, reviewer="b", reason="y")
    assert store.list_decisions() == [first]
    assert store.list_feedback()[0].status is ItemStatus.REJECTED
    assert len(store.audit_log()) == 1


def test_unknown_items_are_not_found_and_nothing_is_written(store: Store) -> None:
    for kind in ItemKind:
        decision = Decision.CONFIRM if kind is ItemKind.FLAG else Decision.APPROVE
        with pytest.raises(NotFoundError, match=f"no {kind.value} with id 'nope'"):
            store.decide(kind=kind, item_id="nope", decision=decision, reviewer="r", reason="x")
    assert store.list_decisions() == [] and store.audit_log() == []


@pytest.mark.parametrize(
    ("kind", "decision", "match"),
    [
        (ItemKind.FLAG, "approve", r"expected a decision on a flag in \{dismiss, confirm\}, got 'approve'"),
        (ItemKind.FEEDBACK, "dismiss", r"expected a decision on a feedback in \{approve, reject\}, got 'dismiss'"),
        ("prediction", "approve", r"expected kind in \{feedback, submission, flag\}, got 'prediction'"),
        (ItemKind.FEEDBACK, "maybe", r"expected decision in \{approve, reject, dismiss, confirm\}, got 'maybe'"),
    ],
)
def test_decisions_must_fit_the_kind(memory_store: Store, kind: str, decision: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        memory_store.decide(kind=kind, item_id="x", decision=decision, reviewer="r", reason="x")  # type: ignore[arg-type]


def test_decide_is_one_transaction_a_failed_audit_write_undoes_the_status(store: Store, store_url: str) -> None:
    """With the audit table gone, the audit insert (the last step) fails: nothing of the decision may remain."""
    feedback_id = feedback_item(store)
    db = open_database(store_url)
    try:
        with db.write() as conn:
            conn.exec_driver_sql("ALTER TABLE audit_events RENAME TO audit_events_away")
        with pytest.raises(Exception, match="audit_events"):
            store.decide(
                kind=ItemKind.FEEDBACK, item_id=feedback_id, decision=Decision.APPROVE, reviewer="r", reason="x"
            )
        with db.read() as conn:
            assert conn.execute(select(decisions)).all() == []
        with db.write() as conn:
            conn.exec_driver_sql("ALTER TABLE audit_events_away RENAME TO audit_events")
    finally:
        db.dispose()
    assert store.list_feedback()[0].status is ItemStatus.QUARANTINED
    assert store.list_decisions() == [] and store.audit_log() == []
    store.decide(kind=ItemKind.FEEDBACK, item_id=feedback_id, decision=Decision.APPROVE, reviewer="r", reason="x")
    assert store.list_feedback()[0].status is ItemStatus.APPROVED


def test_two_reviewers_racing_on_one_item_one_wins(store: Store) -> None:
    flag_id = store.add_flag(client=ALICE, kind="probe", reason="r", evidence={})
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def review(n: int) -> None:
        barrier.wait(timeout=30)
        decision = Decision.CONFIRM if n % 2 else Decision.DISMISS
        try:
            store.decide(kind=ItemKind.FLAG, item_id=flag_id, decision=decision, reviewer=f"rev{n}", reason="race")
            outcomes.append("won")
        except InvalidInputError:
            outcomes.append("already decided")

    threads = [threading.Thread(target=review, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["already decided"] * 3 + ["won"]
    assert len(store.list_decisions()) == 1 and len(store.audit_log()) == 1


def test_decisions_are_listed_newest_first(store: Store) -> None:
    items = [feedback_item(store, n) for n in range(3)]
    made = [
        store.decide(kind=ItemKind.FEEDBACK, item_id=item, decision=Decision.APPROVE, reviewer="r", reason=item)
        for item in items
    ]
    assert store.list_decisions() == made[::-1]
    assert store.list_decisions(limit=2) == made[:0:-1]


def test_counts_have_every_key_from_the_start_and_follow_the_items(store: Store) -> None:
    empty = store.counts()
    assert set(empty) == {
        *(f"feedback_{s.value}" for s in ItemStatus), *(f"submissions_{s.value}" for s in ItemStatus),
        *(f"flags_{s.value}" for s in FlagStatus), "keys_active", "keys_revoked", "clients_omitted",
    }  # fmt: skip
    assert set(empty.values()) == {0}
    feedback_item(store)
    submission_id = store.add_submission(client=ALICE, x=np.zeros(1), label=0)
    store.add_submission(client=ALICE, x=np.zeros(1), label=0)
    store.add_flag(client=ALICE, kind="k", reason="r", evidence={})
    store.decide(kind=ItemKind.SUBMISSION, item_id=submission_id, decision=Decision.REJECT, reviewer="r", reason="x")
    counts = store.counts()
    assert {k: v for k, v in counts.items() if v} == {
        "feedback_quarantined": 1, "submissions_quarantined": 1, "submissions_rejected": 1, "flags_open": 1,
    }  # fmt: skip
