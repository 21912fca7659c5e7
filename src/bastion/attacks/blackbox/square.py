"""Square Attack: random search over square-shaped updates, using only the model's scores.

Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box adversarial
attack via random search", ECCV 2020, https://arxiv.org/abs/1912.00049 (Sec. 3, Algorithms 1-3).

Threat: Linf or L2 ball of radius eps around x, intersected with the model's input bounds.
Knowledge: scores (logits or probabilities); no gradients.

Each iteration proposes one change inside a random square window of side ``s`` and keeps it if
the loss drops. ``s`` shrinks as the queries are spent: ``s = round(sqrt(p * h * w))`` with ``p``
halved at 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 queries of a 10000-query run, the
schedule rescaled to ``max_queries``.

* Linf: start from vertical stripes of +-eps (one sign per column and channel); an update sets
  every pixel of the window to +-eps, one sign per channel (Alg. 2).
* L2: start from a grid of pseudo-Gaussian bumps of random sign scaled to norm eps; an update moves
  the perturbation's mass from a second window into the first, where it adds a pair of
  opposite-sign bumps, so that the norm stays at eps (Alg. 3).

Loss: untargeted, the margin ``z_y - max_{j != y} z_j`` of the outputs (logits or probabilities);
targeted, the cross-entropy of the target on the outputs, as in the paper.

Arguments:
    max_queries: forward rows allowed per example, everything included (5000): one clean check,
        the initial point, one per iteration while the example is not yet fooled, and the final
        check that the Attack template makes. An example stops as soon as it is fooled.
    p_init: initial share of pixels in the window (0.05; the paper uses 0.8 for Linf on MNIST).

Shapes: ``x`` ``(n, c, h, w)`` with ``h, w >= 2``, ``y`` ``(n,)``; optional ``targets`` ``(n,)``.
One square window per iteration is shared by the batch (as in the reference code); signs and bumps
are drawn per example.

Example::

    result = Square(max_queries=1000, p_init=0.8)(restrict(model, "scores"), x, y, norm="linf", eps=0.3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from bastion.attacks.interface import Attack, Ledger, require_at_least, require_eps
from bastion.attacks.losses import cw_margin
from bastion.errors import ConfigError
from bastion.models.interface import Classifier, Knowledge
from bastion.norms import Norm

__all__ = ["Square", "p_schedule"]

# Queries (of a 10000-query run) after which p is halved (Sec. 4, "Square Attack" details).
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
# How often an Linf proposal that the bounds make a no-op is redrawn before it is sent anyway.
REDRAWS = 10
# Queries made outside the iterations: the clean check, the initial point, the template's final check.
OVERHEAD = 3

Window = tuple[slice, slice, slice, slice]


def p_schedule(p_init: float, i: int, max_queries: int) -> float:
    """The share of pixels in the window at iteration ``i`` of a ``max_queries`` run."""
    rescaled = int(i / max_queries * 10000)
    halvings = sum(rescaled > k for k in HALVINGS)
    return p_init / 2.0**halvings


@dataclass(frozen=True, kw_only=True)
class Square(Attack):
    """Andriushchenko et al.'s Square Attack (Linf and L2), score-based random search."""

    name: ClassVar[str] = "square"
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    knowledge: ClassVar[Knowledge] = Knowledge.SCORES

    max_queries: int = 5000
    p_init: float = 0.05

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
        eps = require_eps(eps)
        self._validate(model)
        search = _Search(model, x, y, targets, ledger)
        search.start(self._initial_point(x, eps, norm.name, model.bounds, generator))
        for i in range(self.max_queries - OVERHEAD):
            active = search.active()
            if active.numel() == 0:
                break
            p = p_schedule(self.p_init, i, self.max_queries)
            x_a, best_a = x[active], search.best[active]
            if norm.name == "linf":
                proposal = _linf_proposal(x_a, best_a, eps, p, model.bounds, generator)
            else:
                proposal = _l2_proposal(x_a, best_a, eps, p, model.bounds, generator)
            search.offer(active, proposal)
        return search.best

    def _validate(self, model: Classifier) -> None:
        require_at_least("max_queries", self.max_queries, OVERHEAD)
        if not 0 < self.p_init <= 1:
            raise ConfigError(f"expected 0 < p_init <= 1, got {self.p_init}")
        shape = model.input_shape
        if len(shape) != 3 or min(shape[1:]) < 2:
            raise ConfigError(f"square needs image inputs (channels, height, width) of side >= 2, got {shape}")

    def _initial_point(
        self, x: Tensor, eps: float, norm: str, bounds: tuple[float, float], generator: torch.Generator
    ) -> Tensor:
        delta = _linf_stripes(x, eps, generator) if norm == "linf" else _l2_bump_grid(x, eps, generator)
        return torch.clamp(x + delta, bounds[0], bounds[1])


class _Search:
    """The random search's state: the best point per example, its loss, and whether it fools the model."""

    def __init__(self, model: Classifier, x: Tensor, y: Tensor, targets: Tensor | None, ledger: Ledger) -> None:
        self.model, self.x, self.y, self.targets, self.ledger = model, x, y, targets, ledger
        self.best = x.clone()
        self.loss = torch.full((x.shape[0],), math.inf, device=x.device)
        everyone = torch.arange(x.shape[0], device=x.device)
        _, self.fooled = self._query(everyone, x)  # examples already misclassified are not attacked

    def start(self, initial: Tensor) -> None:
        """Move every example not yet fooled to its initial point (one query each)."""
        todo = self.active()
        if todo.numel():
            loss, fooled = self._query(todo, initial[todo])
            self.best[todo], self.loss[todo], self.fooled[todo] = initial[todo], loss, fooled

    def active(self) -> Tensor:
        return (~self.fooled).nonzero().squeeze(1)

    def offer(self, idx: Tensor, proposal: Tensor) -> None:
        """Query ``proposal`` for the examples ``idx``; keep it where the loss drops or the model is fooled."""
        loss, fooled = self._query(idx, proposal)
        take = fooled | (loss < self.loss[idx])
        shape = (-1,) + (1,) * (proposal.dim() - 1)
        self.best[idx] = torch.where(take.reshape(shape), proposal, self.best[idx])
        self.loss[idx] = torch.where(take, loss, self.loss[idx])
        self.fooled[idx] = fooled

    def _query(self, idx: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            out = self.model.logits(points)
        self.ledger.charge(idx)
        targets = None if self.targets is None else self.targets[idx]
        return _loss(out, self.y[idx], targets)


def _loss(out: Tensor, y: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor]:
    """The loss to minimise and whether each point fools the model (argmax, as the final check judges)."""
    pred = out.argmax(dim=1)
    if targets is None:
        return -cw_margin(out, y, kappa=math.inf), pred != y
    return F.cross_entropy(out, targets, reduction="none"), pred == targets


# --- Linf -----------------------------------------------------------------------------------------


def _linf_stripes(x: Tensor, eps: float, generator: torch.Generator) -> Tensor:
    """Vertical stripes: one random sign per example, channel and column, times eps."""
    n, c, _, w = x.shape
    return eps * _signs((n, c, 1, w), x, generator)


def _linf_proposal(
    x: Tensor, best: Tensor, eps: float, p: float, bounds: tuple[float, float], generator: torch.Generator
) -> Tensor:
    """Set a random s x s window of the perturbation to +-eps, one sign per example and channel."""
    s = _side(p, x.shape, smallest=1)
    window = _window(x.shape, s, generator)
    signs = _fresh_signs(x[window], best[window], eps, bounds, generator)
    delta = best - x
    delta[window] = signs.expand_as(delta[window])
    return torch.clamp(x + delta, bounds[0], bounds[1])


def _fresh_signs(
    x_win: Tensor, best_win: Tensor, eps: float, bounds: tuple[float, float], generator: torch.Generator
) -> Tensor:
    """Signs times eps for the window, redrawn where the bounds would leave the window unchanged."""
    shape = (x_win.shape[0], x_win.shape[1], 1, 1)
    signs = eps * _signs(shape, x_win, generator)
    for _ in range(REDRAWS):
        moved = torch.clamp(x_win + signs, bounds[0], bounds[1]) - best_win
        unchanged = moved.abs().flatten(1).amax(dim=1) < 1e-7
        if not bool(unchanged.any()):
            break
        signs = torch.where(unchanged[:, None, None, None], eps * _signs(shape, x_win, generator), signs)
    return signs


# --- L2 -------------------------------------------------------------------------------------------


def _l2_bump_grid(x: Tensor, eps: float, generator: torch.Generator) -> Tensor:
    """The L2 start: a grid of (h // 5)-sided bump pairs of random sign, scaled to norm eps."""
    n, c, h, w = x.shape
    s = max(h // 5, 1)
    delta = torch.zeros_like(x)
    for top in range((h - 5 * s) // 2, h - s + 1, s):
        for left in range((w - 5 * s) // 2, w - s + 1, s):
            bump = _bump_pair(s, x, generator)
            delta[:, :, top : top + s, left : left + s] += bump * _signs((n, c, 1, 1), x, generator)
    return eps * delta / _norms(delta)


def _l2_proposal(
    x: Tensor, best: Tensor, eps: float, p: float, bounds: tuple[float, float], generator: torch.Generator
) -> Tensor:
    """Alg. 3: move the mass of windows W1 and W2 (and the unused budget) into W1, plus a new bump pair."""
    n, c = x.shape[:2]
    s = _side(p, x.shape, smallest=3)
    w1, w2 = _window(x.shape, s, generator), _window(x.shape, s, generator)
    delta = best - x
    unused = (eps**2 - _norms(delta).reshape(n) ** 2).clamp_min(0)
    both = torch.zeros_like(delta)
    both[w1], both[w2] = 1.0, 1.0
    available = ((delta * both).pow(2).sum(dim=(2, 3)) + unused[:, None] / c).sqrt()  # per example and channel
    old = delta[w1] / (delta[w1].pow(2).sum(dim=(2, 3), keepdim=True).sqrt() + 1e-10)
    new = _bump_pair(s, x, generator) * _signs((n, c, 1, 1), x, generator) + old
    new = new / new.pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(1e-12) * available[:, :, None, None]
    delta[w2] = 0.0
    delta[w1] = new
    return torch.clamp(x + eps * delta / _norms(delta), bounds[0], bounds[1])


def _bump_pair(s: int, like: Tensor, generator: torch.Generator) -> Tensor:
    """An s x s tile: a bump on one half, minus a bump on the other, unit L2 norm, randomly transposed."""
    half = s // 2
    tile = torch.cat([_bump(half, s, like), -_bump(s - half, s, like)], dim=0)
    tile = tile / tile.pow(2).sum().sqrt()
    if bool(torch.rand((), generator=generator, device=like.device) > 0.5):
        tile = tile.T
    return tile


def _bump(rows: int, cols: int, like: Tensor) -> Tensor:
    """The paper's eta: at Chebyshev distance d from the centre, sum_{k=d}^{K-1} 1/(k+1)^2, unit norm."""
    r = (torch.arange(rows, device=like.device) - rows // 2).abs()
    q = (torch.arange(cols, device=like.device) - cols // 2).abs()
    d = torch.maximum(r[:, None], q[None, :])
    k = max(rows // 2, cols // 2) + 1
    weights = 1.0 / (torch.arange(k, device=like.device, dtype=like.dtype) + 1) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[j] = sum_{k >= j} weights[k]
    eta = tail[d]
    return eta / eta.pow(2).sum().sqrt().clamp_min(1e-12)


# --- shared ---------------------------------------------------------------------------------------


def _side(p: float, shape: torch.Size, *, smallest: int) -> int:
    """The window side round(sqrt(p * h * w)), at least ``smallest``, below the image side (odd for L2)."""
    h, w = shape[2], shape[3]
    s = max(round(math.sqrt(p * h * w)), smallest)
    if smallest > 1 and s % 2 == 0:
        s += 1
    return max(min(s, min(h, w) - 1), 1)


def _window(shape: torch.Size, s: int, generator: torch.Generator) -> Window:
    """A random s x s window inside an (n, c, h, w) batch, shared by every example."""
    h, w = shape[2], shape[3]
    top = int(torch.randint(0, h - s + 1, (1,), generator=generator, device=generator.device))
    left = int(torch.randint(0, w - s + 1, (1,), generator=generator, device=generator.device))
    return slice(None), slice(None), slice(top, top + s), slice(left, left + s)


def _signs(shape: tuple[int, ...], like: Tensor, generator: torch.Generator) -> Tensor:
    bits = torch.randint(0, 2, shape, generator=generator, device=like.device)
    return (2 * bits - 1).to(like.dtype)


def _norms(delta: Tensor) -> Tensor:
    """Per-example L2 norms shaped to broadcast over (c, h, w), never zero."""
    norms: Tensor = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    return norms.reshape(-1, 1, 1, 1)
