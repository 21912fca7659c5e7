"""HopSkipJumpAttack: walk along the decision boundary, steering by a gradient direction estimated from labels.

Chen, Jordan & Wainwright, "HopSkipJumpAttack: A Query-Efficient Decision-Based Attack", IEEE S&P 2020,
https://arxiv.org/abs/1904.02144 (Algorithms 1-2, Sec. 4 for the choice of delta and the step size).

Threat: minimal L2 or Linf perturbation inside the model's input bounds, seen through the top label
only (phi(x') = "is x' adversarial?"); ``eps``, when given, only judges success. Targeted with
``targets``.

Start from an adversarial point (x itself if already adversarial; else uniform noise, untargeted;
else an image of the batch with another label, or with the target label when targeted) and bisect
to the boundary (L2: along the segment to x; Linf: by clipping into a box around x). Then, at
iteration t = 1, 2, ... from the boundary point x_t:

1. estimate the gradient direction of phi at x_t from B_t = min(B0 sqrt(t), max_evals) random unit
   directions u_b (Gaussian for L2, uniform for Linf), each asked at x_t + delta_t u_b, with the
   mean answer subtracted as a baseline; delta_t = 0.1 (upper - lower) at t = 1, then
   sqrt(d) theta d_{t-1} (L2) or d theta d_{t-1} (Linf), with theta = gamma d^(-3/2) (L2) or
   gamma d^(-2) (Linf) and d_{t-1} the distance of the last point before its bisection;
2. step along v_t (the estimate for L2, its sign for Linf) by xi_t = ||x_t - x|| / sqrt(t), halved
   until the stepped point is adversarial (geometric progression);
3. bisect back to the boundary, to theta (L2, in alpha) or min(theta d, theta) (Linf, in radius).

All examples advance together, each with its own state; an example leaves the batch when the next
estimate (B_t rows and one step query) would exceed its budget, when its step search runs out of
budget, or after ``steps`` iterations. The returned point is the closest adversarial boundary point
found; an example without any adversarial start is returned unchanged.

Arguments:
    max_queries: model rows per example, every one counted, the template's final check included (5000).
    steps: the most iterations (64; the budget usually ends the attack first).
    initial_evals: B0, samples of the first gradient estimate (100).
    max_evals: the most samples of one estimate (10000).
    gamma: scales theta, the bisection tolerance and the sampling radius (1.0).
    init_tries: starting candidates tried per source (noise, then images of the batch) (20).

Shapes: ``x`` ``(n, *input_shape)``, ``y`` ``(n,)``, optional ``targets`` ``(n,)``.

Example::

    result = HopSkipJump(max_queries=1000)(restrict(model, "labels"), x, y, norm="l2", seed=0)
    result.distance.median(), result.queries.max()
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from bastion.attacks.blackbox.decision import MAX_ROWS, Oracle, boundary_search, find_starts
from bastion.attacks.interface import Attack, Ledger, require_at_least
from bastion.models.interface import Classifier, Knowledge
from bastion.norms import Norm

__all__ = ["HopSkipJump"]

# Halvings of the step size before an iteration gives up on its step (xi_t shrunk by 2^-25).
MAX_HALVINGS = 25
# The first sampling radius, as a share of the input range (the paper's delta_1).
FIRST_DELTA = 0.1


@dataclass(frozen=True, kw_only=True)
class HopSkipJump(Attack):
    """Chen et al.'s HopSkipJumpAttack for L2 and Linf, batched, on labels only."""

    name: ClassVar[str] = "hopskipjump"
    norms: ClassVar[tuple[str, ...]] = ("l2", "linf")
    knowledge: ClassVar[Knowledge] = Knowledge.LABELS
    minimal: ClassVar[bool] = True

    max_queries: int = 5000
    steps: int = 64
    initial_evals: int = 100
    max_evals: int = 10_000
    gamma: float = 1.0
    init_tries: int = 20

    def _run(
        self,
        model: Classifier,
        x: Tensor,
        y: Tensor,
        *,
        norm: Norm,
        eps: float | None,
        targets: Tensor | None,
        generator: torch.Generator,
        ledger: Ledger,
    ) -> Tensor:
        self._validate()
        oracle = Oracle(model, y, targets, ledger, self.max_queries - 1)
        # Initialisation: an adversarial start per example, bisected to the boundary.
        start, found = find_starts(oracle, x, generator, self.init_tries)
        ids = (found & (norm.distance(start, x) > 0)).nonzero().squeeze(1)  # the examples that walk
        theta = self._theta(x, norm)
        before = norm.distance(start[ids], x[ids])  # distance before the last bisection: sets delta_t
        current = boundary_search(oracle, x[ids], start[ids], ids, norm, _tolerance(theta, before, norm))
        best = start.clone()
        best[ids] = current
        for t in range(1, self.steps + 1):
            ids, current, before = self._iterate(oracle, x, ids, current, before, t, norm, theta, generator)
            _keep_closest(best, x, ids, current, norm)
            if ids.numel() == 0:
                break
        return best

    def _validate(self) -> None:
        require_at_least("max_queries", self.max_queries, 1)
        require_at_least("steps", self.steps, 1)
        require_at_least("initial_evals", self.initial_evals, 1)
        require_at_least("max_evals", self.max_evals, 1)
        require_at_least("gamma", self.gamma, 1e-12)
        require_at_least("init_tries", self.init_tries, 0)

    def _theta(self, x: Tensor, norm: Norm) -> float:
        """theta = gamma d^(-3/2) (L2) or gamma d^(-2) (Linf): the bisection tolerance (Sec. 4.2)."""
        d = math.prod(x.shape[1:])
        return self.gamma / (d * math.sqrt(d)) if norm.name == "l2" else self.gamma / (d * d)

    def _iterate(
        self,
        oracle: Oracle,
        x: Tensor,
        ids: Tensor,
        current: Tensor,
        before: Tensor,
        t: int,
        norm: Norm,
        theta: float,
        generator: torch.Generator,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One iteration for the examples that can pay for it: estimate, step, bisect back to the boundary."""
        evals = min(int(self.initial_evals * math.sqrt(t)), self.max_evals)
        keep = oracle.left(ids) >= evals + 1  # the estimate, and at least one step query to use it
        ids, current, before = ids[keep], current[keep], before[keep]
        if ids.numel() == 0:
            return ids, current, before
        xs = x[ids]
        distance = norm.distance(current, xs)
        delta = self._delta(t, before, x, norm, oracle.model.bounds)
        direction = estimate_direction(oracle, current, ids, evals, delta, norm, generator)
        update = direction.sign() if norm.name == "linf" else direction
        stepped, moved = step_size_search(oracle, current, update, distance / math.sqrt(t), ids)
        before = torch.where(moved, norm.distance(stepped, xs), before)
        rows = moved.nonzero().squeeze(1)
        current = current.clone()
        current[rows] = boundary_search(
            oracle, xs[rows], stepped[rows], ids[rows], norm, _tolerance(theta, before[rows], norm)
        )
        return ids, current, before

    def _delta(self, t: int, before: Tensor, x: Tensor, norm: Norm, bounds: tuple[float, float]) -> Tensor:
        """The sampling radius delta_t (Sec. 4.2): 0.1 of the input range first, then scaled to the distance."""
        if t == 1:
            return torch.full_like(before, FIRST_DELTA * (bounds[1] - bounds[0]))
        d = math.prod(x.shape[1:])
        theta = self._theta(x, norm)
        return (math.sqrt(d) if norm.name == "l2" else d) * theta * before


def _tolerance(theta: float, before: Tensor, norm: Norm) -> float | Tensor:
    """Bisection tolerance: theta in alpha (L2), min(theta d, theta) in the Linf radius."""
    return theta if norm.name == "l2" else torch.clamp(before * theta, max=theta)


def estimate_direction(
    oracle: Oracle,
    points: Tensor,
    ids: Tensor,
    evals: int,
    delta: Tensor,
    norm: Norm,
    generator: torch.Generator,
) -> Tensor:
    """The unit gradient direction of phi at each boundary point, by Monte-Carlo (Sec. 3.2, Eq. 9-16).

    ``evals`` samples per example, in groups of examples of at most MAX_ROWS probes, which the oracle sends
    through the model in chunks sized for its device.
    """
    group = max(1, MAX_ROWS // evals)
    parts = [
        _estimate_group(oracle, points[s : s + group], ids[s : s + group], evals, delta[s : s + group], norm, generator)
        for s in range(0, ids.numel(), group)
    ]
    return torch.cat(parts)


def _estimate_group(
    oracle: Oracle, points: Tensor, ids: Tensor, evals: int, delta: Tensor, norm: Norm, generator: torch.Generator
) -> Tensor:
    """Baseline-subtracted mean of phi-weighted unit perturbations for a few examples."""
    m, shape = ids.numel(), points.shape[1:]
    lo, hi = oracle.model.bounds
    size, device = (m, evals, *shape), points.device
    if norm.name == "l2":
        u = torch.randn(size, generator=generator, device=device)
    else:
        u = 2 * torch.rand(size, generator=generator, device=device) - 1
    u = u / u.flatten(2).norm(dim=2).reshape(m, evals, *([1] * len(shape)))
    scale = delta.reshape(m, 1, *([1] * len(shape)))
    probes = torch.clamp(points[:, None] + scale * u, lo, hi)
    u = (probes - points[:, None]) / scale  # the perturbations actually applied, after clipping
    phi = oracle.ask(probes.reshape(m * evals, *shape), ids.repeat_interleave(evals))
    signs = 2 * phi.reshape(m, evals).to(points.dtype) - 1
    mean = signs.mean(dim=1, keepdim=True)
    unanimous = mean.abs() == 1  # every sample agrees: the baseline would cancel the estimate
    weights = torch.where(unanimous, signs, signs - mean)
    grad = (weights.reshape(m, evals, *([1] * len(shape))) * u).mean(dim=1)
    unit: Tensor = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(m, *([1] * len(shape)))
    return unit


def step_size_search(oracle: Oracle, points: Tensor, update: Tensor, xi: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
    """x_t + xi v_t with xi halved until adversarial (geometric progression, Sec. 4.1), and whether it moved.

    An example whose budget or halvings run out stays where it was.
    """
    lo, hi = oracle.model.bounds
    out, xi = points.clone(), xi.clone()
    pending = torch.ones(ids.numel(), dtype=torch.bool, device=points.device)
    moved = torch.zeros_like(pending)
    for _ in range(MAX_HALVINGS):
        pending &= oracle.left(ids) >= 1
        sel = pending.nonzero().squeeze(1)
        if sel.numel() == 0:
            break
        step = xi[sel].reshape((-1,) + (1,) * (points.dim() - 1))
        candidates = torch.clamp(points[sel] + step * update[sel], lo, hi)
        hit = oracle.ask(candidates, ids[sel])
        out[sel[hit]] = candidates[hit]
        moved[sel[hit]] = True
        pending[sel[hit]] = False
        xi[sel[~hit]] /= 2
    return out, moved


def _keep_closest(best: Tensor, x: Tensor, ids: Tensor, current: Tensor, norm: Norm) -> None:
    """Replace best[ids] by the current boundary points that are closer to x."""
    closer = norm.distance(current, x[ids]) < norm.distance(best[ids], x[ids])
    best[ids[closer]] = current[closer]
