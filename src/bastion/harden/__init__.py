"""Hardening: adversarial training (PGD-AT, TRADES, fast FGSM, a reject class) with before/after evidence.

Example::

    from bastion.harden import harden
    result = harden(model, train, method="pgd", eps=0.3, epochs=5, seed=0)
    result.model, result.history[-1].robust_accuracy, result.manifest["data"]["sha256"]
"""

from bastion.harden.fast_fgsm import FastFGSM, catastrophic_overfitting
from bastion.harden.interface import EpochStats, Figures, HardenConfig, HardenResult, Rejection, Threat, Trainer
from bastion.harden.pgd_at import PGDTraining
from bastion.harden.registry import TRAINERS, make_trainer
from bastion.harden.reject import RejectClass, class_view, predict_with_reject, rejection_rates, with_reject_class
from bastion.harden.run import harden
from bastion.harden.trades import TRADES

__all__ = [
    "TRADES",
    "TRAINERS",
    "EpochStats",
    "FastFGSM",
    "Figures",
    "HardenConfig",
    "HardenResult",
    "PGDTraining",
    "RejectClass",
    "Rejection",
    "Threat",
    "Trainer",
    "catastrophic_overfitting",
    "class_view",
    "harden",
    "make_trainer",
    "predict_with_reject",
    "rejection_rates",
    "with_reject_class",
]
