"""Runs a plan: clean predictions, then every planned attack at every epsilon, batch by batch on an engine."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from bastion.attacks.interface import Attack, AttackResult
from bastion.data.dataset import Dataset
from bastion.engine.interface import Batch, Engine
from bastion.evaluation.plan import Plan
from bastion.models.interface import Classifier, predict

__all__ = ["Outcome", "Progress", "RunResults", "run_plan"]

# Adversarial examples kept per (attack, eps) run for the report's image grid.
KEPT_EXAMPLES = 8


class Progress(Protocol):
    """Where the runner reports how far it has got (a rich progress bar in the CLI)."""

    def start(self, label: str, total: int) -> None: ...

    def advance(self, n: int) -> None: ...


class _Silent:
    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


@dataclass
class Outcome:
    """One attack at one epsilon: per-example tensors over all ``n`` examples (on the CPU)."""

    attack: str
    eps: float
    config: dict[str, object]
    attacked: Tensor  # bool: the example was clean-correct and so was attacked
    success: Tensor  # bool
    distance: Tensor  # float, NaN where not attacked
    queries: Tensor  # int64
    gradients: Tensor  # int64
    elapsed: float
    # example index -> (adversarial input, the model's label for it), for the report's grid
    kept: dict[int, tuple[Tensor, int]] = field(default_factory=dict)


@dataclass
class RunResults:
    data: Dataset  # the examples assessed, on the CPU
    clean_predictions: Tensor
    outcomes: list[Outcome]

    @property
    def clean_correct(self) -> Tensor:
        return self.clean_predictions == self.data.y


def run_plan(
    model: Classifier, data: Dataset, plan: Plan, *, engine: Engine, progress: Progress | None = None
) -> RunResults:
    """Attack ``data`` (already validated and subset) as the plan says; per-example outcomes on the CPU."""
    progress = progress or _Silent()
    clean = _clean_predictions(model, data, plan.batch_size)
    results = RunResults(data=data, clean_predictions=clean, outcomes=[])
    targets = (clean == data.y).nonzero().squeeze(1)
    for planned in plan.attacks:
        attack = planned.build()
        if attack.minimal:
            whole = _run_attack(model, data, targets, attack, None, plan, engine, progress)
            results.outcomes.extend(_at_each_eps(whole, plan.epsilons))
        else:
            for eps in plan.epsilons:
                results.outcomes.append(_run_attack(model, data, targets, attack, eps, plan, engine, progress))
    return results


def _clean_predictions(model: Classifier, data: Dataset, batch_size: int) -> Tensor:
    preds = []
    with model.inference():
        for start in range(0, len(data), batch_size):
            xb = data.x[start : start + batch_size].to(model.device)
            preds.append(predict(model, xb).cpu())
    return torch.cat(preds)


def _batches(data: Dataset, index: Tensor, size: int, device: torch.device) -> Iterator[Batch]:
    for start in range(0, index.numel(), size):
        idx = index[start : start + size]
        yield Batch(index=idx, x=data.x[idx].to(device), y=data.y[idx].to(device))


def _seed(plan: Plan, attack: str, eps: float | None, batch_start: int) -> int:
    """A per-batch seed derived from the plan's seed, stable across runs and engines."""
    text = f"{plan.seed}:{attack}:{eps}:{batch_start}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


def _run_attack(
    model: Classifier,
    data: Dataset,
    targets: Tensor,
    attack: Attack,
    eps: float | None,
    plan: Plan,
    engine: Engine,
    progress: Progress,
) -> Outcome:
    n = len(data)
    out = Outcome(
        attack=attack.name,
        eps=float("nan") if eps is None else eps,
        config=attack.config(),
        attacked=torch.zeros(n, dtype=torch.bool),
        success=torch.zeros(n, dtype=torch.bool),
        distance=torch.full((n,), float("nan")),
        queries=torch.zeros(n, dtype=torch.int64),
        gradients=torch.zeros(n, dtype=torch.int64),
        elapsed=0.0,
    )
    label = attack.name if eps is None else f"{attack.name} eps={eps:g}"
    progress.start(label, int(targets.numel()))

    def task(batch: Batch) -> tuple[Batch, AttackResult]:
        seed = _seed(plan, attack.name, eps, int(batch.index[0]))
        return batch, attack(model, batch.x, batch.y, norm=plan.norm, eps=eps, seed=seed)

    for batch, result in engine.map(task, _batches(data, targets, plan.batch_size, model.device)):
        _record(out, batch.index, result)
        progress.advance(int(batch.index.numel()))
    return out


def _record(out: Outcome, index: Tensor, result: AttackResult) -> None:
    success = result.success.cpu()
    out.attacked[index] = True
    out.success[index] = success
    out.distance[index] = result.distance.cpu().float()
    out.queries[index] = result.queries.cpu()
    out.gradients[index] = result.gradients.cpu()
    out.elapsed += result.elapsed
    for pos in success.nonzero().squeeze(1).tolist():
        if len(out.kept) >= KEPT_EXAMPLES:
            break
        out.kept[int(index[pos])] = (result.x_adv[pos].detach().cpu(), int(result.predictions[pos]))


def _at_each_eps(whole: Outcome, epsilons: tuple[float, ...]) -> Iterator[Outcome]:
    """A minimal-perturbation run judged at each radius: success means a misclassified point within eps."""
    for eps in epsilons:
        within = whole.success & (whole.distance <= eps + 1e-5)
        kept = {i: x for i, x in whole.kept.items() if bool(within[i])}
        yield Outcome(
            attack=whole.attack,
            eps=eps,
            config=whole.config,
            attacked=whole.attacked,
            success=within,
            distance=whole.distance,
            queries=whole.queries,
            gradients=whole.gradients,
            elapsed=whole.elapsed,
            kept=kept,
        )
