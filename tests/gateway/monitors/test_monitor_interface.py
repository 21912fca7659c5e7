"""The monitor protocol, the verdict value, the bounded client states and the request checks they share."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bastion.errors import ConfigError, DataError
from bastion.gateway.monitors import BoundaryProximityMonitor, ClientStates, Monitor, QueryAttackDetector, Verdict
from bastion.gateway.monitors.interface import check_batch, input_digest


def test_both_monitors_follow_the_protocol_under_their_names() -> None:
    boundary = BoundaryProximityMonitor(threshold=0.5, population_rate=0.05)
    query = QueryAttackDetector(threshold=1.0)
    assert isinstance(boundary, Monitor) and boundary.name == "boundary"
    assert isinstance(query, Monitor) and query.name == "query"


def test_a_verdict_is_a_frozen_value() -> None:
    verdict = Verdict(monitor="query", client="k1", reason="near_duplicate_queries", evidence={"k": 20})
    assert verdict.linked_clients == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.client = "k2"  # type: ignore[misc]
    assert verdict == Verdict(monitor="query", client="k1", reason="near_duplicate_queries", evidence={"k": 20})


def test_client_states_forget_the_least_recently_seen_client_first() -> None:
    states: ClientStates[list[int]] = ClientStates(max_clients=2)
    states.get("a", list).append(1)
    states.get("b", list)
    states.get("a", list)  # a is now the most recent
    states.get("c", list)  # evicts b
    assert list(states) == ["a", "c"] and len(states) == 2
    assert "b" not in states
    assert states.get("a", list) == [1], "a kept its state"
    assert states.peek("c") == [] and list(states) == ["c", "a"], "peek does not mark as seen"
    assert states.pop("a") == [1] and states.pop("a") is None


def test_client_states_need_room_for_one_client() -> None:
    with pytest.raises(ConfigError, match="expected max_clients >= 1, got 0"):
        ClientStates(max_clients=0)


def test_a_request_whose_inputs_and_probabilities_disagree_is_refused() -> None:
    x = np.zeros((3, 4), dtype=np.float32)
    assert check_batch(x, np.full((3, 2), 0.5)) == 3
    with pytest.raises(DataError, match=r"expected inputs of shape \(2, \*input_shape\), got \(3, 4\)"):
        check_batch(x, np.full((2, 2), 0.5))
    with pytest.raises(DataError, match=r"expected probabilities of shape \(n, num_classes >= 2\), got \(3,\)"):
        check_batch(x, np.full(3, 0.5))


def test_an_input_digest_depends_on_the_values_only() -> None:
    row = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    assert input_digest(row) == input_digest(row.astype(np.float64)) == input_digest(row.T.copy().T)
    assert input_digest(row) != input_digest(row + np.float32(1e-6))
