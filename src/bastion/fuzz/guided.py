"""Coverage-guided fuzzing (TensorFuzz): a corpus grown by the novelty of activation vectors, with crash oracles."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

from bastion.data import Dataset
from bastion.errors import ConfigError, DataError
from bastion.fuzz.coverage import ActivationReader, NearestNeighbourCoverage, NeuronCoverage, Outputs, seed_threshold
from bastion.fuzz.metamorphic import Chain, Finding, FuzzResult
from bastion.fuzz.transforms import IMAGE_TRANSFORMS, TABULAR_TRANSFORMS, apply_chain, check_strength
from bastion.models.interface import Classifier

__all__ = ["CoverageGuidedFuzzer", "GuidedFuzzResult"]

logger = logging.getLogger(__name__)

Kind = Literal["exception", "non_finite", "disagreement", "misprediction", "confidence_collapse"]
# Called after each step with (evaluations spent, findings so far).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class GuidedFuzzResult(FuzzResult):
    """A :class:`FuzzResult` with the corpus's growth: ``budget`` and ``queries`` count model evaluations."""

    corpus_size: int  # seeds plus the mutants kept for their novel activations
    growth: tuple[tuple[int, int, float], ...]  # (step, corpus size, neuron coverage) after each step
    neuron_coverage: float  # share of units ever above the threshold (of the logits for models without a module)
    guided: bool  # False for the random-mutation baseline
    # Evaluations spent at each point of ``growth`` (the same length): coverage against inputs spent.
    evaluations: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Element:
    """A corpus member: an input and its lineage back to a seed."""

    x: Tensor  # one input, without the batch axis
    seed_index: int
    chain: Chain  # every mutation from the seed to ``x``
    seed_label: int
    seed_confident: bool
    margin: float = 1.0  # probability of ``seed_label`` minus the largest other one, once run


@dataclass
class _Run:
    """The mutable state of one fuzzing run."""

    generator: torch.Generator
    coverage: NearestNeighbourCoverage
    neurons: NeuronCoverage
    budget: int
    used: int = 0
    step: int = 0
    tried: int = 0
    corpus: list[_Element] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    growth: list[tuple[int, int, float]] = field(default_factory=list)
    evaluations: list[int] = field(default_factory=list)


# One row's outcome: its logits and activation, an exception's text, or None (not run: budget spent).
_Row = tuple[Tensor, Tensor] | str | None


class CoverageGuidedFuzzer:
    """Coverage-guided fuzzing of a classifier (TensorFuzz, Odena et al. 2019, https://arxiv.org/abs/1807.10875).

    The corpus starts as the seeds. Each step picks a member (recent-biased: uniformly among the
    ``recent`` newest members plus one drawn uniformly from the whole corpus), makes
    ``batch_size`` mutants of it with one of ``mutations`` at up to ``strength`` each, projected
    into an L-infinity ball of radius ``linf`` (a share of the bounds' width) around the original
    seed, and runs them. A mutant joins the corpus when its activation vector (the input of the
    last ``nn.Linear`` of a torch model, else the logits) lies farther than ``novelty`` times the
    seeds' median nearest-neighbour distance from every activation in the corpus.
    Oracles: non-finite logits, an exception from the model, a top class that differs from the
    ``reference`` model's, and confidence collapse (top probability below ``confidence_floor`` on
    a mutant of a seed whose top probability was at least ``confident``); with
    ``mispredictions=True`` also a top class that differs from the model's on the seed
    (DeepHunter's oracle, Xie et al. 2019), off by default since the L-infinity ball need not
    keep the label (check such findings with :mod:`bastion.fuzz.validity`). ``selection="margin"``
    replaces the recent-biased pick with a tournament of ``tournament`` uniformly drawn members won
    by the smallest margin of the seed's label (bench/bench_fuzz.py: 4.8x the baseline's unique
    failures on the digits demo, where the recent-biased pick found none). ``guided=False`` is the
    plain random-mutation baseline: mutants of uniformly drawn seeds, no corpus growth.
    ``budget`` counts rows run through the model, seeds included; the reference runs on the same
    rows and is not counted.

    Example: ``CoverageGuidedFuzzer(seed=0)(model, seeds, budget=2000, reference=half).findings``.
    """

    def __init__(
        self,
        *,
        mutations: tuple[str, ...] | None = None,
        strength: float = 0.5,
        linf: float = 0.3,
        batch_size: int = 8,
        novelty: float = 0.1,
        max_corpus: int = 2000,
        recent: int = 5,
        neuron_threshold: float = 0.0,
        confidence_floor: float = 0.3,
        confident: float = 0.9,
        mispredictions: bool = False,
        selection: str = "recent",
        tournament: int = 4,
        guided: bool = True,
        seed: int = 0,
    ) -> None:
        self.mutations = mutations  # None: noise, brightness and contrast, or the tabular one for (n, d) data
        self.strength = strength
        self.linf = linf
        self.batch_size = batch_size
        self.novelty = novelty
        self.max_corpus = max_corpus
        self.recent = recent
        self.neuron_threshold = neuron_threshold
        self.confidence_floor = confidence_floor
        self.confident = confident
        self.mispredictions = mispredictions
        self.selection = selection  # "recent" (TensorFuzz) or "margin": see _pick
        self.tournament = tournament  # members drawn per "margin" pick
        self.guided = guided
        self.seed = seed

    def __call__(
        self,
        model: Classifier,
        seeds: Dataset,
        *,
        budget: int,
        reference: Classifier | None = None,
        progress: Progress | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> GuidedFuzzResult:
        """Fuzz ``model`` from ``seeds``; ``progress`` hears each step, ``stop`` (e.g. a deadline) may end it early."""
        names = self._check(model, seeds, budget, reference)
        start = model.queries.forward
        reader = ActivationReader(model)
        run = self._start(reader, seeds, budget, reference)
        while run.used < budget and run.corpus and not (stop is not None and stop()):
            run.step += 1
            self._fuzz_step(run, reader, seeds, names, reference)
            run.growth.append((run.step, run.coverage.size, run.neurons.value))
            run.evaluations.append(run.used)
            if progress is not None:
                progress(run.used, len(run.findings))
        logger.info(
            "coverage-guided fuzzing: %d evaluations, corpus %d, neuron coverage %.2f, %d findings",
            run.used,
            run.coverage.size,
            run.neurons.value,
            len(run.findings),
        )
        return GuidedFuzzResult(
            tuple(run.findings),
            run.tried,
            run.tried,
            model.queries.forward - start,
            budget,
            corpus_size=len(run.corpus),
            growth=tuple(run.growth),
            neuron_coverage=run.neurons.value,
            guided=self.guided,
            evaluations=tuple(run.evaluations),
        )

    def _check(self, model: Classifier, seeds: Dataset, budget: int, reference: Classifier | None) -> tuple[str, ...]:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget <= len(seeds):
            raise ConfigError(f"expected a budget of more evaluations than the {len(seeds)} seeds, got {budget!r}")
        check_strength(self.strength)
        if self.selection not in ("recent", "margin"):
            raise ConfigError(f"unknown selection {self.selection!r}; expected recent or margin")
        for name in ("batch_size", "max_corpus", "recent", "tournament"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"expected {name} >= 1, got {value!r}")
        for name in ("linf", "confidence_floor", "confident"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ConfigError(f"expected {name} in (0, 1], got {getattr(self, name)!r}")
        if self.novelty < 0:
            raise ConfigError(f"expected novelty >= 0, got {self.novelty!r}")
        for target in (model, reference):
            if target is not None and seeds.input_shape != tuple(target.input_shape):
                raise DataError(
                    f"{seeds.name}: seeds have shape {seeds.input_shape}, "
                    f"but a model expects {tuple(target.input_shape)}"
                )
        tabular = seeds.x.dim() == 2
        fitting = TABULAR_TRANSFORMS if tabular else IMAGE_TRANSFORMS
        names = self.mutations or (("tabular",) if tabular else ("noise", "brightness", "contrast"))
        for name in names:
            if name not in fitting:
                raise ConfigError(f"unknown or unfitting mutation {name!r}; expected one of {', '.join(fitting)}")
        return tuple(names)

    def _start(self, reader: ActivationReader, seeds: Dataset, budget: int, reference: Classifier | None) -> _Run:
        """Run the seeds, check them with the oracles, and make them the corpus."""
        run = _Run(
            torch.Generator().manual_seed(self.seed),
            NearestNeighbourCoverage(0.0, self.max_corpus),
            NeuronCoverage(self.neuron_threshold),
            budget,
        )
        rows = self._evaluate(run, reader, seeds.x)
        ran = [(i, row) for i, row in enumerate(rows) if isinstance(row, tuple)]
        if ran:
            acts = torch.stack([row[1] for _, row in ran])
            run.coverage.threshold = seed_threshold(acts, self.novelty)
            run.neurons.update(acts)
        for index, row in enumerate(rows):
            if row is None:
                continue
            label, top = (-1, 0.0) if isinstance(row, str) else _top(row[0])
            margin = _margin(row[0], label) if isinstance(row, tuple) else 1.0
            element = _Element(seeds.x[index], index, (), label, top >= self.confident, margin)
            self._judge(run, element, element.x, row, reference)
            if isinstance(row, tuple) and bool(torch.isfinite(row[1]).all()):
                run.corpus.append(element)
                run.coverage.add(row[1].unsqueeze(0))
        run.growth.append((0, run.coverage.size, run.neurons.value))
        run.evaluations.append(run.used)
        return run

    def _fuzz_step(
        self,
        run: _Run,
        reader: ActivationReader,
        seeds: Dataset,
        names: tuple[str, ...],
        reference: Classifier | None,
    ) -> None:
        parent = self._pick(run)
        count = min(self.batch_size, run.budget - run.used)
        children = [self._mutate(run, parent, seeds, names) for _ in range(count)]
        run.tried += count
        rows = self._evaluate(run, reader, torch.stack([c.x for c in children]))
        for child, row in zip(children, rows, strict=True):
            if row is None:
                continue
            self._judge(run, child, child.x, row, reference)
            if isinstance(row, tuple):
                run.neurons.update(row[1].unsqueeze(0))
                margin = _margin(row[0], child.seed_label)
                # Under "margin" selection a member past the boundary would only repeat its finding.
                lost = self.selection == "margin" and margin < 0
                if self.guided and not lost and run.coverage.is_new(row[1]):
                    run.corpus.append(replace(child, margin=margin))
                    run.coverage.add(row[1].unsqueeze(0))

    def _pick(self, run: _Run) -> _Element:
        """TensorFuzz's recent-biased choice; uniform over the seeds for the baseline."""
        n = len(run.corpus)
        uniform = int(torch.randint(0, n, (1,), generator=run.generator))
        if not self.guided:
            return run.corpus[uniform]
        if self.selection == "margin":
            # Prediction-guided selection (after DLFuzz, Guo et al. 2018): of ``tournament`` members
            # drawn uniformly, the one nearest the decision boundary of its seed's label, preferring
            # seeds without a finding yet (another mutant of a failed seed mostly repeats its failure).
            drawn: list[int] = torch.randint(0, n, (self.tournament,), generator=run.generator).tolist()
            failed = {f.seed_index for f in run.findings}
            return min((run.corpus[i] for i in drawn), key=lambda e: (e.seed_index in failed, e.margin))
        pool: list[int] = [*range(max(0, n - self.recent), n), uniform]
        chosen: _Element = run.corpus[pool[int(torch.randint(0, len(pool), (1,), generator=run.generator))]]
        return chosen

    def _mutate(self, run: _Run, parent: _Element, seeds: Dataset, names: tuple[str, ...]) -> _Element:
        """One mutation of ``parent``, projected into the L-infinity ball around its seed and the bounds."""
        name = names[int(torch.randint(0, len(names), (1,), generator=run.generator))]
        strength = round(self.strength * float(torch.rand(1, generator=run.generator) * 0.5 + 0.5), 6)
        mutant, _ = apply_chain(
            parent.x.unsqueeze(0),
            [(name, strength)],
            generator=run.generator,
            bounds=seeds.bounds,
            constraints=seeds.constraints,
        )
        origin = seeds.x[parent.seed_index].unsqueeze(0)
        radius = self.linf * (seeds.bounds[1] - seeds.bounds[0])
        mutant = torch.minimum(torch.maximum(mutant, origin - radius), origin + radius)
        mutant = mutant.clamp(seeds.bounds[0], seeds.bounds[1])
        if seeds.constraints is not None:
            mutant = seeds.constraints.project(mutant, origin)
        return _Element(
            mutant[0], parent.seed_index, (*parent.chain, (name, strength)), parent.seed_label, parent.seed_confident
        )

    def _evaluate(self, run: _Run, reader: ActivationReader, x: Tensor) -> list[_Row]:
        """Run a batch (counted against the budget); if the model raises, rows one at a time while budget lasts."""
        run.used += x.shape[0]
        try:
            out = reader(x)
        except Exception:  # a model that raises is a finding, not a crash of the fuzzer
            return [self._evaluate_one(run, reader, row) for row in x]
        return [(out.logits[i], out.activations[i]) for i in range(x.shape[0])]

    def _evaluate_one(self, run: _Run, reader: ActivationReader, row: Tensor) -> _Row:
        if run.used >= run.budget:
            return None
        run.used += 1
        try:
            out: Outputs = reader(row.unsqueeze(0))
        except Exception as exc:  # any failure of the model under test is what we look for
            return f"{type(exc).__name__}: {exc}"
        return out.logits[0], out.activations[0]

    def _judge(self, run: _Run, element: _Element, x: Tensor, row: _Row, reference: Classifier | None) -> None:
        """Check one evaluated row against the oracles, most severe first; record at most one finding."""
        found = self._oracle(element, x, row, reference)
        if found is None:
            return
        kind, label, other, confidence, error = found
        run.findings.append(
            Finding(
                element.seed_index,
                element.chain,
                x,
                element.seed_label,
                label,
                kind,
                error,
                reference_label=other,
                confidence=confidence,
                step=run.step,
            )
        )

    def _oracle(
        self, element: _Element, x: Tensor, row: _Row, reference: Classifier | None
    ) -> tuple[Kind, int | None, int | None, float | None, str | None] | None:
        if row is None:
            return None
        if isinstance(row, str):
            return "exception", None, None, None, row
        logits = row[0]
        if not bool(torch.isfinite(logits).all()):
            return "non_finite", None, None, None, None
        label, top = _top(logits)
        if reference is not None:
            try:
                with reference.inference(), torch.no_grad():
                    other = int(reference.logits(x.unsqueeze(0).to(reference.device)).argmax(dim=1)[0])
            except Exception as exc:  # the reference failing is a finding about the pair too
                return "exception", label, None, top, f"reference: {type(exc).__name__}: {exc}"
            if other != label:
                return "disagreement", label, other, top, None
        if self.mispredictions and element.chain and label != element.seed_label:
            return "misprediction", label, None, top, None
        if element.seed_confident and top < self.confidence_floor:
            return "confidence_collapse", label, None, top, None
        return None


def _margin(logits: Tensor, label: int) -> float:
    """The probability of ``label`` minus the largest other probability: negative once the label is lost."""
    probs = torch.softmax(logits.double(), dim=0)
    if not 0 <= label < probs.shape[0] or not bool(torch.isfinite(probs).all()):
        return 1.0
    others = torch.cat([probs[:label], probs[label + 1 :]])
    return float(probs[label] - (others.max() if others.numel() else 0.0))


def _top(logits: Tensor) -> tuple[int, float]:
    """The top class and its softmax probability."""
    probs = torch.softmax(logits.double(), dim=0)
    return int(probs.argmax()), float(probs.max())
