"""The boundary-proximity monitor: Wald's SPRT per client on the near-boundary rate, floored, once per client."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bastion.errors import ConfigError, DataError
from bastion.gateway.monitors import BoundaryProximityMonitor, margins

THRESHOLD, P0 = 0.5, 0.05
# With p1 = 0.5, alpha = 1e-4, beta = 0.01: each near input adds log(10), the flag is at
# log(0.99 / 1e-4) = 9.2, so the fourth near input in a row flags.
NEAR_IN_A_ROW = math.ceil(math.log(0.99 / 1e-4) / math.log(0.5 / P0))


def probs_with_margin(margin: float, n: int = 1, classes: int = 3) -> np.ndarray:
    """``n`` rows of probabilities whose top two differ by ``margin``."""
    rest = 0.0 if classes == 2 else 1e-3
    top2 = 1 - rest * (classes - 2)
    row = np.full(classes, rest)
    row[0], row[1] = (top2 + margin) / 2, (top2 - margin) / 2
    return np.tile(row, (n, 1))


class Inputs:
    """Distinct inputs, one per call, so that none is an exact repeat."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, n: int = 1) -> np.ndarray:
        x = np.arange(self.count, self.count + n, dtype=np.float32).reshape(n, 1) * np.ones((1, 4), np.float32)
        self.count += n
        return x


def monitor(**options: float) -> BoundaryProximityMonitor:
    config: dict[str, float] = {"threshold": THRESHOLD, "population_rate": P0, **options}
    return BoundaryProximityMonitor(**config)  # type: ignore[arg-type]


def test_the_margin_is_the_top_probability_minus_the_second() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.45, 0.45], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(margins(probs), [0.5, 0.0, 1.0])


def test_four_near_boundary_inputs_in_a_row_flag_the_client_once() -> None:
    m, inputs = monitor(), Inputs()
    assert NEAR_IN_A_ROW == 4
    for _ in range(NEAR_IN_A_ROW - 1):
        assert m.observe("attacker", inputs(), probs_with_margin(0.1)) == []
    (verdict,) = m.observe("attacker", inputs(), probs_with_margin(0.1))
    assert (verdict.monitor, verdict.client, verdict.reason) == ("boundary", "attacker", "near_boundary_queries")
    assert verdict.evidence["queries"] == 4 and verdict.evidence["near_boundary"] == 4
    assert verdict.evidence["log_likelihood_ratio"] == pytest.approx(4 * math.log(10), abs=1e-3)
    assert verdict.evidence["attack_rate"] == 0.5
    assert m.observe("attacker", inputs(10), probs_with_margin(0.1, 10)) == [], "said once, until reset"
    assert m.observe("someone-else", inputs(), probs_with_margin(0.1)) == []


def test_a_reset_client_is_tested_afresh() -> None:
    m, inputs = monitor(), Inputs()
    assert len(m.observe("attacker", inputs(4), probs_with_margin(0.1, 4))) == 1
    m.reset("attacker")
    assert m.observe("attacker", inputs(3), probs_with_margin(0.1, 3)) == []
    assert len(m.observe("attacker", inputs(), probs_with_margin(0.1))) == 1


def test_a_long_benign_history_cannot_hide_a_later_attack() -> None:
    m, inputs = monitor(), Inputs()
    assert m.observe("patient", inputs(1000), probs_with_margin(0.9, 1000)) == []
    # The ratio sank to its floor, log(0.01 / (1 - 1e-4)) = -4.6, and stayed there: six near inputs
    # in a row climb from it to the flag at 9.2 (without the floor, from -640, it would take 281).
    assert m.observe("patient", inputs(5), probs_with_margin(0.1, 5)) == []
    (verdict,) = m.observe("patient", inputs(), probs_with_margin(0.1))
    assert verdict.evidence["queries"] == 1006


def test_near_boundary_inputs_at_the_benign_rate_are_not_flagged() -> None:
    m, inputs = monitor(), Inputs()
    gen = np.random.default_rng(0)
    flagged = []
    for client in range(500):
        near = gen.random(100) < P0
        probs = np.concatenate([probs_with_margin(0.1 if n else 0.9) for n in near])
        flagged += m.observe(f"user-{client}", inputs(100), probs)
    assert flagged == []  # simulated: ~1e-4 of such clients are flagged over 100 inputs


def test_exact_repeats_of_an_ambiguous_input_do_not_count() -> None:
    m, inputs = monitor(), Inputs()
    photo = inputs()
    for _ in range(20):
        assert m.observe("user", photo, probs_with_margin(0.1)) == []
    assert m.observe("user", np.repeat(photo, 10, axis=0), probs_with_margin(0.1, 10)) == []


def test_the_margin_threshold_is_strict() -> None:
    m, inputs = monitor(), Inputs()
    assert m.observe("user", inputs(10), probs_with_margin(THRESHOLD, 10)) == []
    assert len(m.observe("user", inputs(10), probs_with_margin(THRESHOLD - 1e-3, 10))) == 1


def test_state_is_kept_for_the_most_recently_seen_clients_only() -> None:
    m, inputs = monitor(max_clients=2), Inputs()
    m.observe("a", inputs(3), probs_with_margin(0.1, 3))
    m.observe("b", inputs(), probs_with_margin(0.9))
    m.observe("c", inputs(), probs_with_margin(0.9))  # evicts a, and its three near inputs
    assert m.tracked() == ["b", "c"]
    assert m.observe("a", inputs(), probs_with_margin(0.1)) == [], "a starts afresh"
    assert m.tracked() == ["c", "a"]


@pytest.mark.parametrize(("population_rate", "attack_rate"), [(0.05, 0.5), (0.15, 0.575), (0.4, 0.7)])
def test_the_attack_rate_defaults_to_five_times_the_benign_rate_within_bounds(
    population_rate: float, attack_rate: float
) -> None:
    m, inputs = monitor(population_rate=population_rate, alpha=0.01), Inputs()
    (verdict,) = m.observe("a", inputs(50), probs_with_margin(0.1, 50))
    assert verdict.evidence["attack_rate"] == pytest.approx(attack_rate)


def test_a_larger_false_flag_rate_flags_sooner() -> None:
    m, inputs = monitor(alpha=0.01), Inputs()  # log(0.99 / 0.01) = 4.595 <= 2 log(10): two in a row
    assert m.observe("a", inputs(), probs_with_margin(0.1)) == []
    assert len(m.observe("a", inputs(), probs_with_margin(0.1))) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threshold": 0.0}, r"expected 0 < threshold <= 1 \(a margin between probabilities\), got 0.0"),
        ({"population_rate": 0.0}, r"expected 0 < population_rate < 1, got 0.0"),
        ({"population_rate": 0.2, "attack_rate": 0.1}, r"expected population_rate 0.2 < attack_rate < 1, got 0.1"),
        ({"alpha": 0.6, "beta": 0.5}, r"expected 0 < alpha, beta and alpha \+ beta < 1, got alpha=0.6, beta=0.5"),
        ({"max_clients": 0}, r"expected max_clients >= 1, got 0"),
    ],
)
def test_a_bad_configuration_is_refused_at_construction(options: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        monitor(**options)


def test_the_configuration_is_stored_verbatim() -> None:
    m = monitor(alpha=1e-3)
    assert (m.threshold, m.population_rate, m.attack_rate, m.alpha, m.beta) == (THRESHOLD, P0, None, 1e-3, 0.01)


def test_probabilities_that_do_not_match_the_inputs_are_refused() -> None:
    with pytest.raises(DataError, match=r"expected inputs of shape \(2, \*input_shape\)"):
        monitor().observe("a", np.zeros((3, 4), np.float32), probs_with_margin(0.1, 2))
