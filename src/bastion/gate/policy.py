"""The retraining gate's policy: which checks a candidate model must pass, with their thresholds.

Example (``gate.toml``)::

    max_accuracy_drop = 0.01        # overall accuracy on the trusted test set may fall by at most 1 point
    max_class_drop = 0.05           # and no class's accuracy by more than 5 points
    [robust]
    attack = "pgd"
    norm = "linf"
    eps = 0.1
    examples = 200
    max_drop = 0.05                 # robust accuracy under this fixed attack may fall by at most 5 points
    [scan]
    method = "clustering"           # poison scan of the candidate's training data: clustering | spectral | none
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bastion.errors import ConfigError, NotFoundError

__all__ = ["GatePolicy", "RobustCheck", "ScanCheck", "load_policy"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RobustCheck(_Strict):
    """Robust accuracy under one fixed attack budget, on the first ``examples`` test inputs."""

    attack: str = "pgd"
    norm: Literal["linf", "l2", "l1"] = "linf"
    eps: float = Field(default=0.1, gt=0)
    steps: int = Field(default=20, ge=1)
    examples: int = Field(default=200, ge=1)
    max_drop: float = Field(default=0.05, ge=0, le=1)
    seed: int = 0


class ScanCheck(_Strict):
    """A poison scan over the data the candidate was trained on (when the gate is given it)."""

    # Activation clustering by default: on the demo models it caught 5 of 8 backdoored trainings with no false
    # alarm on 14 clean ones; spectral signatures' class-level verdict caught 2 of 8 (see bastion.defences).
    method: Literal["spectral", "clustering", "none"] = "clustering"
    expected_rate: float = Field(default=0.1, gt=0, lt=0.5)  # the poison share the spectral scan looks for


class GatePolicy(_Strict):
    """Every threshold the gate applies; ``robust`` or ``scan`` set to None switches that check off."""

    max_accuracy_drop: float = Field(default=0.01, ge=0, le=1)
    max_class_drop: float = Field(default=0.05, ge=0, le=1)
    min_accuracy: float = Field(default=0.0, ge=0, le=1)
    robust: RobustCheck | None = RobustCheck()
    scan: ScanCheck | None = ScanCheck()


def load_policy(path: str | Path | None) -> GatePolicy:
    """The policy in a TOML file, or the defaults; unknown keys and impossible values are refused by name."""
    if path is None:
        return GatePolicy()
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"gate policy {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return GatePolicy.model_validate(raw)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        raise ConfigError(f"{path}: {problems}") from None
