"""Figures from per-example outcomes: robust accuracy per run, the per-example worst case, per class."""

from __future__ import annotations

import math
from collections import Counter

import torch
from torch import Tensor

from bastion.evaluation.runner import Outcome, RunResults
from bastion.report.model import AttackRun, ClassRow, WorstCase

__all__ = ["attack_runs", "per_class", "robust_mask", "worst_case"]


def _share(mask: Tensor, n: int) -> float:
    return float(mask.sum()) / n if n else 0.0


def attack_runs(results: RunResults, norm: str) -> tuple[AttackRun, ...]:
    n = len(results.data)
    correct = results.clean_correct
    constraints = results.data.constraints
    names = constraints.names if constraints is not None else ()
    return tuple(_attack_run(o, correct, n, norm, names) for o in results.outcomes)


def _features_changed(o: Outcome, broken: Tensor, names: tuple[str, ...]) -> dict[str, int]:
    """Feature name -> broken examples in which the attack moved it (tabular data only)."""
    if o.changed is None or not names:
        return {}
    counts = o.changed[broken].sum(dim=0).tolist()
    return {name: int(c) for name, c in zip(names, counts, strict=True) if c}


def _attack_run(o: Outcome, correct: Tensor, n: int, norm: str, names: tuple[str, ...]) -> AttackRun:
    attacked = o.attacked
    broken = o.success & attacked
    dist = o.distance[broken]
    queries = o.queries[attacked].double()
    return AttackRun(
        attack=o.attack,
        norm=norm,
        eps=o.eps,
        n_examples=n,
        robust_accuracy=_share(correct & ~broken, n),
        success_rate=_share(broken, int(correct.sum())),
        median_distance=float(dist.median()) if dist.numel() else None,
        queries_median=float(queries.median()) if queries.numel() else 0.0,
        queries_max=int(o.queries.max()) if n else 0,
        gradients_total=int(o.gradients.sum()),
        elapsed=o.elapsed,
        config=dict(o.config),
        incomplete=len(o.errors),
        incomplete_reasons=dict(sorted(Counter(o.errors.values()).items())),
        features_changed=_features_changed(o, broken, names),
    )


def robust_mask(results: RunResults, eps: float) -> Tensor:
    """Examples correct on clean input and unbroken by every attack at ``eps``."""
    robust = results.clean_correct.clone()
    for o in results.outcomes:
        if math.isclose(o.eps, eps):
            robust &= ~(o.success & o.attacked)
    return robust


def worst_case(results: RunResults, epsilons: tuple[float, ...]) -> tuple[WorstCase, ...]:
    n = len(results.data)
    rows = []
    for eps in epsilons:
        standing = results.clean_correct.clone()
        broken_by: dict[str, int] = {}
        for o in results.outcomes:
            if not math.isclose(o.eps, eps):
                continue
            first = standing & o.success & o.attacked
            if int(first.sum()):
                broken_by[o.attack] = broken_by.get(o.attack, 0) + int(first.sum())
            standing &= ~first
        rows.append(WorstCase(eps=eps, robust_accuracy=_share(standing, n), broken_by=broken_by))
    return tuple(rows)


def per_class(results: RunResults, epsilons: tuple[float, ...], names: tuple[str, ...]) -> tuple[ClassRow, ...]:
    y = results.data.y
    correct = results.clean_correct
    robust = {eps: robust_mask(results, eps) for eps in epsilons}
    rows = []
    for label in torch.unique(y).tolist():
        members = y == label
        count = int(members.sum())
        rows.append(
            ClassRow(
                label=int(label),
                name=names[label] if label < len(names) else str(label),
                n_examples=count,
                clean_accuracy=_share(correct & members, count),
                robust_accuracy={f"{eps:g}": _share(robust[eps] & members, count) for eps in epsilons},
            )
        )
    return tuple(rows)
