"""The monitors on real traffic: real black-box attacks on the MNIST demo model are flagged, benign clients are not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from bastion.attacks.registry import ATTACKS
from bastion.gateway.monitors import (
    BoundaryProximityMonitor,
    Monitor,
    QueryAttackDetector,
    QueryCalibration,
    Verdict,
    benign_streams,
)
from bastion.models import TorchClassifier
from bastion.models.restricted import restrict

MnistTest = tuple[np.ndarray, np.ndarray, np.ndarray]  # images, labels, probabilities
WatchFactory = Callable[..., Any]  # the conftest's ``watch``: (monitors, clients) -> Watched

# (attack, access it needs, norm, eps): each runs 120 queries per example, more than the 100 allowed to flag it.
ATTACK_RUNS = [
    ("hopskipjump", "labels", "l2", None),
    ("boundary", "labels", "l2", None),
    ("square", "scores", "linf", 0.1),
]
BUDGET = 120
EXAMPLES = (0, 250, 500)  # test images of three different digits (the test set is sorted by class)


def run_attack(
    watch: WatchFactory,
    monitors: list[Monitor],
    clients: list[str],
    run: tuple[str, str, str, float | None],
    example: int,
    mnist_test: MnistTest,
) -> Any:
    """Run the registered attack on one test image through the watched model; the watched model."""
    name, knowledge, norm, eps = run
    x, y, _ = mnist_test
    watched = watch(monitors, clients)
    attack = ATTACKS[name](max_queries=BUDGET)
    xs, ys = torch.from_numpy(x[example : example + 1]), torch.from_numpy(y[example : example + 1])
    attack(restrict(watched, knowledge), xs, ys, norm=norm, eps=eps, seed=example)
    return watched


@pytest.mark.parametrize(("name", "knowledge", "norm", "eps"), ATTACK_RUNS, ids=[r[0] for r in ATTACK_RUNS])
def test_the_query_detector_flags_each_attack_within_100_queries(
    name: str,
    knowledge: str,
    norm: str,
    eps: float | None,
    watch: WatchFactory,
    query_detector: QueryAttackDetector,
    mnist_test: MnistTest,
) -> None:
    for example in EXAMPLES:
        client = f"attacker-{example}"
        watched = run_attack(watch, [query_detector], [client], (name, knowledge, norm, eps), example, mnist_test)
        flagged_at = watched.first_flag("query", client)
        assert watched.sent >= 100, f"the attack stopped after {watched.sent} queries: nothing to detect"
        assert flagged_at is not None and flagged_at <= 100, f"{name} on example {example}: flagged at {flagged_at}"
        verdict = next(v for _, v in watched.verdicts if v.client == client)
        assert verdict.reason == "near_duplicate_queries"
        assert float(verdict.evidence["knn_distance"]) < float(verdict.evidence["threshold"])


def test_the_boundary_monitor_flags_a_hopskipjump_client(
    watch: WatchFactory,
    boundary_monitor: BoundaryProximityMonitor,
    mnist_test: MnistTest,
) -> None:
    for example in EXAMPLES:
        client = f"attacker-{example}"
        watched = run_attack(watch, [boundary_monitor], [client], ATTACK_RUNS[0], example, mnist_test)
        flagged_at = watched.first_flag("boundary", client)
        # Measured: flagged after 6 or 7 queries (the bisection to the boundary).
        assert flagged_at is not None and flagged_at <= 50, f"example {example}: flagged at {flagged_at}"
        verdict = watched.verdicts[0][1]
        assert verdict.reason == "near_boundary_queries"
        assert int(verdict.evidence["near_boundary"]) >= 4


def test_an_attack_split_round_robin_over_five_keys_gets_all_five_linked_and_flagged(
    watch: WatchFactory,
    query_detector: QueryAttackDetector,
    mnist_test: MnistTest,
) -> None:
    x, _, probs = mnist_test
    # A benign user who sent the very image being attacked: an exact duplicate is no link.
    assert query_detector.observe("bystander", x[0:1], probs[0:1]) == []
    keys = [f"key-{i}" for i in range(5)]
    watched = run_attack(watch, [query_detector], keys, ATTACK_RUNS[0], 0, mnist_test)
    verdicts = [v for _, v in watched.verdicts]
    assert sorted(v.client for v in verdicts) == keys, "each key flagged exactly once"
    for verdict in verdicts:
        assert verdict.linked_clients == tuple(k for k in keys if k != verdict.client)
    reasons = sorted(v.reason for v in verdicts)
    assert reasons.count("near_duplicate_queries") >= 1
    assert query_detector.linked("bystander") == ()


def test_benign_clients_sending_random_test_images_with_repeats_are_never_flagged(
    mnist_model: TorchClassifier,
    boundary_monitor: BoundaryProximityMonitor,
    query_detector: QueryAttackDetector,
    query_calibration: QueryCalibration,
    mnist_test: MnistTest,
) -> None:
    # Other streams than the calibration's (seed 0): 200 clients, 100 test images each, sent one at a
    # time, about one query in ten re-sending an image the client sent before.
    streams = [np.asarray(s) for s in benign_streams(mnist_test[0], clients=200, length=100, repeat_rate=0.1, seed=1)]
    repeats = sum(len(s) - len(np.unique(s.reshape(len(s), -1), axis=0)) for s in streams)
    assert repeats > 1000, "the streams hold exact repeats"
    with torch.no_grad():
        probs = [torch.softmax(mnist_model.logits(torch.from_numpy(s)), dim=1).numpy() for s in streams]
    verdicts: list[Verdict] = []
    for step in range(100):
        for client, (stream, p) in enumerate(zip(streams, probs, strict=True)):
            for monitor in (query_detector, boundary_monitor):
                verdicts += monitor.observe(f"user-{client}", stream[step : step + 1], p[step : step + 1])
    assert verdicts == []
    assert query_calibration.measured_fpr <= 0.001
    assert all(query_detector.linked(f"user-{c}") == () for c in range(200))
