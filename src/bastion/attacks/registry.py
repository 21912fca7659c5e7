"""The attack registry: name -> constructor. The CLI, the docs and the conformance suite all read it."""

from __future__ import annotations

from collections.abc import Callable

from bastion.attacks.ensemble import Ensemble
from bastion.attacks.evasion import FGSM, PGD
from bastion.attacks.interface import Attack
from bastion.errors import ConfigError

__all__ = ["ATTACKS", "make_attack"]

ATTACKS: dict[str, Callable[..., Attack]] = {
    "autoattack": Ensemble,
    "fgsm": FGSM,
    "pgd": PGD,
}


def make_attack(name: str, **options: object) -> Attack:
    """Build the registered attack ``name`` with keyword ``options``."""
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}: expected one of {', '.join(sorted(ATTACKS))}")
    try:
        return ATTACKS[name](**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for attack {name!r}: {exc}") from exc
