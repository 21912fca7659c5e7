"""The query-attack detector: k-NN scores as if queries came one at a time, repeats ignored, links, bounded state."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.errors import ConfigError
from bastion.gateway.monitors import QueryAttackDetector, QueryCalibration, Verdict
from bastion.gateway.monitors.query import embed, knn_scores, stream_scores

MnistTest = tuple[np.ndarray, np.ndarray, np.ndarray]  # images, labels, probabilities
UNIFORM = np.full((1, 10), 0.1, dtype=np.float32)  # the detector ignores the probabilities


def probs(n: int) -> np.ndarray:
    return np.repeat(UNIFORM, n, axis=0)


def near_copies(image: np.ndarray, n: int, *, scale: float = 0.02, seed: int = 0) -> np.ndarray:
    """``n`` slightly noisy copies of ``image`` (as a query attack's probes), inside [0, 1]."""
    noise = np.random.default_rng(seed).normal(0, scale, size=(n, *image.shape)).astype(np.float32)
    return np.clip(image[None] + noise, 0, 1)


def detector(cal: QueryCalibration, **options: int | float | None) -> QueryAttackDetector:
    config = {"threshold": cal.threshold, "link_distance": cal.link_distance, "k": cal.k, "dim": cal.dim, **options}
    return QueryAttackDetector(**config)  # type: ignore[arg-type]


def test_batched_scores_equal_scores_of_queries_sent_one_at_a_time() -> None:
    gen = np.random.default_rng(0)
    past, new = gen.normal(size=(12, 8)).astype(np.float32), gen.normal(size=(9, 8)).astype(np.float32)
    batched = knn_scores(past, new, k=3, window=10)
    rows = np.concatenate([past, new])
    for i in range(len(new)):
        before = rows[max(0, 12 + i - 10) : 12 + i]
        expected = np.sort(np.linalg.norm(before - new[i], axis=1))[:3].mean()
        assert batched[i] == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert np.isnan(knn_scores(past[:0], new, k=3, window=10)[:3]).all(), "no score before k queries"


def test_the_detector_flags_at_the_first_query_whose_score_falls_below_the_threshold(
    query_calibration: QueryCalibration, mnist_test: MnistTest
) -> None:
    x = mnist_test[0]
    stream = np.concatenate([x[:30], near_copies(x[30], 30)])
    scores = stream_scores(stream, k=20, dim=128, buffer_size=1000, seed=0)
    first = int(np.flatnonzero(scores < query_calibration.threshold)[0])
    # Measured: the 7th near copy (index 36), once enough copies are among its 20 nearest.
    assert 30 < first < 40, "flagged soon after the near copies start, never on the benign images before them"
    d = detector(query_calibration)
    verdicts = [v for i in range(len(stream)) for v in d.observe("attacker", stream[i : i + 1], probs(1))]
    (verdict,) = verdicts
    assert verdict.reason == "near_duplicate_queries" and verdict.evidence["query"] == first + 1
    assert verdict.evidence["knn_distance"] == pytest.approx(scores[first], rel=1e-4)
    d = detector(query_calibration)
    (batched,) = d.observe("attacker", stream, probs(len(stream)))
    # One request of 60 queries reads as 60 requests of one (up to float32 round-off in the distance).
    assert batched.evidence == {**verdict.evidence, "knn_distance": pytest.approx(verdict.evidence["knn_distance"])}
    assert batched.evidence["buffered"] == first


def test_a_client_resending_the_same_images_is_never_flagged(
    query_calibration: QueryCalibration, mnist_test: MnistTest
) -> None:
    x = mnist_test[0]
    d = detector(query_calibration)
    for _ in range(50):
        assert d.observe("same-photo", x[7:8], probs(1)) == []
        assert d.observe("five-photos", x[:5], probs(5)) == []
    stream = np.concatenate([x[:40], np.repeat(x[3:4], 60, axis=0)])
    assert np.isnan(stream_scores(stream, k=20, dim=128, buffer_size=1000, seed=0)).sum() == 20
    assert len(stream_scores(stream, k=20, dim=128, buffer_size=1000, seed=0)) == 40, "repeats are not scored"


def test_a_query_attack_is_flagged_as_soon_as_k_queries_are_buffered(
    query_calibration: QueryCalibration, mnist_test: MnistTest
) -> None:
    d = detector(query_calibration)
    probes = near_copies(mnist_test[0][0], 40)
    verdicts = [v for i in range(40) for v in d.observe("attacker", probes[i : i + 1], probs(1))]
    assert [(v.client, v.evidence["query"]) for v in verdicts] == [("attacker", 21)]
    assert float(verdicts[0].evidence["knn_distance"]) < 0.2 * query_calibration.threshold


def test_brightness_and_contrast_changes_do_not_spread_queries_apart(mnist_test: MnistTest) -> None:
    image = mnist_test[0][:1]
    np.testing.assert_allclose(embed(0.5 * image + 0.2, dim=64, seed=0), embed(image, dim=64, seed=0), atol=1e-3)


def test_the_detector_is_deterministic_under_its_seed(
    query_calibration: QueryCalibration, mnist_test: MnistTest
) -> None:
    x = mnist_test[0]
    stream = np.concatenate([x[:25], near_copies(x[100], 10)])

    def verdicts(seed: int) -> list[Verdict]:
        return detector(query_calibration, seed=seed).observe("attacker", stream, probs(len(stream)))

    assert verdicts(0) == verdicts(0) and len(verdicts(0)) == 1
    assert not np.allclose(embed(x[:2], dim=128, seed=0), embed(x[:2], dim=128, seed=1))


def test_a_reset_client_starts_afresh(query_calibration: QueryCalibration, mnist_test: MnistTest) -> None:
    d = detector(query_calibration)
    probes = near_copies(mnist_test[0][0], 70)
    assert len(d.observe("attacker", probes[:30], probs(30))) == 1
    assert d.observe("attacker", probes[30:40], probs(10)) == [], "said once"
    d.reset("attacker")
    assert d.observe("attacker", probes[40:60], probs(20)) == [], "its buffer was emptied: 20 to fill again"
    assert len(d.observe("attacker", probes[60:], probs(10))) == 1


def test_state_is_kept_for_the_most_recently_seen_clients_only(
    query_calibration: QueryCalibration, mnist_test: MnistTest
) -> None:
    x = mnist_test[0]
    d = detector(query_calibration, max_clients=3)
    probes = near_copies(x[0], 40)
    d.observe("attacker", probes[:15], probs(15))
    for client in ("b", "c", "d"):  # three other clients push the attacker out
        d.observe(client, x[:1], probs(1))
    assert d.tracked() == ["b", "c", "d"]
    assert d.observe("attacker", probes[15:30], probs(15)) == [], "the attacker's 15 earlier probes are forgotten"
    assert len(d.observe("attacker", probes[30:], probs(10))) == 1


def test_the_client_buffer_holds_at_most_buffer_size_queries(
    query_calibration: QueryCalibration, mnist_test: MnistTest
) -> None:
    x = mnist_test[0]
    d = detector(query_calibration, buffer_size=30)
    d.observe("attacker", x[:100], probs(100))
    (verdict,) = d.observe("attacker", near_copies(x[200], 30), probs(30))
    assert verdict.evidence["buffered"] == 30


def test_keys_sharing_one_attack_are_linked_and_flagged_together(
    query_calibration: QueryCalibration, mnist_test: MnistTest
) -> None:
    x = mnist_test[0]
    d = detector(query_calibration)
    probes = near_copies(x[0], 60)
    for i in range(20):  # 20 probes each over 3 keys: no key has been scored yet
        for j, key in enumerate(("k0", "k1", "k2")):
            assert d.observe(key, probes[3 * i + j : 3 * i + j + 1], probs(1)) == []
    assert d.linked("k0") == ("k1", "k2")
    verdicts = d.observe("k0", near_copies(x[0], 1, seed=1), probs(1))
    assert [(v.client, v.reason, v.linked_clients) for v in verdicts] == [
        ("k0", "near_duplicate_queries", ("k1", "k2")),
        ("k1", "linked_to_flagged_client", ("k0", "k2")),
        ("k2", "linked_to_flagged_client", ("k0", "k1")),
    ]
    assert verdicts[1].evidence["linked_to"] == "k0" and int(verdicts[1].evidence["near_duplicate_pairs"]) >= 3
    # A key that joins the attack later is flagged as soon as its link is established.
    late = [v for i in range(3) for v in d.observe("k3", near_copies(x[0], 1, seed=10 + i), probs(1))]
    assert [(v.client, v.reason) for v in late] == [("k3", "linked_to_flagged_client")]


def test_a_link_needs_several_distinct_queries_on_both_sides(
    query_calibration: QueryCalibration, mnist_test: MnistTest
) -> None:
    x = mnist_test[0]
    d = detector(query_calibration)
    d.observe("user", x[5:6], probs(1))  # one benign image...
    d.observe("attacker", near_copies(x[5], 40), probs(40))  # ...near 40 probes of another key
    assert d.linked("attacker") == () and d.linked("user") == ()


def test_links_reach_back_global_buffer_size_queries_only(
    query_calibration: QueryCalibration, mnist_test: MnistTest
) -> None:
    x = mnist_test[0]
    for size, linked in ((200, ("early",)), (50, ())):
        d = detector(query_calibration, global_buffer_size=size)
        d.observe("early", near_copies(x[0], 10, seed=1), probs(10))
        d.observe("others", x[100:160], probs(60))
        d.observe("late", near_copies(x[0], 10, seed=2), probs(10))
        assert d.linked("late") == linked


def test_reset_removes_a_key_from_the_links_of_others(
    query_calibration: QueryCalibration, mnist_test: MnistTest
) -> None:
    x = mnist_test[0]
    d = detector(query_calibration)
    d.observe("a", near_copies(x[0], 10, seed=1), probs(10))
    d.observe("b", near_copies(x[0], 10, seed=2), probs(10))
    assert d.linked("b") == ("a",)
    d.reset("a")
    assert d.linked("b") == ()
    d.observe("c", near_copies(x[0], 10, seed=3), probs(10))
    assert d.linked("c") == ("b",), "a's queries left the global index"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threshold": 0.0}, r"expected a threshold > 0 \(a calibrated k-NN distance\), got 0.0"),
        ({"k": 0}, "expected k >= 1, got 0"),
        ({"dim": 0}, "expected dim >= 1, got 0"),
        ({"buffer_size": 10}, "expected buffer_size >= k = 20, got 10"),
        ({"global_buffer_size": 0}, "expected global_buffer_size >= 1, got 0"),
        ({"max_clients": 0}, "expected max_clients >= 1, got 0"),
        ({"link_distance": -1.0}, "expected link_distance >= 0, got -1.0"),
        ({"link_queries": 0}, "expected link_queries >= 1, got 0"),
    ],
)
def test_a_bad_configuration_is_refused_at_construction(options: dict[str, float], message: str) -> None:
    config: dict[str, float] = {"threshold": 1.0, **options}
    with pytest.raises(ConfigError, match=message):
        QueryAttackDetector(**config)  # type: ignore[arg-type]


def test_the_configuration_is_stored_verbatim() -> None:
    d = QueryAttackDetector(threshold=2.0, k=5, buffer_size=50, global_buffer_size=100, seed=3)
    stored = (d.threshold, d.k, d.buffer_size, d.global_buffer_size, d.seed, d.link_distance)
    assert stored == (2.0, 5, 50, 100, 3, None)
