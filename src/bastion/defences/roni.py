"""Reject On Negative Impact (RONI): untrusted training data is kept only if it does not hurt a trusted quiz set.

Nelson et al. 2008, "Exploiting machine learning to subvert your spam filter" (LEET '08), and
Barreno, Nelson, Joseph & Tygar 2010, "The security of machine learning" (Machine Learning 81):
train on a trusted base set with and without a candidate, and reject the candidate when the model
with it does measurably worse on a trusted quiz set.

**The sign.** ``impact = metric(with) - metric(without)`` taken in the direction "worse", so a
positive impact means the candidate hurt and a negative one that it helped:

- ``log-loss`` (the default; far less noisy than accuracy, which moves in steps of 1/quiz size):
  quiz cross-entropy with the candidate minus quiz cross-entropy without it;
- ``accuracy``: quiz accuracy without the candidate minus quiz accuracy with it.

**Affordable.** ART's RONIDefense retrains a model per candidate from scratch and recalibrates for
each one. Here:

1. *Warm start.* The base model is trained once. A measurement fine-tunes it for ``finetune_epochs``
   on a fixed replay sample of the base set plus the candidates (each repeated ``repeats`` times),
   always with the same seed. "Without" is the same fine-tuning with as many trusted base examples
   in the candidates' place (one reference fit per group size), so the impact isolates what the
   candidates bring rather than the extra steps: about zero for data as good as trusted data.
   ``warm_start=False`` retrains from scratch on base + candidates instead, against the base
   model (Nelson's original, for recipes that cannot warm-start).
2. *Group testing* (Dorfman 1943, two stages). Candidates are measured in random groups of
   ``group_size``. A group whose impact stays under a screening threshold (``screen_k``, stricter
   than the decision's ``k``) is accepted whole; the members of any other group are measured one by
   one and decided on their own impact. Clean points the base model already fits barely move it,
   so a group's impact is carried by its harmful members.
3. *Provenance* (``sources=``). All data from one source is judged together, one fit per source,
   and the decision applies to all of it (a source larger than half the calibration pool is
   judged on a seeded sample; see :meth:`Roni._judge_sources`).

**Calibrated once per run.** ``calibration_size`` trusted examples are held out of the base set.
For each group size used, the impacts of ``calibration_fits`` trusted groups of that size are
measured exactly as candidates are, and the threshold is ``mean + k * std`` of them.

**Fits.** One fit is one call of the recipe's ``fit``, whatever its length: the base model's full
training, the reference fine-tuning, each calibration and each measurement. ``RoniResult.fits``
counts them all.

Example::

    result = Roni()(demo_recipe("digits"), trusted, quiz, candidates)
    training = result.keep(candidates)
    [d.reason for d in result.candidates if d.decision == "reject"]
"""

from __future__ import annotations

import hashlib
import logging
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from bastion.data.dataset import Dataset
from bastion.defences.interface import Decision
from bastion.errors import BastionError, ConfigError, DataError, ModelError
from bastion.models.torch import TorchClassifier
from bastion.training.recipe import Recipe

__all__ = [
    "METRICS",
    "MIN_CALIBRATION",
    "CandidateDecision",
    "Metric",
    "Roni",
    "RoniResult",
    "SourceDecision",
    "Threshold",
]

log = logging.getLogger(__name__)

Metric = Literal["log-loss", "accuracy"]
METRICS: tuple[Metric, ...] = ("log-loss", "accuracy")
# Fewer trusted examples (or trusted impacts) than this give no usable spread to set a threshold from.
MIN_CALIBRATION = 16


@dataclass(frozen=True)
class Threshold:
    """An impact threshold for groups of ``group_size`` candidates: ``mean + k * std`` of trusted impacts."""

    group_size: int
    purpose: Literal["decide", "screen"]
    value: float
    mean: float
    std: float
    k: float
    samples: int  # trusted groups measured

    @property
    def rule(self) -> str:
        return (
            f"mean {self.mean:+.4f} + {self.k:g} x std {self.std:.4f} of the impacts of {self.samples} "
            f"trusted groups of {self.group_size}"
        )


@dataclass(frozen=True)
class CandidateDecision:
    """RONI's decision on one candidate, with the measurement that settled it."""

    index: int
    decision: Decision
    impact: float  # of that measurement: the candidate alone, its group, or its source
    measured_with: int  # candidates in that measurement (1: measured alone)
    threshold: float
    reason: str
    source: str | None = None


@dataclass(frozen=True)
class SourceDecision:
    """RONI's decision on all the data of one source (the provenance variant)."""

    source: str
    size: int  # candidates from this source
    judged_on: int  # of them in the measurement (all, or a seeded sample; see Roni._judge_sources)
    decision: Decision
    impact: float
    threshold: float
    reason: str


@dataclass(frozen=True)
class RoniResult:
    """Every candidate's decision (in input order), per-source decisions, the thresholds, and the cost."""

    metric: Metric
    candidates: tuple[CandidateDecision, ...]
    sources: tuple[SourceDecision, ...]  # empty unless sources were given
    thresholds: tuple[Threshold, ...]  # every threshold used, in the order first needed
    base_metric: float  # quiz metric of the base model (trained on the trusted base set alone)
    fits: int
    seconds: float

    @property
    def threshold(self) -> Threshold | None:
        """The decision threshold for single candidates (by source: for the smallest sources); ``None`` if unused.

        Unused when every group passed its screening: then only the screening threshold was calibrated.
        """
        decisive = [t for t in self.thresholds if t.purpose == "decide"]
        return min(decisive, key=lambda t: t.group_size) if decisive else None

    @property
    def rejected(self) -> tuple[int, ...]:
        return tuple(d.index for d in self.candidates if d.decision == "reject")

    @property
    def accepted(self) -> tuple[int, ...]:
        return tuple(d.index for d in self.candidates if d.decision == "accept")

    def keep(self, candidates: Dataset) -> Dataset:
        """The accepted candidates of ``candidates`` (the dataset this result was computed on)."""
        if len(candidates) != len(self.candidates):
            raise DataError(f"this result decided on {len(self.candidates)} candidates, got {len(candidates)}")
        keep = torch.tensor(self.accepted, dtype=torch.long)
        return replace(candidates, x=candidates.x[keep], y=candidates.y[keep], name=f"{candidates.name}-roni")


@dataclass(frozen=True, kw_only=True)
class Roni:
    """Reject On Negative Impact (Nelson et al. 2008), warm-started, group-tested and calibrated once per run.

    Call with a recipe (:class:`~bastion.training.Recipe`), a trusted set (split here into the base
    set and ``calibration_size`` calibration examples), a trusted quiz set sharing no example with
    either the trusted set or the candidates, the untrusted candidates, and optionally one source
    id per candidate to judge each source as a whole (one measurement per source; ``group_size``
    is then not used).
    """

    metric: Metric = "log-loss"  # quiz metric; log-loss is far less noisy than accuracy
    group_size: int = 4  # first-stage group size; 1 measures every candidate alone
    k: float = 3.0  # decision threshold: mean + k * std of trusted impacts
    screen_k: float = 2.0  # screening threshold for groups: stricter, so a harmful member rarely hides
    calibration_size: int = 64  # trusted examples held out of the base set to calibrate on
    calibration_fits: int = 64  # trusted groups measured per group size
    warm_start: bool = True  # fine-tune the base model; False retrains from scratch for every measurement
    finetune_epochs: int = 2
    repeats: int = 8  # copies of each candidate in a fine-tuning set
    replay: int = 64  # base examples replayed in every fine-tuning set
    seed: int = 0

    def __call__(
        self,
        recipe: Recipe,
        trusted: Dataset,
        quiz: Dataset,
        candidates: Dataset,
        *,
        sources: Sequence[str | int] | None = None,
    ) -> RoniResult:
        """Decide on every candidate (or every source); see the module docstring for the procedure."""
        start = time.perf_counter()
        self._check_config()
        _check_data(trusted, quiz, candidates, sources, self.calibration_size)
        base, pool = _split(trusted, self.calibration_size, self.seed)
        probe = _Probe(self, recipe, base, quiz)
        probe.check(candidates)
        calibration = _Calibration(probe, pool, self)
        judged: list[SourceDecision] = []
        if sources is None:
            decisions = self._judge_candidates(probe, calibration, candidates)
        else:
            decisions, judged = self._judge_sources(probe, calibration, candidates, [str(s) for s in sources])
        result = RoniResult(
            metric=self.metric,
            candidates=tuple(decisions),
            sources=tuple(judged),
            thresholds=tuple(calibration.used.values()),
            base_metric=probe.base_metric,
            fits=probe.fits,
            seconds=time.perf_counter() - start,
        )
        log.info(
            "RONI: %d of %d candidates rejected, %d fits, %.1f s",
            len(result.rejected),
            len(decisions),
            result.fits,
            result.seconds,
        )
        return result

    def _judge_candidates(
        self, probe: _Probe, calibration: _Calibration, candidates: Dataset
    ) -> list[CandidateDecision]:
        """Dorfman's two stages: groups in a seeded random order, then the members of groups that failed."""
        n = len(candidates)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        grouped = n // self.group_size * self.group_size if self.group_size > 1 else 0
        decided: dict[int, CandidateDecision] = {}
        for start in range(0, grouped, self.group_size):
            group = order[start : start + self.group_size]
            for decision in self._screen(probe, calibration, candidates, group):
                decided[decision.index] = decision
        for index in order[grouped:]:  # the remainder too small for a group
            decided[index] = self._alone(probe, calibration, candidates, index)
        return [decided[i] for i in range(n)]

    def _screen(
        self, probe: _Probe, calibration: _Calibration, candidates: Dataset, group: list[int]
    ) -> list[CandidateDecision]:
        """Accept the group whole if its impact passes the screening threshold, else decide on each member."""
        idx = torch.tensor(group)
        impact = probe.impact(candidates.x[idx], candidates.y[idx])
        threshold = calibration.threshold(len(group), "screen")
        if impact > threshold.value:
            return [self._alone(probe, calibration, candidates, i) for i in group]
        why = f"accepted with its group of {len(group)}: {_explain(self.metric, impact, threshold.value, 'screen')}"
        return [CandidateDecision(i, "accept", impact, len(group), threshold.value, why) for i in group]

    def _alone(self, probe: _Probe, calibration: _Calibration, candidates: Dataset, index: int) -> CandidateDecision:
        impact = probe.impact(candidates.x[index : index + 1], candidates.y[index : index + 1])
        threshold = calibration.threshold(1, "decide")
        decision: Decision = "reject" if impact > threshold.value else "accept"
        reason = _explain(self.metric, impact, threshold.value, "decide")
        return CandidateDecision(index, decision, impact, 1, threshold.value, reason)

    def _judge_sources(
        self, probe: _Probe, calibration: _Calibration, candidates: Dataset, sources: list[str]
    ) -> tuple[list[CandidateDecision], list[SourceDecision]]:
        """One fit per source, decided against trusted groups of the same size.

        A source is judged on ``2**floor(log2(min(size, calibration_size // 2)))`` of its examples
        (all of them when that is its size; else a seeded sample): thresholds are calibrated per
        group size, so snapping sizes to powers of two bounds the calibration cost at
        ``calibration_fits * log2(calibration_size)`` fits however many sources there are, and
        trusted groups of at most half the pool still differ from one another.
        """
        members: dict[str, list[int]] = {}
        for index, source in enumerate(sources):
            members.setdefault(source, []).append(index)
        cap = _floor_pow2(self.calibration_size // 2)
        gen = torch.Generator().manual_seed(self.seed)
        judged: list[SourceDecision] = []
        decided: dict[int, CandidateDecision] = {}
        for source, indices in members.items():
            size = _floor_pow2(min(len(indices), cap))
            chosen = torch.tensor(indices)[torch.randperm(len(indices), generator=gen)[:size]]
            impact = probe.impact(candidates.x[chosen], candidates.y[chosen])
            threshold = calibration.threshold(size, "decide")
            decision: Decision = "reject" if impact > threshold.value else "accept"
            reason = (
                f"source {source!r} ({size} of its {len(indices)} examples measured): "
                f"{_explain(self.metric, impact, threshold.value, 'decide')}"
            )
            judged.append(SourceDecision(source, len(indices), size, decision, impact, threshold.value, reason))
            for i in indices:
                decided[i] = CandidateDecision(i, decision, impact, size, threshold.value, reason, source)
        return [decided[i] for i in range(len(candidates))], judged

    def _check_config(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"unknown RONI metric {self.metric!r}: expected one of {', '.join(METRICS)}")
        for name, value, low in (
            ("group_size", self.group_size, 1),
            ("calibration_size", self.calibration_size, MIN_CALIBRATION),
            ("calibration_fits", self.calibration_fits, MIN_CALIBRATION),
            ("finetune_epochs", self.finetune_epochs, 1),
            ("repeats", self.repeats, 1),
            ("replay", self.replay, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"expected {name} to be an integer >= {low}, got {value!r}")
        for name, number in (("k", self.k), ("screen_k", self.screen_k)):
            if not (math.isfinite(number) and number > 0):
                raise ConfigError(f"expected {name} > 0, got {number}")
        if self.group_size > self.calibration_size // 2:
            raise ConfigError(
                f"expected group_size <= calibration_size // 2 = {self.calibration_size // 2} (trusted groups "
                f"are drawn from the calibration examples), got {self.group_size}"
            )


class _Probe:
    """Measures the negative impact on the quiz set of adding examples to the base set, and counts its fits.

    Warm-started, "without" is the base model fine-tuned the same way on the replay sample plus as
    many *trusted* base examples (repeated alike) in the candidates' place: one reference fit per
    group size, so the same number of steps on the same number of examples, and a candidate that
    is worth as much as trusted data has an impact near zero.
    """

    def __init__(self, roni: Roni, recipe: Recipe, base: Dataset, quiz: Dataset) -> None:
        self.roni = roni
        self.recipe = recipe
        self.base = base
        self.quiz = quiz
        self.fits = 0
        self.model = self._fit(base, init=None, epochs=None)
        self.base_metric = self._score(self.model)
        order = torch.randperm(len(base), generator=torch.Generator().manual_seed(roni.seed))
        self.replay = _subset(base, order[: roni.replay])
        self.filler = order[roni.replay :] if len(base) > roni.replay else order
        self.references: dict[int, float] = {}

    def check(self, candidates: Dataset) -> None:
        """Candidates and quiz labels must be classes the base model has, before any fit is spent on them."""
        for data in (self.quiz, candidates):
            data.validate(num_classes=self.model.num_classes, input_shape=self.model.input_shape)

    def impact(self, x: Tensor, y: Tensor) -> float:
        """Quiz metric with ``(x, y)`` added, minus without, in the direction "worse" (> 0: they hurt)."""
        if self.roni.warm_start:
            score, reference = self._score(self._finetune(x, y)), self._reference(len(x))
        else:
            score, reference = self._score(self._fit(_join(self.base, x, y), init=None, epochs=None)), self.base_metric
        return score - reference if self.roni.metric == "log-loss" else reference - score

    def _reference(self, size: int) -> float:
        if size not in self.references:
            filler = self.filler[torch.arange(size) % len(self.filler)]
            self.references[size] = self._score(self._finetune(self.base.x[filler], self.base.y[filler]))
        return self.references[size]

    def _finetune(self, x: Tensor, y: Tensor) -> TorchClassifier:
        repeats = self.roni.repeats
        data = _join(self.replay, x.repeat_interleave(repeats, 0), y.repeat_interleave(repeats))
        return self._fit(data, init=self.model, epochs=self.roni.finetune_epochs)

    def _fit(self, data: Dataset, *, init: TorchClassifier | None, epochs: int | None) -> TorchClassifier:
        self.fits += 1
        try:
            return self.recipe.fit(data, seed=self.roni.seed, init=init, epochs=epochs)
        except BastionError:
            raise
        except Exception as error:  # the user's training code: any failure is reported as the recipe's
            raise ModelError(
                f"recipe {self.recipe.name} failed on {len(data)} examples ({data.name}): "
                f"{type(error).__name__}: {error}"
            ) from error

    def _score(self, model: TorchClassifier) -> float:
        """Mean quiz cross-entropy, or quiz accuracy."""
        with torch.no_grad(), model.inference():
            logits = torch.cat([model.logits(x.to(model.device)).float().cpu() for x in torch.split(self.quiz.x, 1024)])
        if self.roni.metric == "log-loss":
            return float(F.cross_entropy(logits, self.quiz.y))
        return float((logits.argmax(dim=1) == self.quiz.y).float().mean())


class _Calibration:
    """Thresholds from the impacts of trusted groups, measured once per group size and kept for the run."""

    def __init__(self, probe: _Probe, pool: Dataset, roni: Roni) -> None:
        self.probe = probe
        self.pool = pool
        self.roni = roni
        self.impacts: dict[int, list[float]] = {}
        self.used: dict[tuple[int, str], Threshold] = {}

    def threshold(self, size: int, purpose: Literal["decide", "screen"]) -> Threshold:
        if (size, purpose) not in self.used:
            impacts = self._measure(size)
            k = self.roni.k if purpose == "decide" else self.roni.screen_k
            mean, std = statistics.fmean(impacts), statistics.pstdev(impacts)
            self.used[size, purpose] = Threshold(size, purpose, mean + k * std, mean, std, k, len(impacts))
            log.debug("RONI threshold: %s", self.used[size, purpose].rule)
        return self.used[size, purpose]

    def _measure(self, size: int) -> list[float]:
        """Impacts of trusted groups: consecutive chunks of seeded shuffles of the pool (disjoint while they last)."""
        if size not in self.impacts:
            gen = torch.Generator().manual_seed(self.roni.seed * 7919 + size)
            groups: list[Tensor] = []
            while len(groups) < self.roni.calibration_fits:
                order = torch.randperm(len(self.pool), generator=gen)
                groups.extend(order[s : s + size] for s in range(0, len(order) - size + 1, size))
            chosen = groups[: self.roni.calibration_fits]
            self.impacts[size] = [self.probe.impact(self.pool.x[g], self.pool.y[g]) for g in chosen]
        return self.impacts[size]


def _explain(metric: Metric, impact: float, threshold: float, purpose: Literal["decide", "screen"]) -> str:
    """``quiz log-loss rose by 0.0310 (impact +0.0310 > threshold +0.0120)``: what moved, and the comparison."""
    if metric == "log-loss":
        change = f"quiz log-loss {'rose' if impact >= 0 else 'fell'} by {abs(impact):.4f}"
    else:
        change = f"quiz accuracy {'fell' if impact >= 0 else 'rose'} by {abs(impact):.4f}"
    kind = "threshold" if purpose == "decide" else "screening threshold"
    return f"{change} (impact {impact:+.4f} {'>' if impact > threshold else '<='} {kind} {threshold:+.4f})"


def _check_data(
    trusted: Dataset, quiz: Dataset, candidates: Dataset, sources: Sequence[str | int] | None, calibration_size: int
) -> None:
    """Shapes agree, the trusted set is large enough, sources match, and the quiz set shares nothing."""
    for what, data in (("quiz", quiz), ("candidate", candidates)):
        if len(data) == 0:
            raise DataError(f"the {what} set is empty")
        if data.input_shape != trusted.input_shape:
            raise DataError(f"{what} inputs have shape {data.input_shape}, the trusted inputs {trusted.input_shape}")
    needed = 2 * calibration_size
    if len(trusted) < needed:
        raise DataError(
            f"the trusted set is too small to calibrate RONI: {len(trusted)} examples, at least {needed} needed "
            f"({calibration_size} held out to calibrate the threshold and as many left for the base model); "
            f"pass more trusted data or a smaller calibration_size (at least {MIN_CALIBRATION})"
        )
    if sources is not None and len(sources) != len(candidates):
        raise DataError(f"expected one source per candidate ({len(candidates)}), got {len(sources)}")
    _refuse_overlap(quiz, candidates, "candidates")
    _refuse_overlap(quiz, trusted, "trusted set")


def _refuse_overlap(quiz: Dataset, other: Dataset, what: str) -> None:
    """A quiz example whose input is byte-for-byte one of ``other``'s would score RONI on its own data."""
    seen: dict[bytes, int] = {}
    for index, digest in enumerate(_fingerprints(other.x)):
        seen.setdefault(digest, index)
    shared = [(q, seen[d]) for q, d in enumerate(_fingerprints(quiz.x)) if d in seen]
    if shared:
        q, o = shared[0]
        raise DataError(
            f"the quiz set shares {len(shared)} example(s) with the {what} (first: quiz example {q} is "
            f"{what} example {o}); RONI's quiz set must be trusted data kept apart from both the base set "
            "and the untrusted candidates"
        )


def _fingerprints(x: Tensor) -> list[bytes]:
    rows = x.detach().to("cpu", torch.float32).contiguous().reshape(len(x), -1).numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


def _split(trusted: Dataset, calibration_size: int, seed: int) -> tuple[Dataset, Dataset]:
    """A seeded split of the trusted set into the base set and the calibration pool."""
    order = torch.randperm(len(trusted), generator=torch.Generator().manual_seed(seed))
    pool, base = order[:calibration_size], order[calibration_size:]
    return (
        replace(_subset(trusted, base), name=f"{trusted.name}-base"),
        replace(_subset(trusted, pool), name=f"{trusted.name}-calibration"),
    )


def _subset(data: Dataset, idx: Tensor) -> Dataset:
    return replace(data, x=data.x[idx], y=data.y[idx])


def _join(data: Dataset, x: Tensor, y: Tensor) -> Dataset:
    x = x.to(data.x.device, data.x.dtype)
    return replace(data, x=torch.cat([data.x, x]), y=torch.cat([data.y, y.to(data.y.device)]), name="roni-probe")


def _floor_pow2(n: int) -> int:
    return 1 << (max(n, 1).bit_length() - 1)
