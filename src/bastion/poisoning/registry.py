"""The poisoning registry: name -> attack class. The CLI, the susceptibility assessment and the tests all read it."""

from __future__ import annotations

from bastion.errors import ConfigError
from bastion.poisoning.backdoor import BadNets, BlendBackdoor
from bastion.poisoning.clean_label import FeatureCollision
from bastion.poisoning.interface import PoisonAttack
from bastion.poisoning.label_flip import LossLabelFlip, RandomLabelFlip, TargetedLabelFlip

__all__ = ["POISONS", "make_poison"]

POISONS: dict[str, type[PoisonAttack]] = {
    "backdoor": BadNets,
    "backdoor-blend": BlendBackdoor,
    "feature-collision": FeatureCollision,
    "label-flip": RandomLabelFlip,
    "label-flip-loss": LossLabelFlip,
    "label-flip-targeted": TargetedLabelFlip,
}


def make_poison(name: str, **options: object) -> PoisonAttack:
    """Build the registered poisoning attack ``name`` with keyword ``options``."""
    if name not in POISONS:
        raise ConfigError(f"unknown poisoning attack {name!r}: expected one of {', '.join(sorted(POISONS))}")
    try:
        return POISONS[name](**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for poisoning attack {name!r}: {exc}") from exc
