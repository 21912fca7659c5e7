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
from bastion.errors import BudgetExhaustedError, RemoteModelError
from bastion.evaluation.plan import Plan
from bastion.models.interface import Classifier, predict

__all__ = ["BUDGET_EXHAUSTED", "Outcome", "Progress", "RunResults", "run_plan"]

# A feature counts as changed by an attack when it moved by more than this.
CHANGE_TOLERANCE = 1e-6
# Adversarial examples kept per (attack, eps) run for the report's image grid.
KEPT_EXAMPLES = 8
# Why an example was not attacked to the end once the model's query budget ran out.
BUDGET_EXHAUSTED = "query budget exhausted"


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
    # example index -> why its attack did not complete (query budget exhausted, endpoint failing);
    # such examples are not marked attacked, so they count as unbroken: partial results
    errors: dict[int, str] = field(default_factory=dict)
    # bool (n, features): which features the attack moved, per example (tabular data only)
    changed: Tensor | None = None


@dataclass
class _Halt:
    """Set once the query budget runs out: every later batch, in this run and the next, is skipped."""

    reason: str | None = None


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
    """Attack ``data`` (already validated and subset) as the plan says; per-example outcomes on the CPU.

    A batch whose attack runs out of query budget, or whose remote model keeps failing, is
    recorded in its outcome's ``errors`` instead of failing the run; after the budget runs out no
    further batch is attacked. A failure while taking the clean predictions still raises.
    """
    progress = progress or _Silent()
    halt = _Halt()
    clean = _clean_predictions(model, data, plan.batch_size)
    results = RunResults(data=data, clean_predictions=clean, outcomes=[])
    targets = (clean == data.y).nonzero().squeeze(1)
    for planned in plan.attacks:
        attack = planned.build()
        if attack.minimal:
            whole = _run_attack(model, data, targets, attack, None, plan, engine, progress, halt)
            results.outcomes.extend(_at_each_eps(whole, plan.epsilons))
        else:
            for eps in plan.epsilons:
                results.outcomes.append(_run_attack(model, data, targets, attack, eps, plan, engine, progress, halt))
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
    halt: _Halt,
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
        changed=None if data.constraints is None else torch.zeros((n, data.constraints.n_features), dtype=torch.bool),
    )
    label = attack.name if eps is None else f"{attack.name} eps={eps:g}"
    progress.start(label, int(targets.numel()))

    def task(batch: Batch) -> tuple[Batch, AttackResult | str]:
        if halt.reason is not None:
            return batch, halt.reason
        seed = _seed(plan, attack.name, eps, int(batch.index[0]))
        try:
            result = attack(model, batch.x, batch.y, norm=plan.norm, eps=eps, seed=seed, constraints=data.constraints)
            return batch, result
        except BudgetExhaustedError:
            halt.reason = BUDGET_EXHAUSTED
            return batch, BUDGET_EXHAUSTED
        except RemoteModelError as exc:  # the endpoint kept failing for this batch: the next may fare better
            return batch, str(exc)

    for batch, result in engine.map(task, _batches(data, targets, plan.batch_size, model.device)):
        if isinstance(result, str):
            out.errors.update(dict.fromkeys(batch.index.tolist(), result))
        else:
            _record(out, batch, result)
        progress.advance(int(batch.index.numel()))
    return out


def _record(out: Outcome, batch: Batch, result: AttackResult) -> None:
    index = batch.index
    success = result.success.cpu()
    if out.changed is not None:
        moved = (result.x_adv - batch.x).abs().reshape(index.numel(), -1) > CHANGE_TOLERANCE
        out.changed[index] = moved.cpu()
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
            errors=whole.errors,
            changed=whole.changed,
        )
