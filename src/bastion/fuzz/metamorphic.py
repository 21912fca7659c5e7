"""Metamorphic fuzzing: label-preserving mutants of correctly classified seeds whose prediction changes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from bastion.data import Dataset
from bastion.errors import ConfigError, DataError
from bastion.fuzz.transforms import (
    GEOMETRIC,
    IMAGE_TRANSFORMS,
    TABULAR_TRANSFORMS,
    TRANSFORMS,
    MutationLimits,
    apply_chain,
    check_strength,
    within_limits,
)
from bastion.models.interface import Classifier

__all__ = ["Finding", "FuzzResult", "MetamorphicFuzzer"]

logger = logging.getLogger(__name__)

Chain = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Finding:
    """One failure: a valid mutant of seed ``seed_index`` whose prediction changed, or that made the model raise.

    The coverage-guided fuzzer adds kinds of its own; its ``chain`` is the whole lineage, every
    mutation from the seed to the mutant.
    """

    seed_index: int
    chain: Chain  # transformation names with their strengths, in the order applied
    mutant: Tensor  # one input, without the batch axis
    original_label: int  # the model's (correct) prediction on the seed
    new_label: int | None  # None when the model raised
    kind: Literal["misprediction", "exception", "non_finite", "disagreement", "confidence_collapse"] = "misprediction"
    error: str | None = None  # the exception's type and message, for kind "exception"
    # Set by the coverage-guided fuzzer (bastion.fuzz.guided): the reference model's label (kind
    # "disagreement"), the top probability (kind "confidence_collapse") and the fuzzing step.
    reference_label: int | None = None
    confidence: float | None = None
    step: int | None = None


@dataclass(frozen=True)
class FuzzResult:
    """What a fuzzing run found and what it spent."""

    findings: tuple[Finding, ...]
    tried: int  # mutants generated, never more than the budget
    valid: int  # mutants inside the bounds, constraints and mutation limits (only these reach the model)
    queries: int  # forward rows sent to the model, seeds included
    budget: int

    @property
    def validity_rate(self) -> float:
        return self.valid / self.tried if self.tried else 0.0

    @property
    def n_findings(self) -> int:
        return len(self.findings)


class MetamorphicFuzzer:
    """Metamorphic testing with bounded mutation (DeepTest, Tian et al. 2018; DeepHunter, Xie et al. 2019).

    DeepTest: https://arxiv.org/abs/1708.08559; DeepHunter: https://doi.org/10.1145/3293882.3330579.
    Each correctly classified seed receives ``mutants_per_seed`` mutants per round, seeds taken
    in turn, until ``budget`` mutants are made. A mutant applies a chain of up to ``max_chain``
    transformations (at most one geometric, first) whose strengths sum to at most ``strength``;
    mutants outside ``limits`` are rejected (counted, not queried). The oracle: the prediction
    on a valid mutant differs from the prediction on its seed, or the model raises.

    Example: ``MetamorphicFuzzer(strength=0.5)(model, seeds, budget=500).findings``.
    """

    def __init__(
        self,
        *,
        transforms: tuple[str, ...] | None = None,
        strength: float = 0.5,
        mutants_per_seed: int = 8,
        max_chain: int = 2,
        limits: MutationLimits | None = None,
        seed: int = 0,
    ) -> None:
        self.transforms = transforms  # None: every image transformation, or the tabular one for (n, d) data
        self.strength = strength
        self.mutants_per_seed = mutants_per_seed
        self.max_chain = max_chain
        self.limits = limits
        self.seed = seed

    def __call__(self, model: Classifier, seeds: Dataset, *, budget: int) -> FuzzResult:
        names = self._check(model, seeds, budget)
        start = model.queries.forward
        labels = self._seed_labels(model, seeds)
        correct = (labels == seeds.y.to(labels.device)).nonzero().flatten().tolist()
        if not correct:
            raise DataError(f"{seeds.name}: the model classifies none of the {len(seeds)} seeds correctly")
        generator = torch.Generator().manual_seed(self.seed)
        findings: list[Finding] = []
        tried = valid = 0
        turn = 0
        while tried < budget:
            index = correct[turn % len(correct)]
            count = min(self.mutants_per_seed, budget - tried)
            found, n_valid = self._fuzz_seed(model, seeds, index, int(labels[index]), names, count, generator)
            findings.extend(found)
            tried, valid, turn = tried + count, valid + n_valid, turn + 1
        logger.info("metamorphic fuzzing: %d mutants, %d valid, %d findings", tried, valid, len(findings))
        return FuzzResult(tuple(findings), tried, valid, model.queries.forward - start, budget)

    def _check(self, model: Classifier, seeds: Dataset, budget: int) -> tuple[str, ...]:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ConfigError(f"expected a budget of at least one mutant, got {budget!r}")
        check_strength(self.strength)
        for name in ("mutants_per_seed", "max_chain"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"expected {name} >= 1, got {value!r}")
        if seeds.input_shape != tuple(model.input_shape):
            raise DataError(
                f"{seeds.name}: seeds have shape {seeds.input_shape}, but the model expects {tuple(model.input_shape)}"
            )
        tabular = seeds.x.dim() == 2
        names = self.transforms or tuple(TABULAR_TRANSFORMS if tabular else IMAGE_TRANSFORMS)
        fitting = TABULAR_TRANSFORMS if tabular else IMAGE_TRANSFORMS
        for name in names:
            if name not in TRANSFORMS:
                raise ConfigError(f"unknown transformation {name!r}; expected one of {', '.join(sorted(TRANSFORMS))}")
            if name not in fitting:
                kind = "tabular rows" if tabular else "images"
                raise ConfigError(f"transformation {name!r} does not apply to {kind}; use one of {', '.join(fitting)}")
        return tuple(names)

    def _seed_labels(self, model: Classifier, seeds: Dataset) -> Tensor:
        with model.inference(), torch.no_grad():
            return model.logits(seeds.x.to(model.device)).argmax(dim=1).cpu()

    def _chain(self, names: tuple[str, ...], generator: torch.Generator) -> Chain:
        """Up to ``max_chain`` transformations (one geometric at most, first), strengths summing to <= strength."""
        length = int(torch.randint(1, min(self.max_chain, len(names)) + 1, (1,), generator=generator))
        order = torch.randperm(len(names), generator=generator).tolist()
        picked: list[str] = []
        for i in order:
            if len(picked) == length:
                break
            if names[i] in GEOMETRIC and any(p in GEOMETRIC for p in picked):
                continue
            picked.append(names[i])
        picked.sort(key=lambda name: name not in GEOMETRIC)
        weights = torch.rand(len(picked), generator=generator) + 1e-3
        scale = self.strength * float(torch.rand(1, generator=generator) * 0.5 + 0.5)
        shares = (weights / weights.sum() * scale).tolist()
        return tuple((name, round(share, 6)) for name, share in zip(picked, shares, strict=True))

    def _fuzz_seed(
        self,
        model: Classifier,
        seeds: Dataset,
        index: int,
        label: int,
        names: tuple[str, ...],
        count: int,
        generator: torch.Generator,
    ) -> tuple[list[Finding], int]:
        """Make ``count`` mutants of one seed, query the valid ones, return the findings and the valid count."""
        x = seeds.x[index : index + 1]
        limits = self.limits or MutationLimits()
        kept: list[tuple[Chain, Tensor]] = []
        for _ in range(count):
            chain = self._chain(names, generator)
            mutant, reference = apply_chain(
                x, chain, generator=generator, bounds=seeds.bounds, constraints=seeds.constraints
            )
            ok = within_limits(
                mutant, reference, limits=limits, bounds=seeds.bounds, constraints=seeds.constraints, original=x
            )
            if bool(ok[0]):
                kept.append((chain, mutant[0]))
        if not kept:
            return [], 0
        return self._oracle(model, index, label, kept), len(kept)

    def _oracle(self, model: Classifier, index: int, label: int, kept: list[tuple[Chain, Tensor]]) -> list[Finding]:
        """Query the mutants in one batch; if the model raises, one at a time to tell which ones."""
        batch = torch.stack([m for _, m in kept])
        try:
            predicted = self._predict(model, batch)
        except Exception:  # a model that raises is a finding, not a crash of the fuzzer
            return [f for chain, m in kept if (f := self._one(model, index, label, chain, m)) is not None]
        return [
            Finding(index, chain, mutant, label, int(new))
            for (chain, mutant), new in zip(kept, predicted.tolist(), strict=True)
            if int(new) != label
        ]

    def _one(self, model: Classifier, index: int, label: int, chain: Chain, mutant: Tensor) -> Finding | None:
        try:
            new = int(self._predict(model, mutant.unsqueeze(0))[0])
        except Exception as exc:  # any failure of the model under test is what we look for
            return Finding(index, chain, mutant, label, None, "exception", f"{type(exc).__name__}: {exc}")
        return None if new == label else Finding(index, chain, mutant, label, new)

    def _predict(self, model: Classifier, x: Tensor) -> Tensor:
        with model.inference(), torch.no_grad():
            return model.logits(x.to(model.device)).argmax(dim=1).cpu()
