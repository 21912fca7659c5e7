"""Quarantined feedback and submissions, omitted clients, and monitors' flags."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import update

from bastion.errors import BastionError, InvalidInputError, NotFoundError
from bastion.gateway.store import (
    Feedback,
    FlagStatus,
    ItemStatus,
    PredictionRecord,
    Store,
    input_sha256,
)
from bastion.gateway.store.schema import open_database, submissions

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ALICE, BOB = "a11ce0000000", "b0b000000000"


def predict(store: Store, client: str = ALICE, label: int = 3, n: int = 0) -> str:
    prediction_id = f"{client}-pred-{n}"
    store.record_prediction(PredictionRecord(prediction_id, START, client, label, (0.2, 0.8), "ab" * 32))
    return prediction_id


# -- feedback -------------------------------------------------------------------------------------


def test_feedback_is_quarantined_and_listed_newest_first(store: Store) -> None:
    first = store.add_feedback(client=ALICE, prediction_id=predict(store), correct=False, label=5)
    second = store.add_feedback(client=ALICE, prediction_id=predict(store, n=1), correct=True, label=None)
    listed = store.list_feedback()
    assert [f.feedback_id for f in listed] == [second, first]
    assert listed[1] == Feedback(first, listed[1].time, ALICE, f"{ALICE}-pred-0", False, 5, ItemStatus.QUARANTINED)
    assert listed[0].time > listed[1].time and listed[0].time.tzinfo == UTC
    assert store.list_feedback(status=ItemStatus.APPROVED) == []
    assert store.list_feedback(client=BOB) == []
    assert [f.feedback_id for f in store.list_feedback(limit=1)] == [second]


def test_feedback_only_on_the_clients_own_known_predictions(store: Store) -> None:
    bobs = predict(store, client=BOB)
    with pytest.raises(NotFoundError, match=f"no prediction '{bobs}' was made for client '{ALICE}'"):
        store.add_feedback(client=ALICE, prediction_id=bobs, correct=False, label=1)
    with pytest.raises(NotFoundError, match="no prediction 'nope'"):
        store.add_feedback(client=ALICE, prediction_id="nope", correct=True, label=None)
    assert store.list_feedback() == []


@pytest.mark.parametrize(
    ("correct", "label", "match"),
    [
        (True, 4, "says prediction 3 was correct but gives label 4"),
        (False, 3, "says prediction 3 was wrong but gives the same label"),
        (1, None, "expected correct to be true or false, got 1"),
        (False, -2, r"expected label in \[0, "),
    ],
)
def test_contradictory_or_malformed_feedback_is_refused(store: Store, correct: bool, label: int, match: str) -> None:
    prediction_id = predict(store, label=3)
    with pytest.raises(InvalidInputError, match=match):
        store.add_feedback(client=ALICE, prediction_id=prediction_id, correct=correct, label=label)
    assert store.list_feedback() == []


# -- submissions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x",
    [
        np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 8, 8),
        np.arange(12, dtype=np.uint8).reshape(3, 4),
        np.array([True, False]),
        np.array(0.5),
    ],
    ids=["float32", "uint8", "bool", "scalar"],
)
def test_submissions_round_trip_their_input_exactly(store: Store, x: np.ndarray) -> None:
    submission_id = store.add_submission(client=ALICE, x=x, label=7)
    got = store.get_submission(submission_id)
    assert got is not None
    assert (got.client, got.label, got.status, got.input_sha256) == (ALICE, 7, ItemStatus.QUARANTINED, input_sha256(x))
    assert got.x.dtype == x.dtype and got.x.shape == x.shape
    np.testing.assert_array_equal(got.x, x)
    assert store.get_submission("missing") is None


def test_input_digest_ignores_memory_layout_but_not_dtype() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert input_sha256(np.asfortranarray(x)) == input_sha256(x)
    assert input_sha256(x.astype(np.float64)) != input_sha256(x)
    buffer = io.BytesIO()
    np.save(buffer, x, allow_pickle=False)
    assert input_sha256(x) == hashlib.sha256(buffer.getvalue()).hexdigest()


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.array([{"a": 1}], dtype=object), "expected x to be a numeric numpy array .*, got object"),
        (np.array(["a", "b"]), "got <U1"),
        ([1.0, 2.0], "got list"),
        (np.array([1 + 2j]), "got complex128"),
    ],
)
def test_non_numeric_submissions_are_refused(memory_store: Store, x: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        memory_store.add_submission(client=ALICE, x=x, label=1)  # type: ignore[arg-type]


def test_a_stored_pickle_is_never_loaded(store: Store, store_url: str) -> None:
    submission_id = store.add_submission(client=ALICE, x=np.zeros(2), label=0)
    buffer = io.BytesIO()
    np.save(buffer, np.array([object()], dtype=object), allow_pickle=True)  # what an attacker might plant
    db = open_database(store_url)
    try:
        with db.write() as conn:
            conn.execute(update(submissions).values(x=buffer.getvalue()))
    finally:
        db.dispose()
    with pytest.raises(BastionError, match=f"submission {submission_id} holds an input that cannot be loaded"):
        store.get_submission(submission_id)


def test_list_submissions_filters_by_client_and_status(store: Store) -> None:
    mine = [store.add_submission(client=ALICE, x=np.full(3, i, dtype=np.float32), label=i) for i in range(3)]
    theirs = store.add_submission(client=BOB, x=np.zeros(3), label=0)
    assert [s.submission_id for s in store.list_submissions(client=ALICE)] == mine[::-1]
    assert [s.submission_id for s in store.list_submissions(status=ItemStatus.QUARANTINED, client=BOB)] == [theirs]
    np.testing.assert_array_equal(store.list_submissions(client=ALICE)[0].x, np.full(3, 2, dtype=np.float32))
    with pytest.raises(InvalidInputError, match="expected status in"):
        store.list_submissions(status="pending")  # type: ignore[arg-type]


# -- omitted clients ------------------------------------------------------------------------------


def test_omitting_a_client_sets_its_pending_items_aside_and_new_ones_too(store: Store) -> None:
    early = store.add_feedback(client=ALICE, prediction_id=predict(store), correct=False, label=1)
    decided = store.add_submission(client=ALICE, x=np.zeros(2), label=1)
    store.decide(kind="submission", item_id=decided, decision="approve", reviewer="rev", reason="ok")  # type: ignore[arg-type]
    pending = store.add_submission(client=ALICE, x=np.ones(2), label=1)
    bobs = store.add_submission(client=BOB, x=np.ones(2), label=2)

    store.set_client_omitted(ALICE, True)
    late = store.add_submission(client=ALICE, x=np.ones(2), label=0)
    late_feedback = store.add_feedback(client=ALICE, prediction_id=predict(store, n=1), correct=True, label=None)

    status = {s.submission_id: s.status for s in store.list_submissions()}
    assert status == {
        decided: ItemStatus.APPROVED, pending: ItemStatus.OMITTED, late: ItemStatus.OMITTED,
        bobs: ItemStatus.QUARANTINED,
    }  # fmt: skip
    assert {f.feedback_id: f.status for f in store.list_feedback()} == {
        early: ItemStatus.OMITTED, late_feedback: ItemStatus.OMITTED,
    }  # fmt: skip
    assert store.omitted_clients() == [ALICE]
    counts = store.counts()
    assert (counts["submissions_omitted"], counts["feedback_omitted"], counts["clients_omitted"]) == (2, 2, 1)


def test_taking_an_omission_back_returns_items_to_quarantine(store: Store) -> None:
    submission_id = store.add_submission(client=ALICE, x=np.zeros(2), label=1)
    store.set_client_omitted(ALICE, True)
    store.set_client_omitted(ALICE, True)  # twice: the same
    omitted = store.add_submission(client=ALICE, x=np.ones(2), label=1)
    store.decide(kind="submission", item_id=omitted, decision="reject", reviewer="rev", reason="spam")  # type: ignore[arg-type]
    store.set_client_omitted(ALICE, False)
    status = {s.submission_id: s.status for s in store.list_submissions()}
    assert status == {submission_id: ItemStatus.QUARANTINED, omitted: ItemStatus.REJECTED}
    assert store.omitted_clients() == []
    assert store.add_submission(client=ALICE, x=np.ones(2), label=1)
    assert store.list_submissions(limit=1)[0].status is ItemStatus.QUARANTINED


# -- flags ----------------------------------------------------------------------------------------


def test_flags_round_trip_and_only_open_ones_are_listed_by_default(store: Store) -> None:
    prediction_id = predict(store)
    evidence = {"queries": 512, "mean_distance": np.float32(0.125), "history": np.arange(3), "ok": None}
    first = store.add_flag(
        client=ALICE, kind="boundary_probing", reason="many near-duplicate queries", evidence=evidence,
        prediction_id=prediction_id, linked_clients=[BOB, "c3"],
    )  # fmt: skip
    second = store.add_flag(client=BOB, kind="extraction", reason="r", evidence={})
    flags = store.list_flags()
    assert [f.flag_id for f in flags] == [second, first]
    flag = flags[1]
    assert (flag.client, flag.kind, flag.prediction_id, flag.linked_clients, flag.status) == (
        ALICE, "boundary_probing", prediction_id, (BOB, "c3"), FlagStatus.OPEN,
    )  # fmt: skip
    assert flag.evidence == {"queries": 512, "mean_distance": 0.125, "history": [0, 1, 2], "ok": None}
    assert [f.flag_id for f in store.list_flags(client=BOB)] == [second]
    store.decide(kind="flag", item_id=second, decision="dismiss", reviewer="rev", reason="benign")  # type: ignore[arg-type]
    assert [f.flag_id for f in store.list_flags()] == [first]
    assert [f.status for f in store.list_flags(open_only=False)] == [FlagStatus.DISMISSED, FlagStatus.OPEN]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"evidence": {"when": datetime(2024, 1, 1)}}, "expected evidence to be JSON-serialisable: datetime"),
        ({"evidence": [1, 2]}, "expected evidence to be a mapping, got list"),
        ({"linked_clients": "bob"}, "expected linked_clients to be a sequence of names"),
        ({"linked_clients": [""]}, "expected a non-empty linked client"),
        ({"kind": "k" * 65}, "expected kind of at most 64 characters, got 65"),
        ({"client": None}, "expected client to be a string, got NoneType"),
    ],
)
def test_flag_fields_are_checked(memory_store: Store, changes: dict[str, object], match: str) -> None:
    fields: dict[str, object] = {"client": ALICE, "kind": "k", "reason": "r", "evidence": {}, **changes}
    with pytest.raises(InvalidInputError, match=match):
        memory_store.add_flag(**fields)  # type: ignore[arg-type]
    assert memory_store.list_flags() == []


def test_omission_takes_only_true_or_false(memory_store: Store) -> None:
    with pytest.raises(InvalidInputError, match="expected omitted to be true or false, got 'false'"):
        memory_store.set_client_omitted(ALICE, "false")  # type: ignore[arg-type]
    assert memory_store.omitted_clients() == []
