"""Evaluation: the plan (attacks x budgets), the runner, metrics, trust checks and ``assess``."""

from bastion.evaluation.assess import assess
from bastion.evaluation.plan import DEFAULT_EPSILONS, PRESETS, Plan, PlannedAttack, make_plan
from bastion.evaluation.runner import run_plan
from bastion.evaluation.thresholds import Requirement, parse_requirement
from bastion.evaluation.universal import PatchOptions, PerturbationOptions

__all__ = [
    "DEFAULT_EPSILONS",
    "PRESETS",
    "PatchOptions",
    "PerturbationOptions",
    "Plan",
    "PlannedAttack",
    "Requirement",
    "assess",
    "make_plan",
    "parse_requirement",
    "run_plan",
]
