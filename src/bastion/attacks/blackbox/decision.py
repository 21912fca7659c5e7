"""What the decision-based attacks share: a label-only oracle with a per-example budget, starting points, and
the binary search back to the decision boundary.

A decision-based attacker asks one question per row, phi(x') = "is x' adversarial?" (misclassified, or
classified as the target), and pays one query for it. The :class:`Oracle` asks it in chunks sized for the
model's device (:func:`rows_per_call`), charges every row to its example on the ledger, and tells how many
rows each example has left, so that an attack can stop an example before an operation it could not pay for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bastion.attacks.interface import Ledger
from bastion.models.interface import Classifier
from bastion.norms import Norm

__all__ = ["CPU_ROWS", "MAX_ROWS", "Oracle", "boundary_search", "find_starts", "rows_per_call"]

# Rows built at once: bounds the memory of a batched gradient estimate (examples x samples rows), and the
# rows per model call on an accelerator, which wants large batches.
MAX_ROWS = 1024
# Rows per model call on a CPU, where a batch whose activations stay in the cache runs fastest: the demo
# MNIST CNN costs about 165 us a row at 128 rows and 266 us at 1024 (one thread, 2-core Xeon VM), and
# HopSkipJump's CPU time for 50 images at 1000 queries fell from 12.6 s to 8.5 s with this size
# (docs/BENCHMARKS.md, "Black-box attacks").
CPU_ROWS = 128


@dataclass(frozen=True)
class Oracle:
    """phi for a batch of examples: rows are asked on behalf of example ids and charged to them."""

    model: Classifier
    y: Tensor  # (n,) true labels
    targets: Tensor | None  # (n,) target classes, or None for untargeted
    ledger: Ledger
    budget: int  # rows each example may spend (its max_queries less the template's final check)

    def left(self, ids: Tensor) -> Tensor:
        """Rows the examples at ``ids`` may still spend."""
        return self.budget - self.ledger.forward[ids]

    def ask(self, points: Tensor, ids: Tensor) -> Tensor:
        """phi(points[k]) for example ids[k]: one row charged per point (``ids`` may repeat)."""
        if ids.numel() == 0:
            return torch.zeros(0, dtype=torch.bool, device=points.device)
        with torch.no_grad():
            size = rows_per_call(points.device)
            chunks = [points[s : s + size] for s in range(0, points.shape[0], size)]
            labels = torch.cat([self.model.logits(chunk).argmax(dim=1) for chunk in chunks])
        self.ledger.charge(ids)
        if self.targets is None:
            return labels != self.y[ids]
        return labels == self.targets[ids]


def rows_per_call(device: torch.device) -> int:
    """Rows the oracle sends through the model at once: cache-sized on a CPU, MAX_ROWS elsewhere."""
    return CPU_ROWS if device.type == "cpu" else MAX_ROWS


def find_starts(oracle: Oracle, x: Tensor, generator: torch.Generator, tries: int) -> tuple[Tensor, Tensor]:
    """Adversarial starting points ``(n, ...)`` and whether each was found ``(n,)``.

    First x itself (an example already adversarial starts, and stays, at distance 0); then, untargeted,
    up to ``tries`` uniform noise images; then up to ``tries`` images of the batch with another label
    (untargeted) or the target label (targeted), in a random order. Each candidate costs one query.
    Where nothing is found the start is x, and the attack leaves that example alone.
    """
    ids = torch.arange(x.shape[0], device=x.device)
    found = oracle.ask(x, ids) if oracle.budget >= 1 else torch.zeros_like(ids, dtype=torch.bool)
    start = x.clone()
    if oracle.targets is None:
        _try_noise(oracle, start, found, generator, tries)
    _try_batch_images(oracle, x, start, found, generator, tries)
    return start, found


def _try_noise(oracle: Oracle, start: Tensor, found: Tensor, generator: torch.Generator, tries: int) -> None:
    """Uniform noise in the input bounds, redrawn for the examples still without a start."""
    lo, hi = oracle.model.bounds
    everyone = torch.arange(start.shape[0], device=start.device)
    for _ in range(tries):
        todo = everyone[~found & (oracle.left(everyone) >= 1)]
        if todo.numel() == 0:
            return
        noise = lo + (hi - lo) * torch.rand(
            (todo.numel(), *start.shape[1:]), generator=generator, device=start.device, dtype=start.dtype
        )
        hit = oracle.ask(noise, todo)
        start[todo[hit]] = noise[hit]
        found[todo[hit]] = True


def _try_batch_images(
    oracle: Oracle, x: Tensor, start: Tensor, found: Tensor, generator: torch.Generator, tries: int
) -> None:
    """Other images of the batch whose label suits the example, each example in its own random order."""
    n = x.shape[0]
    wanted = oracle.y if oracle.targets is None else oracle.targets
    suits = oracle.y[None, :] == wanted[:, None]  # suits[i, j]: x_j carries the label example i wants
    if oracle.targets is None:
        suits = ~suits
    suits &= ~torch.eye(n, dtype=torch.bool, device=x.device)
    scores = torch.rand((n, n), generator=generator, device=x.device).masked_fill(~suits, -1.0)
    order = scores.argsort(dim=1, descending=True)  # the suitable images first, shuffled
    everyone = torch.arange(n, device=x.device)
    for r in range(min(tries, n)):
        todo = everyone[~found & suits[everyone, order[:, r]] & (oracle.left(everyone) >= 1)]
        if todo.numel() == 0:
            return  # the suitable images come first: no later round has a candidate either
        candidates = x[order[todo, r]]
        hit = oracle.ask(candidates, todo)
        start[todo[hit]] = candidates[hit]
        found[todo[hit]] = True


def boundary_search(
    oracle: Oracle, x: Tensor, points: Tensor, ids: Tensor, norm: Norm, tolerance: float | Tensor
) -> Tensor:
    """The adversarial end of a bisection between x and adversarial ``points``, close to the boundary.

    L2 bisects alpha on the segment (1 - alpha) x + alpha p to ``tolerance`` in alpha; Linf bisects the
    radius alpha of the box around x into which p is clipped, to ``tolerance`` in that radius (Chen et
    al. 2020, Algorithm 1). An example whose budget runs out keeps the adversarial end reached so far.
    """
    m, device = ids.numel(), x.device
    high = torch.ones(m, device=device) if norm.name == "l2" else norm.distance(points, x)
    low = torch.zeros(m, device=device)
    top = high.clone()
    searching = (high - low) > tolerance
    while True:
        searching &= oracle.left(ids) >= 1
        sel = searching.nonzero().squeeze(1)
        if sel.numel() == 0:
            break
        mid = (low[sel] + high[sel]) / 2
        hit = oracle.ask(_between(x[sel], points[sel], mid, norm), ids[sel])
        high[sel] = torch.where(hit, mid, high[sel])
        low[sel] = torch.where(hit, low[sel], mid)
        searching = (high - low) > tolerance
    out = _between(x, points, high, norm)
    untouched = (high == top).reshape((-1,) + (1,) * (x.dim() - 1))
    return torch.where(untouched, points, out)  # the adversarial point itself, not a rounded copy


def _between(x: Tensor, points: Tensor, alpha: Tensor, norm: Norm) -> Tensor:
    """The point alpha of the way from x to p (L2), or p clipped into the box of radius alpha around x (Linf)."""
    a = alpha.reshape((-1,) + (1,) * (x.dim() - 1))
    if norm.name == "l2":
        return (1 - a) * x + a * points
    return torch.minimum(torch.maximum(points, x - a), x + a)
