"""The gateway's monitors: pure algorithms that watch each client's predict requests and return verdicts."""

from bastion.gateway.monitors.boundary import BoundaryProximityMonitor, margins
from bastion.gateway.monitors.calibrate import (
    BoundaryCalibration,
    QueryCalibration,
    benign_streams,
    calibrate_boundary,
    calibrate_query,
)
from bastion.gateway.monitors.interface import ClientStates, Monitor, Verdict
from bastion.gateway.monitors.query import QueryAttackDetector

__all__ = [
    "BoundaryCalibration",
    "BoundaryProximityMonitor",
    "ClientStates",
    "Monitor",
    "QueryAttackDetector",
    "QueryCalibration",
    "Verdict",
    "benign_streams",
    "calibrate_boundary",
    "calibrate_query",
    "margins",
]
