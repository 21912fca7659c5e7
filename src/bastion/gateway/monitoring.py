"""The configured monitors, calibrated at start on benign inputs (the model's own data), with their actions."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from bastion.gateway.config import MonitorAction, MonitorsConfig
from bastion.gateway.monitors import (
    BoundaryProximityMonitor,
    Monitor,
    QueryAttackDetector,
    QueryCalibration,
    benign_streams,
    calibrate_boundary,
    calibrate_query,
)

__all__ = ["build_monitors", "calibrate_query_cached"]

logger = logging.getLogger(__name__)

# Simulated benign clients for the query detector's calibration: enough streams to resolve a 0.1% rate.
_BENIGN_CLIENTS = 1000
_BENIGN_LENGTH = 100
# Part of the calibration cache's key: bump it whenever the detector's embedding or scoring changes.
CALIBRATION_VERSION = 1


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
    calibration = _cached_query_calibration(config, inputs)
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


def _cached_query_calibration(config: MonitorsConfig, inputs: np.ndarray) -> QueryCalibration:
    return calibrate_query_cached(inputs, config.query.model_dump(), _calibration_dir())


def calibrate_query_cached(inputs: np.ndarray, settings: dict[str, object], folder: Path) -> QueryCalibration:
    """The query detector's calibration on ``inputs``, computed once per inputs and settings, then read from ``folder``.

    Calibrating simulates a thousand benign clients (tens of seconds on two cores); the result is a
    handful of numbers, kept as JSON under a hash of everything it depends on.
    """
    digest = hashlib.sha256(np.ascontiguousarray(inputs, dtype=np.float32).tobytes())
    digest.update(
        json.dumps(
            {**settings, "clients": _BENIGN_CLIENTS, "length": _BENIGN_LENGTH, "version": CALIBRATION_VERSION},
            sort_keys=True,
        ).encode()
    )
    path = folder / f"query-{digest.hexdigest()[:32]}.json"
    if path.is_file():
        try:
            return QueryCalibration(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError):
            logger.warning("ignoring an unreadable calibration cache %s", path)
    streams = benign_streams(inputs, clients=_BENIGN_CLIENTS, length=_BENIGN_LENGTH, seed=int(str(settings["seed"])))
    calibration = calibrate_query(
        streams,
        k=int(str(settings["k"])),
        dim=int(str(settings["dim"])),
        buffer_size=int(str(settings["buffer_size"])),
        target_fpr=float(str(settings["target_fpr"])),
        seed=int(str(settings["seed"])),
    )
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(dataclasses.asdict(calibration)), encoding="utf-8")
    partial.replace(path)
    return calibration


def _calibration_dir() -> Path:
    from bastion.demo import cache_dir

    return cache_dir() / "calibration"
