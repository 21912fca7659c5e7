"""SimBA: Simple Black-box Attack, a greedy walk along random orthonormal directions.

Guo, Gardner, You, Wilson & Weinberger, "Simple Black-box Adversarial Attacks", ICML 2019,
https://arxiv.org/abs/1905.07121 (Algorithm 1).

Threat: L2 ball of radius eps around x, intersected with the model's input bounds.
Knowledge: scores (logits, turned into probabilities with a softmax, or probabilities).

Each iteration picks the next direction q of a random order over an orthonormal basis (without
replacement) and tries ``x_adv + step * q``, then ``x_adv - step * q``; the first that lowers the
true-class probability (targeted: raises the target's) is kept. Since the directions are
orthonormal, ``k`` kept steps make an L2 perturbation of ``step * sqrt(k)`` (less where the bounds
clip it). Departures from Algorithm 1, none of which changes what is kept:

* a candidate outside the eps ball is not sent (the walk skips that direction);
* a candidate the bounds clip back onto the current point is not sent (no information in it);
* a candidate that fools the model is kept even when the probability did not drop.

Arguments:
    step: the paper's epsilon, the length of one step along a basis direction (0.2).
    basis: ``"pixel"`` (the standard basis; any input shape) or ``"dct"`` (SimBA-DCT: the
        low-frequency 2-D DCT basis, per channel; image inputs ``(c, h, w)``).
    low_frequencies: for ``"dct"``, the share of the lowest frequencies along each side (1/8, as
        in the paper on ImageNet).
    max_queries: forward rows allowed per example, everything included (5000): one clean check,
        one or two per direction tried, and the final check that the Attack template makes.

Shapes: ``x`` ``(n, *input_shape)``, ``y`` ``(n,)``; optional ``targets`` ``(n,)``.

Example::

    result = SimBA(step=0.5, max_queries=2000)(restrict(model, "scores"), x, y, norm="l2", eps=4.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from bastion.attacks.interface import Attack, Ledger, require_at_least, require_eps
from bastion.errors import ConfigError
from bastion.models.interface import Classifier, Knowledge
from bastion.norms import Norm

__all__ = ["SimBA", "dct_basis", "log_odds"]

BASES = ("pixel", "dct")


def log_odds(scores: Tensor, label: Tensor) -> Tensor:
    """log(p / (1 - p)) of ``label``'s probability p: the softmax of logits, or the scores if they are probabilities.

    It orders points exactly as p does, which SimBA compares, but a confident model's
    p = 1 - 1e-9 is exactly 1.0 in float32 (and its log exactly 0), where no step could lower it.
    """
    mask = F.one_hot(label, scores.shape[1]).bool()
    looks_like_probabilities = bool((scores >= 0).all()) and bool(((scores.sum(dim=1) - 1).abs() < 1e-4).all())
    logs = scores.clamp_min(torch.finfo(scores.dtype).tiny).log() if looks_like_probabilities else scores
    own = logs.gather(1, label[:, None]).squeeze(1)
    return own - logs.masked_fill(mask, -math.inf).logsumexp(dim=1)


def dct_basis(size: int, like: Tensor) -> Tensor:
    """The orthonormal DCT-II basis of length ``size``: row ``u`` is cos(pi (2 t + 1) u / (2 size)), scaled."""
    t = torch.arange(size, device=like.device, dtype=like.dtype)
    u = t[:, None]
    rows = torch.cos(math.pi * (2 * t[None, :] + 1) * u / (2 * size)) * math.sqrt(2.0 / size)
    rows[0] /= math.sqrt(2.0)
    return rows


@dataclass(frozen=True, kw_only=True)
class SimBA(Attack):
    """Guo et al.'s SimBA (pixel or DCT basis), score-based and greedy."""

    name: ClassVar[str] = "simba"
    norms: ClassVar[tuple[str, ...]] = ("l2",)
    knowledge: ClassVar[Knowledge] = Knowledge.SCORES

    step: float = 0.2
    basis: Literal["pixel", "dct"] = "pixel"
    low_frequencies: float = 0.125
    max_queries: int = 5000

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
        directions = _Directions(self.basis, self.low_frequencies, x)
        order = torch.argsort(torch.rand((x.shape[0], directions.count), generator=generator, device=x.device), dim=1)
        walk = _Walk(model, x, y, targets, eps, ledger, budget=self.max_queries - 1)  # one left for the final check
        for k in range(directions.count):
            active = walk.active()
            if active.numel() == 0:
                break
            q = directions.vectors(order[active, k])
            undecided = walk.try_step(active, self.step * q)
            walk.try_step(active[undecided], -self.step * q[undecided])
        return walk.x_adv

    def _validate(self, model: Classifier) -> None:
        require_at_least("max_queries", self.max_queries, 2)
        if not self.step > 0:
            raise ConfigError(f"expected step > 0, got {self.step}")
        if self.basis not in BASES:
            raise ConfigError(f"unknown basis {self.basis!r}: expected one of {', '.join(BASES)}")
        if self.basis == "dct" and len(model.input_shape) != 3:
            raise ConfigError(f"the dct basis needs image inputs (channels, height, width), got {model.input_shape}")
        if self.basis == "dct" and not 0 < self.low_frequencies <= 1:
            raise ConfigError(f"expected 0 < low_frequencies <= 1, got {self.low_frequencies}")


class _Directions:
    """The basis: index -> unit direction of the input's shape (one-hot pixels, or 2-D DCT images)."""

    def __init__(self, basis: str, low_frequencies: float, x: Tensor) -> None:
        self.basis, self.shape, self.dtype = basis, tuple(x.shape[1:]), x.dtype
        if basis == "pixel":
            self.count = math.prod(self.shape)
            return
        c, h, w = self.shape
        self.fh, self.fw = max(1, round(h * low_frequencies)), max(1, round(w * low_frequencies))
        self.rows, self.cols = dct_basis(h, x)[: self.fh], dct_basis(w, x)[: self.fw]
        self.count = c * self.fh * self.fw

    def vectors(self, index: Tensor) -> Tensor:
        """The directions at ``index`` (shape ``(m,)``), as a batch of shape ``(m, *input_shape)``."""
        m = index.shape[0]
        if self.basis == "pixel":
            flat = torch.zeros((m, self.count), device=index.device, dtype=self.dtype)
            flat[torch.arange(m, device=index.device), index] = 1.0
            return flat.reshape(m, *self.shape)
        channel, rest = index // (self.fh * self.fw), index % (self.fh * self.fw)
        images = self.rows[rest // self.fw][:, :, None] * self.cols[rest % self.fw][:, None, :]
        out = torch.zeros((m, *self.shape), device=index.device, dtype=images.dtype)
        out[torch.arange(m, device=index.device), channel] = images
        return out


class _Walk:
    """The greedy walk's state: the current point per example, its probability, and whether it fools the model."""

    def __init__(
        self, model: Classifier, x: Tensor, y: Tensor, targets: Tensor | None, eps: float, ledger: Ledger, budget: int
    ) -> None:
        self.model, self.x, self.y, self.targets, self.eps = model, x, y, targets, eps
        self.ledger, self.budget = ledger, budget
        self.x_adv = x.clone()
        self.prob, self.fooled = self._query(torch.arange(x.shape[0], device=x.device), x)

    def active(self) -> Tensor:
        """Examples not yet fooled with at least one query left."""
        return (~self.fooled & (self.ledger.forward < self.budget)).nonzero().squeeze(1)

    def try_step(self, idx: Tensor, move: Tensor) -> Tensor:
        """Try ``x_adv + move`` on the examples ``idx``; keep it where it helps. Returns the rows not moved."""
        lo, hi = self.model.bounds
        current = self.x_adv[idx]
        candidate = torch.clamp(current + move, lo, hi)
        send = self._worth_sending(idx, current, candidate)
        kept = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
        if bool(send.any()):
            ids = idx[send]
            prob, fooled = self._query(ids, candidate[send])
            better = prob < self.prob[ids] if self.targets is None else prob > self.prob[ids]
            take = fooled | better
            self.x_adv[ids[take]] = candidate[send][take]
            self.prob[ids[take]], self.fooled[ids[take]] = prob[take], fooled[take]
            kept[send] = take
        return ~kept

    def _worth_sending(self, idx: Tensor, current: Tensor, candidate: Tensor) -> Tensor:
        """Inside the ball, a real change, and a query left in the budget."""
        inside = (candidate - self.x[idx]).flatten(1).norm(dim=1) <= self.eps
        changed = (candidate != current).flatten(1).any(dim=1)
        worth: Tensor = inside & changed & (self.ledger.forward[idx] < self.budget) & ~self.fooled[idx]
        return worth

    def _query(self, idx: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
        """The probability SimBA watches (true class, or target; as log-odds) and whether each point fools the model."""
        with torch.no_grad():
            out = self.model.logits(points)
        self.ledger.charge(idx)
        pred = out.argmax(dim=1)
        label = self.y[idx] if self.targets is None else self.targets[idx]
        prob = log_odds(out, label)
        fooled = pred != label if self.targets is None else pred == label
        return prob, fooled
