"""Validity of metamorphic mutants, judged by a held-out oracle model (DeepHunter's bounded-mutation check).

A metamorphic fuzzer assumes its transformations keep an input's true label. The assumption is
checked here the way Xie et al. (DeepHunter, 2019, section 5.2) check it with people, but with
a model instead: an *oracle* that is not the model under test (another seed or architecture,
trained on data disjoint from the seeds) classifies the valid mutants, those inside the
bounded-strength :class:`~bastion.fuzz.transforms.MutationLimits`. The raw rate is the share of
mutants the oracle gives their seed's true label; since the oracle itself errs on some unmutated
seeds, the relative rate divides it by the oracle's accuracy on the seeds, the best it could reach.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from bastion.data import Dataset
from bastion.errors import ConfigError, DataError
from bastion.fuzz.metamorphic import MetamorphicFuzzer
from bastion.fuzz.transforms import IMAGE_TRANSFORMS, TABULAR_TRANSFORMS, MutationLimits, apply_chain, within_limits
from bastion.models.interface import Classifier

__all__ = ["ValidityResult", "check_validity", "demo_oracle"]

logger = logging.getLogger(__name__)

# The seed of the oracle demo model: any seed but the demo model's own (0) gives another model.
ORACLE_SEED = 1


@dataclass(frozen=True)
class ValidityResult:
    """How many valid mutants the oracle still gives their seed's true label."""

    oracle: str  # the oracle model's name
    strength: float  # the metamorphic strength the mutants were made with
    linf: float  # the mutation limits they had to satisfy
    changed_fraction: float
    seeds: int
    mutants: int  # mutants made
    valid: int  # of those, inside the limits (the ones a fuzzer would query)
    kept: int  # of the valid ones, classified by the oracle as their seed's true label
    seed_accuracy: float  # the oracle's accuracy on the unmutated seeds

    @property
    def raw_rate(self) -> float:
        """Share of valid mutants the oracle classifies as their seed's true label."""
        return self.kept / self.valid if self.valid else 0.0

    @property
    def relative_rate(self) -> float:
        """The raw rate over the oracle's accuracy on the seeds (1.0: mutants as recognisable as seeds)."""
        return self.raw_rate / self.seed_accuracy if self.seed_accuracy else 0.0


def demo_oracle(dataset: str) -> Classifier:
    """The held-out oracle for a demo dataset: the demo architecture trained with another seed.

    It trains on the demo's train split, which is disjoint from the test split the seeds come
    from by default; trained once, then cached like the demo model.
    """
    from bastion.demo import demo_model

    return demo_model(dataset, seed=ORACLE_SEED)


def check_validity(
    oracle: Classifier,
    seeds: Dataset,
    *,
    strength: float = 0.5,
    limits: MutationLimits | None = None,
    transforms: tuple[str, ...] | None = None,
    mutants_per_seed: int = 4,
    max_chain: int = 2,
    seed: int = 0,
) -> ValidityResult:
    """Make ``mutants_per_seed`` metamorphic mutants of every seed and let ``oracle`` label the valid ones.

    The chains are drawn exactly as :class:`MetamorphicFuzzer` draws them with the same
    ``strength``, ``max_chain`` and ``transforms``. Example::

        check_validity(demo_oracle("digits"), load_demo("digits", "test"), strength=0.5).relative_rate
    """
    if isinstance(mutants_per_seed, bool) or not isinstance(mutants_per_seed, int) or mutants_per_seed < 1:
        raise ConfigError(f"expected mutants_per_seed >= 1, got {mutants_per_seed!r}")
    if seeds.input_shape != tuple(oracle.input_shape):
        raise DataError(
            f"{seeds.name}: seeds have shape {seeds.input_shape}, but the oracle expects {tuple(oracle.input_shape)}"
        )
    limits = limits or MutationLimits()
    sampler = MetamorphicFuzzer(transforms=transforms, strength=strength, max_chain=max_chain, limits=limits, seed=seed)
    names = _names(sampler, seeds)
    generator = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for index in range(len(seeds)):
        x = seeds.x[index : index + 1]
        for _ in range(mutants_per_seed):
            chain = sampler._chain(names, generator)  # the fuzzer's own chain distribution
            mutant, reference = apply_chain(
                x, chain, generator=generator, bounds=seeds.bounds, constraints=seeds.constraints
            )
            ok = within_limits(
                mutant, reference, limits=limits, bounds=seeds.bounds, constraints=seeds.constraints, original=x
            )
            if bool(ok[0]):
                xs.append(mutant[0])
                ys.append(int(seeds.y[index]))
    kept = int((_labels(oracle, torch.stack(xs)) == torch.tensor(ys)).sum()) if xs else 0
    accuracy = float((_labels(oracle, seeds.x) == seeds.y.cpu()).float().mean())
    result = ValidityResult(
        oracle=str(getattr(oracle, "name", type(oracle).__name__)),
        strength=float(strength),
        linf=limits.linf,
        changed_fraction=limits.changed_fraction,
        seeds=len(seeds),
        mutants=len(seeds) * mutants_per_seed,
        valid=len(xs),
        kept=kept,
        seed_accuracy=accuracy,
    )
    logger.info(
        "validity: %d of %d valid mutants keep their label (%.1f%%, %.1f%% of the oracle's seed accuracy)",
        kept,
        len(xs),
        100 * result.raw_rate,
        100 * result.relative_rate,
    )
    return result


def _names(sampler: MetamorphicFuzzer, seeds: Dataset) -> tuple[str, ...]:
    fitting = TABULAR_TRANSFORMS if seeds.x.dim() == 2 else IMAGE_TRANSFORMS
    names = sampler.transforms or tuple(fitting)
    for name in names:
        if name not in fitting:
            raise ConfigError(f"transformation {name!r} does not fit these seeds; expected one of {', '.join(fitting)}")
    return tuple(names)


def _labels(model: Classifier, x: Tensor, batch: int = 512) -> Tensor:
    with model.inference(), torch.no_grad():
        parts = [model.logits(x[i : i + batch].to(model.device)).argmax(dim=1).cpu() for i in range(0, len(x), batch)]
    return torch.cat(parts)
