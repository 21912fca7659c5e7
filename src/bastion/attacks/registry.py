"""The attack registry: name -> constructor. The CLI, the docs and the conformance suite all read it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bastion.attacks.blackbox import BoundaryAttack, HopSkipJump, SimBA, Square
from bastion.attacks.ensemble import Ensemble
from bastion.attacks.evasion import APGD, APGDT, FGSM, PGD, CarliniWagnerL2, DeepFool
from bastion.attacks.interface import Attack
from bastion.errors import ConfigError

__all__ = ["ATTACKS", "make_attack"]


def _apgd_ce(**options: Any) -> APGD:
    """APGD on the cross-entropy loss."""
    return APGD(loss="ce", **options)


def _apgd_dlr(**options: Any) -> APGD:
    """APGD on the DLR loss."""
    return APGD(loss="dlr", **options)


ATTACKS: dict[str, Callable[..., Attack]] = {
    "apgd-ce": _apgd_ce,
    "apgd-dlr": _apgd_dlr,
    "apgd-t": APGDT,
    "autoattack": Ensemble,
    "boundary": BoundaryAttack,
    "cw": CarliniWagnerL2,
    "deepfool": DeepFool,
    "fgsm": FGSM,
    "hopskipjump": HopSkipJump,
    "pgd": PGD,
    "simba": SimBA,
    "square": Square,
}


def make_attack(name: str, **options: object) -> Attack:
    """Build the registered attack ``name`` with keyword ``options``."""
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}: expected one of {', '.join(sorted(ATTACKS))}")
    try:
        return ATTACKS[name](**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for attack {name!r}: {exc}") from exc
