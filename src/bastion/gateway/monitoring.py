"""The configured monitors, calibrated at start on benign inputs (the model's own data), with their actions."""

from __future__ import annotations

import logging

import numpy as np

from bastion.gateway.config import MonitorAction, MonitorsConfig
from bastion.gateway.monitors import (
    BoundaryProximityMonitor,
    Monitor,
    QueryAttackDetector,
    benign_streams,
    calibrate_boundary,
    calibrate_query,
)

__all__ = ["build_monitors"]

logger = logging.getLogger(__name__)

# Simulated benign clients for the query detector's calibration: enough streams to resolve a 0.1% rate.
_BENIGN_CLIENTS = 1000
_BENIGN_LENGTH = 100


def build_monitors(
    config: MonitorsConfig, inputs: np.ndarray, probs: np.ndarray
) -> list[tuple[Monitor, MonitorAction]]:
    """The enabled monitors, calibrated on ``inputs`` (benign, in the model's bounds) and their ``probs``."""
    built: list[tuple[Monitor, MonitorAction]] = []
    if config.boundary.enabled:
        settings = config.boundary
        boundary = calibrate_boundary(probs, quantile=settings.quantile)
        logger.info(
            "boundary monitor: margin threshold %.4f (benign rate %.3f)", boundary.threshold, boundary.population_rate
        )
        monitor = BoundaryProximityMonitor(
            threshold=boundary.threshold,
            population_rate=boundary.population_rate,
            alpha=settings.alpha,
            beta=settings.beta,
            max_clients=settings.max_clients,
        )
        built.append((monitor, settings.action))
    if config.query.enabled:
        built.append((_query_detector(config, inputs), config.query.action))
    return built


def _query_detector(config: MonitorsConfig, inputs: np.ndarray) -> QueryAttackDetector:
    settings = config.query
    streams = benign_streams(inputs, clients=_BENIGN_CLIENTS, length=_BENIGN_LENGTH, seed=settings.seed)
    calibration = calibrate_query(
        streams,
        k=settings.k,
        dim=settings.dim,
        buffer_size=settings.buffer_size,
        target_fpr=settings.target_fpr,
        seed=settings.seed,
    )
    logger.info(
        "query detector: k-NN threshold %.4f (benign streams flagged: %.4f, target %.4f)",
        calibration.threshold,
        calibration.measured_fpr,
        calibration.target_fpr,
    )
    return QueryAttackDetector(
        threshold=calibration.threshold,
        dim=settings.dim,
        buffer_size=settings.buffer_size,
        k=settings.k,
        max_clients=settings.max_clients,
        global_buffer_size=settings.global_buffer_size,
        link_distance=calibration.link_distance,
        seed=settings.seed,
    )
