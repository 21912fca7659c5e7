"""The Boundary Attack: a random walk along the decision boundary that keeps only steps closing in on x.

Brendel, Rauber & Bethge, "Decision-Based Adversarial Attacks: Reliable Attacks Against Black-Box
Machine Learning Models", ICLR 2018, https://arxiv.org/abs/1712.04248 (Sec. 3, Algorithm 1).

Threat: minimal L2 perturbation inside the model's input bounds, seen through the top label only;
``eps``, when given, only judges success. Targeted with ``targets``.

Start from an adversarial point (x itself if already adversarial; else uniform noise, untargeted;
else an image of the batch with another label, or with the target label when targeted) and bisect
along the segment to x, to within ``1e-3`` of its length. Then each step, from the current point a
at distance r = ||a - x||:

1. draw a Gaussian direction, remove its component along x - a, scale it to ``spherical_step * r``
   and project back onto the sphere of radius r around x (the orthogonal step);
2. move toward x by ``source_step * r`` (the source step); the candidate lies at (1 - source_step) r;
3. keep the candidate if it is adversarial (and closer; clipping to the bounds may cost distance).

Every ``update_every`` steps the orthogonal point alone is asked too (and the full candidate only if
it is adversarial, as in the reference implementation). Over each ``STATS_WINDOW`` such checks the
orthogonal step is grown by ``step_adaptation`` when more than half of the orthogonal points were
adversarial and shrunk below 20%; over each ``STATS_WINDOW`` full candidates asked after an
adversarial orthogonal point, the source step is grown above 25% success and shrunk below 10%.

All examples advance together, each with its own step sizes; an example leaves the batch when its
budget is spent, when its source step falls below ``convergence``, or after ``steps`` steps. An
example without any adversarial start is returned unchanged.

Arguments:
    max_queries: model rows per example, every one counted, the template's final check included (5000).
    steps: the most steps (25000; the budget usually ends the attack first).
    spherical_step: initial orthogonal step, relative to the distance (1e-2).
    source_step: initial step toward x, relative to the distance (1e-2).
    step_adaptation: factor by which a step size grows or shrinks (1.5).
    update_every: steps between two checks of the orthogonal point alone (10).
    convergence: source step below which an example is done (1e-7).
    init_tries: starting candidates tried per source (noise, then images of the batch) (20).

Shapes: ``x`` ``(n, *input_shape)``, ``y`` ``(n,)``, optional ``targets`` ``(n,)``.

Example::

    result = BoundaryAttack(max_queries=5000)(restrict(model, "labels"), x, y, norm="l2", seed=0)
    result.distance.median()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from bastion.attacks.blackbox.decision import Oracle, boundary_search, find_starts
from bastion.attacks.interface import Attack, Ledger, require_at_least
from bastion.models.interface import Classifier, Knowledge
from bastion.norms import Norm

__all__ = ["BoundaryAttack"]

# Precision of the first bisection, in alpha along the segment from x to the start.
START_TOLERANCE = 1e-3
# Checks per step-size decision (the reference keeps the last 100 and 30 outcomes, but asks up to 25
# candidates a step; one candidate a step needs a shorter window to adapt within a few thousand queries).
STATS_WINDOW = 10


@dataclass
class _Walk:
    """The state of the examples still walking: ids, originals, points and their distances, step sizes and
    success counts since the last decision."""

    ids: Tensor
    x: Tensor  # the originals of the walking examples, gathered once rather than every step
    points: Tensor
    distance: Tensor  # ||points - x||, kept up to date rather than recomputed every step
    spherical: Tensor
    source: Tensor
    orthogonal_asked: Tensor
    orthogonal_hits: Tensor
    full_asked: Tensor
    full_hits: Tensor

    def keep(self, mask: Tensor) -> None:
        for name, value in vars(self).items():
            setattr(self, name, value[mask])


@dataclass(frozen=True, kw_only=True)
class BoundaryAttack(Attack):
    """Brendel et al.'s Boundary Attack for L2, batched, on labels only."""

    name: ClassVar[str] = "boundary"
    norms: ClassVar[tuple[str, ...]] = ("l2",)
    knowledge: ClassVar[Knowledge] = Knowledge.LABELS
    minimal: ClassVar[bool] = True

    max_queries: int = 5000
    steps: int = 25_000
    spherical_step: float = 1e-2
    source_step: float = 1e-2
    step_adaptation: float = 1.5
    update_every: int = 10
    convergence: float = 1e-7
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
        start, found = find_starts(oracle, x, generator, self.init_tries)
        ids = (found & (norm.distance(start, x) > 0)).nonzero().squeeze(1)
        out = start.clone()
        out[ids] = boundary_search(oracle, x[ids], start[ids], ids, norm, START_TOLERANCE)
        walk = self._begin(ids, x[ids], out[ids])
        for step in range(1, self.steps + 1):
            walking = (oracle.left(walk.ids) >= 1) & (walk.source >= self.convergence)
            if not bool(walking.all()):
                out[walk.ids] = walk.points
                walk.keep(walking)
            if walk.ids.numel() == 0:
                break
            check = step % self.update_every == 0
            self._step(oracle, walk, check, generator)
            if check:  # the success counts change only on check steps
                self._adapt(walk)
        out[walk.ids] = walk.points
        return out

    def _validate(self) -> None:
        require_at_least("max_queries", self.max_queries, 1)
        require_at_least("steps", self.steps, 1)
        require_at_least("spherical_step", self.spherical_step, 1e-12)
        require_at_least("source_step", self.source_step, 1e-12)
        require_at_least("step_adaptation", self.step_adaptation, 1.0)
        require_at_least("update_every", self.update_every, 1)
        require_at_least("convergence", self.convergence, 0.0)
        require_at_least("init_tries", self.init_tries, 0)

    def _begin(self, ids: Tensor, x: Tensor, points: Tensor) -> _Walk:
        m, device = ids.numel(), points.device
        zeros = torch.zeros(m, dtype=torch.int64, device=device)
        return _Walk(
            ids=ids,
            x=x,
            points=points,
            distance=_l2(points - x),
            spherical=torch.full((m,), self.spherical_step, device=device),
            source=torch.full((m,), self.source_step, device=device),
            orthogonal_asked=zeros,
            orthogonal_hits=zeros.clone(),
            full_asked=zeros.clone(),
            full_hits=zeros.clone(),
        )

    def _step(self, oracle: Oracle, walk: _Walk, check: bool, generator: torch.Generator) -> None:
        """Propose one candidate per example; on a check step ask the orthogonal point first."""
        orthogonal, candidate = proposals(
            walk.x, walk.points, walk.spherical, walk.source, generator, oracle.model.bounds
        )
        if check:
            on_side = oracle.ask(orthogonal, walk.ids)
            walk.orthogonal_asked += 1
            walk.orthogonal_hits += on_side
            ask = on_side & (oracle.left(walk.ids) >= 1)
            rows = ask.nonzero().squeeze(1)
            hit = torch.zeros_like(ask)
            hit[rows] = oracle.ask(candidate[rows], walk.ids[rows])
            walk.full_asked += ask
            walk.full_hits += hit
        else:
            hit = oracle.ask(candidate, walk.ids)
        distance = _l2(candidate - walk.x)
        accept = hit & (distance < walk.distance)  # clipping to the bounds may cost distance
        walk.points = torch.where(accept.reshape((-1,) + (1,) * (candidate.dim() - 1)), candidate, walk.points)
        walk.distance = torch.where(accept, distance, walk.distance)

    def _adapt(self, walk: _Walk) -> None:
        """Grow or shrink each step size from its success rate over the last window (Sec. 3.4)."""
        # The orthogonal step aims at about half of its points staying adversarial.
        walk.spherical, walk.orthogonal_asked, walk.orthogonal_hits = _adapted(
            walk.spherical, walk.orthogonal_asked, walk.orthogonal_hits, 0.5, 0.2, self.step_adaptation
        )
        # The source step aims at 10-25% of the candidates past an adversarial orthogonal point.
        walk.source, walk.full_asked, walk.full_hits = _adapted(
            walk.source, walk.full_asked, walk.full_hits, 0.25, 0.1, self.step_adaptation
        )


def _adapted(
    size: Tensor, asked: Tensor, hits: Tensor, above: float, below: float, factor: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Where a window is full: size grown by factor above the success rate ``above``, shrunk below ``below``,
    and the counts restarted."""
    full = asked >= STATS_WINDOW
    rate = hits / asked.clamp_min(1)
    scale = torch.where(full & (rate > above), factor, torch.where(full & (rate < below), 1 / factor, 1.0))
    return size * scale, torch.where(full, 0, asked), torch.where(full, 0, hits)


def proposals(
    x: Tensor,
    points: Tensor,
    spherical: Tensor,
    source: Tensor,
    generator: torch.Generator,
    bounds: tuple[float, float],
) -> tuple[Tensor, Tensor]:
    """The orthogonal point on the sphere of radius ||a - x|| around x, and the candidate a source step closer."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    to_x = x - points
    r = _l2(to_x)
    unit = to_x / r.clamp_min(1e-12).reshape(shape)
    eta = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    eta = eta - (eta * unit).flatten(1).sum(dim=1).reshape(shape) * unit
    eta = eta * (spherical * r / _l2(eta).clamp_min(1e-12)).reshape(shape)
    # a + eta lies at sqrt(1 + s^2) r from x (eta is orthogonal to a - x): scale it back onto the sphere.
    orthogonal = torch.clamp(x + (eta - to_x) / torch.sqrt(1 + spherical**2).reshape(shape), *bounds)
    back = x - orthogonal
    r_new = _l2(back)
    # Step to (1 - source) r from x, correcting for the distance the clipping changed.
    length = torch.clamp(source * r + r_new - r, min=0) / r_new.clamp_min(1e-12)
    candidate = torch.clamp(orthogonal + length.reshape(shape) * back, *bounds)
    return orthogonal, candidate


def _l2(t: Tensor) -> Tensor:
    out: Tensor = torch.linalg.vector_norm(t.flatten(1), dim=1)
    return out
