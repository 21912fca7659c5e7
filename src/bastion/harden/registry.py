"""The trainer registry: method name -> trainer class; read by ``harden()``, the CLI and the tests."""

from __future__ import annotations

import dataclasses
from typing import Any

from bastion.errors import ConfigError
from bastion.harden.fast_fgsm import FastFGSM
from bastion.harden.interface import Trainer
from bastion.harden.pgd_at import PGDTraining
from bastion.harden.reject import RejectClass
from bastion.harden.trades import TRADES

__all__ = ["TRAINERS", "make_trainer"]

TRAINERS: dict[str, type[Trainer]] = {
    "fgsm-rs": FastFGSM,
    "pgd": PGDTraining,
    "reject-class": RejectClass,
    "trades": TRADES,
}


def make_trainer(name: str, **options: Any) -> Trainer:
    """The trainer ``name`` built with those ``options`` it declares, validated.

    ``harden()`` offers every method the same options (steps, step_size, beta); each trainer takes
    the ones it has (beta only concerns TRADES, steps not fast FGSM), and its ``config()`` records
    what applied.
    """
    if name not in TRAINERS:
        raise ConfigError(f"unknown hardening method {name!r}: expected one of {', '.join(sorted(TRAINERS))}")
    cls = TRAINERS[name]
    declared = {f.name for f in dataclasses.fields(cls)}
    trainer = cls(**{key: value for key, value in options.items() if key in declared})
    trainer.check()
    return trainer
