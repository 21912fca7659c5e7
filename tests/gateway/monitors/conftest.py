"""Monitor fixtures: the MNIST demo model and test data as numpy, calibrations on benign streams, a watched model."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from bastion.data import load_demo
from bastion.demo import cache_dir, demo_model
from bastion.gateway.monitors import (
    BoundaryCalibration,
    BoundaryProximityMonitor,
    Monitor,
    QueryAttackDetector,
    QueryCalibration,
    Verdict,
    benign_streams,
    calibrate_boundary,
    calibrate_query,
)
from bastion.models import Classifier, Knowledge, QueryCounter, TorchClassifier
from bastion.models.view import ModelView

# The caller's cache, read before the session fixture swaps in a fresh folder: a demo model already
# trained there is copied in rather than trained again.
CALLER_CACHE = cache_dir()
# The gateway's query-detector configuration (bastion.gateway.config.QueryMonitorConfig's defaults).
K, DIM, BUFFER = 20, 128, 1000


@pytest.fixture(scope="session")
def mnist_model(bastion_cache_dir: Path) -> TorchClassifier:
    """The undefended MNIST demo CNN."""
    if CALLER_CACHE.is_dir():
        for cached in CALLER_CACHE.glob("demo-mnist-*.safetensors"):
            shutil.copy(cached, bastion_cache_dir / cached.name)
    return demo_model("mnist")


@pytest.fixture(scope="session")
def mnist_test(mnist_model: TorchClassifier) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 1000 MNIST test images (float32, (n, 1, 28, 28)), their labels, and the model's probabilities."""
    test = load_demo("mnist", "test")
    with torch.no_grad():
        probs = torch.softmax(mnist_model.logits(test.x), dim=1)
    return test.x.numpy(), test.y.numpy(), probs.numpy()


@pytest.fixture(scope="session")
def boundary_calibration(mnist_test: tuple[np.ndarray, np.ndarray, np.ndarray]) -> BoundaryCalibration:
    return calibrate_boundary(mnist_test[2], quantile=0.05)


@pytest.fixture(scope="session")
def query_calibration(mnist_test: tuple[np.ndarray, np.ndarray, np.ndarray]) -> QueryCalibration:
    """Calibrated as the gateway does at start: 1000 benign clients of 100 test images each (seed 0)."""
    streams = benign_streams(mnist_test[0], clients=1000, length=100, seed=0)
    return calibrate_query(streams, k=K, dim=DIM, buffer_size=BUFFER, target_fpr=0.001, seed=0)


@pytest.fixture
def boundary_monitor(boundary_calibration: BoundaryCalibration) -> BoundaryProximityMonitor:
    return BoundaryProximityMonitor(
        threshold=boundary_calibration.threshold, population_rate=boundary_calibration.population_rate
    )


@pytest.fixture
def query_detector(query_calibration: QueryCalibration) -> QueryAttackDetector:
    return QueryAttackDetector(
        threshold=query_calibration.threshold,
        link_distance=query_calibration.link_distance,
        dim=DIM,
        buffer_size=BUFFER,
        k=K,
        seed=0,
    )


class Watched(ModelView):
    """The model behind a gateway: every row it answers is shown to the monitors, one query at a time.

    Rows are charged round-robin to ``clients`` (one client: every row is its own), as an attacker
    spreading one attack over several keys would send them.
    """

    def __init__(self, model: Classifier, monitors: Sequence[Monitor], clients: Sequence[str]) -> None:
        super().__init__(model)
        self.monitors = monitors
        self.clients = clients
        self.sent = 0
        self.verdicts: list[tuple[int, Verdict]] = []  # (rows sent so far, verdict)

    @property
    def knowledge(self) -> Knowledge:
        return self.model.knowledge

    @property
    def queries(self) -> QueryCounter:
        return self.model.queries

    def inference(self) -> contextlib.AbstractContextManager[None]:
        return self.model.inference()

    def logits(self, x: Tensor) -> Tensor:
        out = self.model.logits(x)
        rows = x.detach().cpu().numpy()
        probs = torch.softmax(out.detach(), dim=1).cpu().numpy()
        for i in range(len(rows)):
            client = self.clients[self.sent % len(self.clients)]
            self.sent += 1
            for monitor in self.monitors:
                self.verdicts += [(self.sent, v) for v in monitor.observe(client, rows[i : i + 1], probs[i : i + 1])]
        return out

    def first_flag(self, monitor: str, client: str) -> int | None:
        """How many rows had been sent when ``monitor`` first flagged ``client``, or None."""
        return next((n for n, v in self.verdicts if v.monitor == monitor and v.client == client), None)


WatchFactory = Callable[[Sequence[Monitor], Sequence[str]], Watched]


@pytest.fixture
def watch(mnist_model: TorchClassifier) -> WatchFactory:
    """Wrap the MNIST model so that each answered row passes through ``monitors`` as one of ``clients``."""

    def build(monitors: Sequence[Monitor], clients: Sequence[str]) -> Watched:
        return Watched(mnist_model, monitors, clients)

    return build
