"""Closing the loop: the gateway's quarantined data, RONI per client, retraining, the gate, promotion only on a pass.

``retrain`` gathers the submissions and feedback the policy admits (reviewer-approved only, by
default; ``include="all"`` also takes what is still in quarantine, never what a reviewer rejected
or a monitor set aside), turns feedback into labelled examples through the stored input of the
prediction it refers to, judges each client's data as a whole with RONI (its provenance variant),
trains a candidate with the recipe on the trusted base plus what RONI kept, and runs the gate
against the registry's current model. The candidate is registered either way, with its decision;
it becomes current only if the gate passed. Every client RONI rejected is flagged in the store
with the reason, and its still-quarantined items are rejected there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from bastion.data.dataset import Dataset
from bastion.defences import Roni, RoniResult
from bastion.errors import DataError
from bastion.gate.gate import GateDecision, run_gate
from bastion.gate.policy import GatePolicy
from bastion.gate.registry import ModelRegistry, ModelVersion
from bastion.gateway.store import Decision, ItemKind, ItemStatus, Store
from bastion.training import Recipe, TorchRecipe

__all__ = ["Item", "RetrainOutcome", "collect", "retrain"]

logger = logging.getLogger(__name__)
Include = Literal["approved", "all"]
_REVIEWER = "retrain:roni"


@dataclass(frozen=True)
class Item:
    """One quarantined item turned into a training example."""

    kind: Literal["submission", "feedback"]
    item_id: str
    client: str
    label: int
    status: ItemStatus


@dataclass(frozen=True)
class RetrainOutcome:
    """What the loop did: the items offered, kept and rejected (with why), the gate's decision, the new version."""

    offered: tuple[Item, ...]
    used: tuple[Item, ...]
    rejected: tuple[tuple[Item, str], ...]  # (item, reason)
    roni: RoniResult | None
    decision: GateDecision | None
    version: ModelVersion | None
    promoted: bool


def collect(store: Store, input_shape: tuple[int, ...], include: Include = "approved") -> tuple[list[Item], np.ndarray]:
    """The items ``include`` admits, as training examples: (items, inputs stacked)."""
    statuses = [ItemStatus.APPROVED] + ([ItemStatus.QUARANTINED] if include == "all" else [])
    items: list[Item] = []
    inputs: list[np.ndarray] = []
    for status in statuses:
        for submission in store.list_submissions(status=status, limit=10_000):
            items.append(Item("submission", submission.submission_id, submission.client, submission.label, status))
            inputs.append(submission.x)
        for feedback in store.list_feedback(status=status, limit=10_000):
            prediction = store.get_prediction(feedback.prediction_id)
            label = prediction.label if prediction is not None and feedback.correct else feedback.label
            if prediction is None or prediction.x is None or label is None:
                continue  # nothing to learn from: no stored input, or "wrong" without the right label
            items.append(Item("feedback", feedback.feedback_id, feedback.client, int(label), status))
            inputs.append(prediction.x)
    stacked = np.stack(inputs).astype(np.float32) if inputs else np.zeros((0, *input_shape), np.float32)
    if stacked.shape[1:] != tuple(input_shape):
        raise DataError(f"the quarantined inputs have shape {stacked.shape[1:]}, the recipe trains on {input_shape}")
    return items, stacked


def retrain(
    store: Store,
    registry: ModelRegistry,
    recipe: Recipe,
    *,
    trusted: Dataset,
    quiz: Dataset,
    test: Dataset,
    policy: GatePolicy | None = None,
    include: Include = "approved",
    roni: Roni | None = None,
    seed: int = 0,
) -> RetrainOutcome:
    """Run the loop once; see the module docstring."""
    items, inputs = collect(store, trusted.input_shape, include)
    if not items:
        logger.info("retrain: nothing admitted by the policy %r; no candidate trained", include)
        return RetrainOutcome((), (), (), None, None, None, False)
    candidates = replace(
        trusted,
        x=torch.from_numpy(inputs),
        y=torch.tensor([item.label for item in items], dtype=torch.long),
        name="quarantine",
    )
    verdict = (roni or Roni(seed=seed))(recipe, trusted, quiz, candidates, sources=[item.client for item in items])
    kept = set(verdict.accepted)
    used = tuple(item for index, item in enumerate(items) if index in kept)
    rejected = tuple((items[d.index], d.reason) for d in verdict.candidates if d.decision == "reject")
    _record_rejections(store, verdict, items)
    training = _join(trusted, verdict.keep(candidates))
    candidate = recipe.fit(training, seed=seed)
    decision = run_gate(registry.load(), candidate, test, policy=policy, candidate_data=training)
    factory = recipe.factory_spec if isinstance(recipe, TorchRecipe) else None
    version = registry.register(candidate, factory=factory or "", decision=decision, note=_note(used, rejected))
    if decision.passed:
        registry.promote(version.version, reason=f"retrained on {len(used)} quarantined items; passed the gate")
    logger.info(
        "retrain: %d offered, %d kept, gate %s", len(items), len(used), "passed" if decision.passed else "FAILED"
    )
    return RetrainOutcome(tuple(items), used, rejected, verdict, decision, version, decision.passed)


def _record_rejections(store: Store, verdict: RoniResult, items: list[Item]) -> None:
    """Flag each client RONI rejected, and reject its items still waiting in quarantine."""
    for source in verdict.sources:
        if source.decision != "reject":
            continue
        store.add_flag(
            client=source.source,
            kind="roni",
            reason=source.reason,
            evidence={"impact": source.impact, "threshold": source.threshold, "items": source.size},
        )
        for item in items:
            if item.client == source.source and item.status is ItemStatus.QUARANTINED:
                kind = ItemKind.SUBMISSION if item.kind == "submission" else ItemKind.FEEDBACK
                store.decide(
                    kind=kind, item_id=item.item_id, decision=Decision.REJECT, reviewer=_REVIEWER, reason=source.reason
                )


def _join(trusted: Dataset, kept: Dataset) -> Dataset:
    return replace(
        trusted, x=torch.cat([trusted.x, kept.x]), y=torch.cat([trusted.y, kept.y]), name=f"{trusted.name}+kept"
    )


def _note(used: tuple[Item, ...], rejected: tuple[tuple[Item, str], ...]) -> str:
    clients = sorted({item.client for item, _ in rejected})
    return f"retrained with {len(used)} quarantined items; RONI rejected {len(rejected)} from clients {clients}"
