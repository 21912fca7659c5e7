"""Feature constraints for tabular data: ranges, integer features, immutable features and one-hot groups.

An attack on tabular data must produce inputs that could exist: an age stays an integer, a
country stays one-hot, a feature the attacker cannot touch (a date of birth) stays as it was.
Every attack receives the constraints through its norm: projection onto the threat ball is
followed by :meth:`FeatureConstraints.project`, and the template projects the returned point
once more before checking success, so a reported success is always a feasible input.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from bastion.errors import ConfigError, DataError, NotFoundError

__all__ = ["FeatureConstraints", "load_constraints"]


@dataclass(frozen=True)
class FeatureConstraints:
    """Constraints over ``d`` features (inputs of shape ``(n, d)``, or anything that flattens to it)."""

    names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    integer: tuple[int, ...] = ()  # indices of features that take whole values
    immutable: tuple[int, ...] = ()  # indices of features the attacker cannot change
    one_hot: tuple[tuple[int, ...], ...] = field(default_factory=tuple)  # groups: exactly one feature is 1

    def __post_init__(self) -> None:
        d = len(self.names)
        if len(self.lower) != d or len(self.upper) != d:
            raise ConfigError(f"expected {d} lower and upper bounds, got {len(self.lower)} and {len(self.upper)}")
        for i, (lo, hi) in enumerate(zip(self.lower, self.upper, strict=True)):
            if lo > hi:
                raise ConfigError(f"feature {self.names[i]!r}: lower bound {lo} is above upper bound {hi}")
        for index in (*self.integer, *self.immutable, *(i for g in self.one_hot for i in g)):
            if not 0 <= index < d:
                raise ConfigError(f"feature index {index} is out of range for {d} features")

    @property
    def n_features(self) -> int:
        return len(self.names)

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """The nearest feasible input to ``x_adv`` that keeps the immutable features of ``x``."""
        flat = x_adv.reshape(x_adv.shape[0], -1)
        if flat.shape[1] != self.n_features:
            raise DataError(f"constraints cover {self.n_features} features, the inputs have {flat.shape[1]}")
        lo = torch.tensor(self.lower, device=flat.device, dtype=flat.dtype)
        hi = torch.tensor(self.upper, device=flat.device, dtype=flat.dtype)
        out = torch.maximum(torch.minimum(flat, hi), lo)
        if self.integer:
            idx = list(self.integer)
            out[:, idx] = out[:, idx].round()
        for group in self.one_hot:
            idx = list(group)
            winner = out[:, idx].argmax(dim=1)
            out[:, idx] = torch.nn.functional.one_hot(winner, len(idx)).to(out.dtype)
        if self.immutable:
            idx = list(self.immutable)
            out[:, idx] = x.reshape(x.shape[0], -1)[:, idx]
        return out.reshape(x_adv.shape)

    def changed(self, x_adv: Tensor, x: Tensor, *, tolerance: float = 1e-6) -> Tensor:
        """Per example and feature, whether the attack changed it: bool ``(n, d)``."""
        delta = (x_adv.reshape(x_adv.shape[0], -1) - x.reshape(x.shape[0], -1)).abs()
        return delta > tolerance

    def violations(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Per example, whether any constraint is broken (for tests and audits): bool ``(n,)``."""
        return (self.project(x_adv, x) - x_adv).reshape(x_adv.shape[0], -1).abs().amax(dim=1) > 1e-5


def load_constraints(
    path: Path, names: tuple[str, ...], lower: tuple[float, ...], upper: tuple[float, ...]
) -> FeatureConstraints:
    """Read constraints from JSON with keys ``integer``, ``immutable``, ``one_hot`` and ``ranges``.

    For example ``{"integer": ["age"], "immutable": ["id"], "one_hot": [["red", "green"]],
    "ranges": {"age": [18, 99]}}``.

    Features are named (or given by index); ranges default to ``lower``/``upper`` (the data's own).
    """
    if not path.exists():
        raise NotFoundError(f"constraints file not found: {path}")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(spec).__name__}")
    unknown = set(spec) - {"integer", "immutable", "one_hot", "ranges"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; expected integer, immutable, one_hot, ranges")
    index = _indexer(names, path)
    lo, hi = list(lower), list(upper)
    for name, bounds in dict(spec.get("ranges", {})).items():
        lo[index(name)], hi[index(name)] = float(bounds[0]), float(bounds[1])
    return FeatureConstraints(
        names=names,
        lower=tuple(lo),
        upper=tuple(hi),
        integer=tuple(index(f) for f in spec.get("integer", [])),
        immutable=tuple(index(f) for f in spec.get("immutable", [])),
        one_hot=tuple(tuple(index(f) for f in group) for group in spec.get("one_hot", [])),
    )


def _indexer(names: tuple[str, ...], path: Path) -> Callable[[str | int], int]:
    def index(feature: str | int) -> int:
        if isinstance(feature, int):
            return feature
        if feature not in names:
            raise ConfigError(f"{path}: unknown feature {feature!r}; expected one of {', '.join(names)}")
        return names.index(feature)

    return index
