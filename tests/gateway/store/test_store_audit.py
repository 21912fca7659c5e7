"""The audit log and predictions, client text stored verbatim (injection strings), and concurrent writers."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from bastion.errors import InvalidInputError
from bastion.gateway.keys import Role
from bastion.gateway.store import DETAIL_MAX, AuditEvent, PredictionRecord, Store

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
INJECTIONS = [
    "'; DROP TABLE audit_events; --",
    'Robert"); DROP TABLE feedback;--',
    "1' OR '1'='1",
    "%s %(x)s :param ? $1 {0} {}",
    "$$; DELETE FROM api_keys; $$",
    "\\x00 \\' \\\\ backslashes",
    "ünïcødé ☃ 😀 \u202e RTL",
    "a\nb\r\nc\td",
    "-- comment /* block */",
]


def event(n: int = 0, **changes: object) -> AuditEvent:
    base = AuditEvent(
        request_id=f"req-{n}", time=START + timedelta(seconds=n), client="0123456789ab", role=Role.CLIENT,
        endpoint="/v1/predict", action="predict", outcome="ok", status=200, code=None, detail="", duration_ms=1.5,
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


def prediction(n: int = 0, client: str = "0123456789ab") -> PredictionRecord:
    return PredictionRecord(f"pred-{n}", START, client, 3, (0.1, 0.2, 0.7), "ab" * 32)


def test_audit_log_reads_back_events_newest_first(store: Store) -> None:
    events = [event(n, client=f"c{n % 2}", outcome="rejected", status=429, code="rate_limited") for n in range(5)]
    for e in events:
        store.audit(e)
    assert store.audit_log() == events[::-1]
    assert store.audit_log(client="c1") == [events[3], events[1]]
    assert store.audit_log(limit=2) == [events[4], events[3]]
    assert store.audit_log(client="nobody") == []


def test_audit_events_without_client_or_role(store: Store) -> None:
    anonymous = event(client=None, role=None, outcome="rejected", status=401, code="unauthenticated")
    store.audit(anonymous)
    assert store.audit_log() == [anonymous]


def test_audit_detail_is_truncated_and_long_fields_clipped_never_refused(store: Store) -> None:
    store.audit(event(detail="x" * 5000, request_id="r" * 500, client="c" * 500, code="k" * 500, endpoint="/" * 9000))
    (stored,) = store.audit_log()
    assert stored.detail == "x" * DETAIL_MAX
    assert stored.endpoint == "/" * 9000
    assert len(stored.request_id) == 64 and len(stored.client or "") == 128 and len(stored.code or "") == 64


def test_audit_times_come_back_as_the_same_instant_in_utc(store: Store) -> None:
    paris = timezone(timedelta(hours=2))
    store.audit(event(time=datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=paris)))
    (stored,) = store.audit_log()
    assert stored.time == datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert stored.time.tzinfo == UTC


def test_naive_times_are_refused(memory_store: Store) -> None:
    with pytest.raises(InvalidInputError, match="expected the audit event's time to be a timezone-aware datetime"):
        memory_store.audit(event(time=datetime(2024, 5, 1, 12, 0)))
    with pytest.raises(InvalidInputError, match="prediction's time to be a timezone-aware"):
        memory_store.record_prediction(replace(prediction(), time=datetime(2024, 5, 1)))


@pytest.mark.parametrize("limit", [0, -1, 10_001, True])
def test_limits_are_checked(memory_store: Store, limit: int) -> None:
    with pytest.raises(InvalidInputError, match=r"expected limit in \[1, 10000\]"):
        memory_store.audit_log(limit=limit)


def test_predictions_round_trip_exactly(store: Store) -> None:
    record = PredictionRecord("p1", START, "0123456789ab", 9, (0.1, 1e-300, 0.30000000000000004, -0.0), "cd" * 32)
    store.record_prediction(record)
    assert store.get_prediction("p1") == record
    assert store.get_prediction("p2") is None


def test_predictions_accept_numpy_values(store: Store) -> None:
    scores = np.array([0.25, 0.75], dtype=np.float32)
    store.record_prediction(PredictionRecord("p", START, "c", np.int64(1), tuple(scores), "ef" * 32))  # type: ignore[arg-type]
    assert store.get_prediction("p") == PredictionRecord("p", START, "c", 1, (0.25, 0.75), "ef" * 32)


def test_a_prediction_id_is_recorded_once(store: Store) -> None:
    store.record_prediction(prediction())
    with pytest.raises(InvalidInputError, match="prediction 'pred-0' was already recorded"):
        store.record_prediction(prediction())


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"label": -1}, r"expected label in \[0, 2147483647\], got -1"),
        ({"label": 2.0}, "expected label to be an integer, got 2.0"),
        ({"label": True}, "expected label to be an integer, got True"),
        ({"scores": ("high",)}, "expected scores to be numbers"),
        ({"client": ""}, "expected a non-empty client"),
        ({"client": "c" * 129}, "expected client of at most 128 characters, got 129"),
        ({"prediction_id": 7}, "expected prediction_id to be a string, got int"),
    ],
)
def test_prediction_fields_are_checked(memory_store: Store, changes: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        memory_store.record_prediction(replace(prediction(), **changes))  # type: ignore[arg-type]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_strings_are_stored_and_read_back_verbatim(store: Store, text: str) -> None:
    store.audit(event(endpoint=text, action=text, detail=text, client=text[:128], code=text[:64], request_id=text[:64]))
    (stored,) = store.audit_log(client=text[:128])
    assert (stored.endpoint, stored.action, stored.detail, stored.code) == (text, text, text, text[:64])
    _, key = store.create_key(Role.CLIENT, text)
    flag_id = store.add_flag(
        client=text[:128], kind=text[:64], reason=text, evidence={text: [text]}, linked_clients=[text[:128]]
    )
    (flag,) = store.list_flags(client=text[:128])
    assert (flag.flag_id, flag.kind, flag.reason, flag.evidence, flag.linked_clients) == (
        flag_id, text[:64], text, {text: [text]}, (text[:128],),
    )  # fmt: skip
    assert next(k for k in store.list_keys() if k.key_id == key.key_id).name == text
    assert store.counts()["flags_open"] == 1  # every table is still there
    assert len(store.audit_log()) == 1


def test_nul_bytes_are_stripped_and_lone_surrogates_replaced_in_text(store: Store) -> None:
    """The documented policy: the one change to client text that both backends need."""
    store.audit(event(detail="a\x00b\x00", endpoint="/x\ud800y", action="\udfff"))
    (stored,) = store.audit_log()
    assert (stored.detail, stored.endpoint, stored.action) == ("ab", "/x\ufffdy", "\ufffd")
    store.add_flag(client="c\x00", kind="k", reason="r\x00\ud83d\ude00", evidence={})
    (flag,) = store.list_flags(client="c")
    assert (flag.client, flag.reason) == ("c", "r\ufffd\ufffd")


def test_json_evidence_keeps_nul_and_surrogates_verbatim(store: Store) -> None:
    evidence = {"nul": "a\x00b", "lone": "\ud800", "nested": {"n": [1, 2.5, None, True]}, "\x00key": "v"}
    store.add_flag(client="c", kind="k", reason="r", evidence=evidence)
    assert store.list_flags()[0].evidence == evidence


def test_concurrent_writers_from_many_threads_all_land(store: Store) -> None:
    threads, per_thread = 8, 25
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def write(t: int) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(per_thread):
                store.audit(event(t * per_thread + i, client=f"t{t}"))
                if i % 5 == 0:
                    store.audit_log(client=f"t{t}", limit=3)
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=write, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert errors == []
    logged = store.audit_log(limit=1000)
    assert sorted(e.request_id for e in logged) == sorted(f"req-{n}" for n in range(threads * per_thread))
    assert [e.request_id for e in store.audit_log(client="t3", limit=1000)] == [
        f"req-{3 * per_thread + i}" for i in reversed(range(per_thread))
    ]


def test_the_in_memory_store_is_thread_safe_too() -> None:
    with Store.open("sqlite://") as store:
        workers = [
            threading.Thread(target=lambda t=t: [store.audit(event(t * 10 + i)) for i in range(10)]) for t in range(6)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert len(store.audit_log(limit=100)) == 60
