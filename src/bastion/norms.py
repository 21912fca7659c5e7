"""Perturbation norms (Linf, L2, L1) as small value objects: project, distance, random start, ascent step.

Every method works on a batch: tensors of shape ``(n, *features)``; ``eps`` is a float or a
tensor of shape ``(n,)``. Nothing here moves data between devices: results live where the
inputs live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import torch
from torch import Tensor

from bastion.errors import ConfigError

__all__ = ["L1", "L2", "ConstrainedNorm", "Linf", "Norm", "Projection", "get_norm"]

Eps = float | Tensor


def _per_example(value: Eps, like: Tensor) -> Tensor:
    """Shape ``eps`` so that it broadcasts over the feature axes of ``like``."""
    shape = (-1,) + (1,) * (like.dim() - 1)
    if isinstance(value, Tensor):
        return value.to(like.device, like.dtype).reshape(shape)
    return torch.full((like.shape[0],), float(value), device=like.device, dtype=like.dtype).reshape(shape)


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], math.prod(t.shape[1:]))  # not -1: that is ambiguous for an empty batch


@dataclass(frozen=True)
class Norm:
    """An Lp norm on perturbations; subclasses fix ``p``."""

    name: ClassVar[str] = ""
    p: ClassVar[float] = 0.0

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        """Per-example norm of ``a - b``, shape ``(n,)``."""
        out: Tensor = torch.linalg.vector_norm(_flat(a - b), ord=self.p, dim=1)
        return out

    def project(self, delta: Tensor, eps: Eps) -> Tensor:
        """The closest point to ``delta`` inside the ball of radius ``eps``."""
        raise NotImplementedError

    def random_start(self, like: Tensor, eps: Eps, generator: torch.Generator | None = None) -> Tensor:
        """A random perturbation drawn uniformly from the ball of radius ``eps``."""
        raise NotImplementedError

    def ascent(self, grad: Tensor) -> Tensor:
        """The steepest-ascent direction of unit norm for a linear objective with gradient ``grad``."""
        raise NotImplementedError

    def clip(self, x_adv: Tensor, x: Tensor, eps: Eps, bounds: tuple[float, float]) -> Tensor:
        """Project ``x_adv`` into the ball around ``x``, then into the input bounds."""
        delta = self.project(x_adv - x, eps)
        return torch.clamp(x + delta, bounds[0], bounds[1])

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Linf(Norm):
    """The max norm: every feature moves by at most ``eps``."""

    name: ClassVar[str] = "linf"
    p: ClassVar[float] = math.inf

    def project(self, delta: Tensor, eps: Eps) -> Tensor:
        e = _per_example(eps, delta)
        return torch.maximum(torch.minimum(delta, e), -e)

    def random_start(self, like: Tensor, eps: Eps, generator: torch.Generator | None = None) -> Tensor:
        u = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
        return (2 * u - 1) * _per_example(eps, like)

    def ascent(self, grad: Tensor) -> Tensor:
        return grad.sign()


@dataclass(frozen=True)
class L2(Norm):
    """The Euclidean norm."""

    name: ClassVar[str] = "l2"
    p: ClassVar[float] = 2.0

    def project(self, delta: Tensor, eps: Eps) -> Tensor:
        n = _flat(delta).norm(dim=1).reshape((-1,) + (1,) * (delta.dim() - 1))
        factor = torch.clamp(_per_example(eps, delta) / n.clamp_min(1e-12), max=1.0)
        return delta * factor

    def random_start(self, like: Tensor, eps: Eps, generator: torch.Generator | None = None) -> Tensor:
        # Uniform in the ball: a Gaussian direction, radius eps * U^(1/d).
        g = torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
        direction = g / _flat(g).norm(dim=1).clamp_min(1e-12).reshape((-1,) + (1,) * (like.dim() - 1))
        d = _flat(like).shape[1]
        u = torch.rand((like.shape[0],), generator=generator, device=like.device, dtype=like.dtype)
        radius = u.pow(1.0 / d).reshape((-1,) + (1,) * (like.dim() - 1))
        out: Tensor = direction * radius * _per_example(eps, like)
        return out

    def ascent(self, grad: Tensor) -> Tensor:
        # Divide by the largest entry first: the gradient of a confident model can be ~1e-20, whose
        # squares underflow in float32, and a clamped norm would then shrink the step to nothing.
        shape = (-1,) + (1,) * (grad.dim() - 1)
        scale = _flat(grad).abs().amax(dim=1).reshape(shape)
        g = torch.where(scale > 0, grad / scale.clamp_min(torch.finfo(grad.dtype).tiny), 0.0)
        out: Tensor = g / _flat(g).norm(dim=1).clamp_min(1e-12).reshape(shape)
        return out


@dataclass(frozen=True)
class L1(Norm):
    """The L1 norm; projection by sorting (Duchi et al. 2008), sparse ascent (Tramèr & Boneh 2019)."""

    name: ClassVar[str] = "l1"
    p: ClassVar[float] = 1.0
    # Share of coordinates moved by one ascent step (SLIDE uses the top 1%).
    sparsity: float = 0.99

    def project(self, delta: Tensor, eps: Eps) -> Tensor:
        flat = _flat(delta)
        e = _per_example(eps, flat).reshape(-1)
        inside = flat.abs().sum(dim=1) <= e
        mags, _ = torch.sort(flat.abs(), dim=1, descending=True)
        cums = mags.cumsum(dim=1) - e[:, None]
        ks = torch.arange(1, flat.shape[1] + 1, device=flat.device, dtype=flat.dtype)
        rho = ((mags - cums / ks) > 0).to(flat.dtype).mul(ks).argmax(dim=1)
        theta = (cums.gather(1, rho[:, None]) / (rho[:, None] + 1).to(flat.dtype)).clamp_min(0)
        projected = flat.sign() * (flat.abs() - theta).clamp_min(0)
        out = torch.where(inside[:, None], flat, projected)
        return out.reshape(delta.shape)

    def random_start(self, like: Tensor, eps: Eps, generator: torch.Generator | None = None) -> Tensor:
        # Uniform in the L1 ball: d+1 exponential spacings normalised to sum to one, random signs.
        flat = _flat(like)
        n, d = flat.shape
        u = torch.rand((n, d + 1), generator=generator, device=like.device, dtype=like.dtype)
        expo = -torch.log(u.clamp_min(1e-12))
        mags = expo[:, :d] / expo.sum(dim=1, keepdim=True)
        signs = torch.rand((n, d), generator=generator, device=like.device, dtype=like.dtype) < 0.5
        sample = torch.where(signs, mags, -mags).reshape(like.shape)
        return sample * _per_example(eps, like)

    def ascent(self, grad: Tensor) -> Tensor:
        flat = _flat(grad)
        k = max(1, round(flat.shape[1] * (1.0 - self.sparsity)))
        threshold = flat.abs().topk(k, dim=1).values[:, -1:]
        step = flat.sign() * (flat.abs() >= threshold).to(flat.dtype)
        step = step / step.abs().sum(dim=1, keepdim=True).clamp_min(1e-12)
        return step.reshape(grad.shape)


class Projection(Protocol):
    """Anything that maps a candidate input onto a feasible set, given the original input."""

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class ConstrainedNorm(Norm):
    """A norm whose ``clip`` also projects onto feasible inputs (feature constraints), for every attack."""

    inner: Norm = field(default_factory=lambda: Linf())
    feasible: Projection | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    @property
    def p(self) -> float:  # type: ignore[override]
        return self.inner.p

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        return self.inner.distance(a, b)

    def project(self, delta: Tensor, eps: Eps) -> Tensor:
        return self.inner.project(delta, eps)

    def random_start(self, like: Tensor, eps: Eps, generator: torch.Generator | None = None) -> Tensor:
        return self.inner.random_start(like, eps, generator)

    def ascent(self, grad: Tensor) -> Tensor:
        return self.inner.ascent(grad)

    def clip(self, x_adv: Tensor, x: Tensor, eps: Eps, bounds: tuple[float, float]) -> Tensor:
        clipped = self.inner.clip(x_adv, x, eps, bounds)
        return clipped if self.feasible is None else self.feasible.project(clipped, x)


_NORMS: dict[str, Norm] = {"linf": Linf(), "l2": L2(), "l1": L1()}


def get_norm(name: str | Norm) -> Norm:
    """The norm named ``name`` (``linf``, ``l2``, ``l1``); a Norm is returned as it is."""
    if isinstance(name, Norm):
        return name
    key = name.strip().lower()
    aliases = {"inf": "linf", "li": "linf", "2": "l2", "1": "l1"}
    key = aliases.get(key, key)
    if key not in _NORMS:
        raise ConfigError(f"unknown norm {name!r}: expected one of {', '.join(sorted(_NORMS))}")
    return _NORMS[key]
