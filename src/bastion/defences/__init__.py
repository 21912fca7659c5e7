"""Defences of the training data: RONI, and the poison scans spectral signatures and activation clustering."""

from bastion.defences.clustering import ActivationClustering
from bastion.defences.interface import ClassFinding, Decision, ScanResult, Verdict
from bastion.defences.roni import (
    METRICS,
    MIN_CALIBRATION,
    CandidateDecision,
    Metric,
    Roni,
    RoniResult,
    SourceDecision,
    Threshold,
)
from bastion.defences.spectral import SpectralSignatures

__all__ = [
    "METRICS",
    "MIN_CALIBRATION",
    "ActivationClustering",
    "CandidateDecision",
    "ClassFinding",
    "Decision",
    "Metric",
    "Roni",
    "RoniResult",
    "ScanResult",
    "SourceDecision",
    "SpectralSignatures",
    "Threshold",
    "Verdict",
]
