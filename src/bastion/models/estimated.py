"""A white-box view of a scores-only model whose gradients are estimated from queries (NES or SPSA).

Any gradient attack then runs unchanged on a black box::

    view = Estimated(restrict(model, "scores"), method="nes", samples=50, sigma=0.001)
    result = PGD(steps=20)(view, x, y, norm="linf", eps=0.3)
    true_cost = model.queries.forward  # = view.queries.forward + view.queries_per_gradient * view.queries.backward

``logits(x)`` queries the wrapped model without gradients and returns a tensor whose backward pass
estimates the vector-Jacobian product ``v^T J(x)`` of the outputs from finite differences of the
scalar ``F(x') = <v, f(x')>``:

* NES (Ilyas, Engstrom, Athalye & Lin, "Black-box Adversarial Attacks with Limited Queries and
  Information", ICML 2018, https://arxiv.org/abs/1804.08598, Alg. 1): antithetic Gaussian samples,
  ``g = 1 / (2 sigma m) * sum_i (F(x + sigma u_i) - F(x - sigma u_i)) u_i``, ``u_i ~ N(0, I)``.
* SPSA (Uesato, O'Donoghue, van den Oord & Kohli, "Adversarial Risk and the Dangers of Evaluating
  Against Weak Attacks", ICML 2018, https://arxiv.org/abs/1802.05666, Alg. 1): the same
  difference along Rademacher directions ``v_i in {-1, +1}^d`` (for which ``1 / v_i = v_i``).

Accounting: an attack charges its ledger, and this view's own counter, one forward row per
``logits`` row and one backward row per gradient row, as for any white-box model. The true cost
lands on the wrapped model's counter: each backward row costs it ``queries_per_gradient``
(``samples``) forward rows. So an attack on an ``Estimated`` view reports its own forward and
backward counts while the true query cost is on ``view.model.queries``.

Randomness: the view owns a generator seeded at construction (``seed``), on the model's device;
each backward pass draws fresh samples from it, so a fresh view with the same seed repeats a run.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import torch
from torch import Tensor

from bastion.errors import ConfigError
from bastion.models.interface import Classifier, Knowledge, QueryCounter
from bastion.models.view import ModelView

__all__ = ["Estimated"]

METHODS = ("nes", "spsa")
# Rows per query batch while estimating (memory grows with it; a remote model may cap it lower).
ROWS_PER_CALL = 4096


class Estimated(ModelView):
    """``model`` (scores access) as a white-box classifier with NES or SPSA gradient estimates.

    Arguments:
        model: any classifier that exposes at least scores.
        method: ``"nes"`` (antithetic Gaussian) or ``"spsa"`` (antithetic Rademacher).
        samples: queries per estimated gradient row, an even number (50: 25 antithetic pairs).
        sigma: the finite-difference step (0.001, as in Ilyas et al.).
        seed: seeds the view's own generator.
    """

    knowledge = Knowledge.WHITE_BOX

    def __init__(
        self,
        model: Classifier,
        method: Literal["nes", "spsa"] = "nes",
        *,
        samples: int = 50,
        sigma: float = 0.001,
        seed: int = 0,
    ) -> None:
        if method not in METHODS:
            raise ConfigError(f"unknown gradient estimator {method!r}: expected one of {', '.join(METHODS)}")
        if samples < 2 or samples % 2:
            raise ConfigError(f"expected an even number of samples >= 2 (antithetic pairs), got {samples}")
        if not sigma > 0:
            raise ConfigError(f"expected sigma > 0, got {sigma}")
        if not model.knowledge.covers(Knowledge.SCORES):
            raise ConfigError(f"gradient estimation needs scores; the model exposes only {model.knowledge.value}")
        super().__init__(model)
        self.method, self.samples, self.sigma = method, samples, sigma
        self.name = f"{getattr(model, 'name', type(model).__name__)} ({method} gradients)"
        self.queries = QueryCounter()
        self.generator = torch.Generator(device=model.device).manual_seed(seed)

    @property
    def queries_per_gradient(self) -> int:
        """Forward rows the wrapped model serves for one estimated gradient row."""
        return self.samples

    def logits(self, x: Tensor) -> Tensor:
        self.queries.forward += x.shape[0]
        out: Tensor = _EstimatedScores.apply(x, self)  # type: ignore[no-untyped-call]
        return out

    def inference(self) -> contextlib.AbstractContextManager[None]:
        return self.model.inference()

    def scores(self, x: Tensor) -> Tensor:
        """The wrapped model's outputs, without a graph."""
        with torch.no_grad():
            return self.model.logits(x.detach())

    def estimate_vjp(self, x: Tensor, v: Tensor) -> Tensor:
        """The estimated ``v^T J(x)``, one row per example: ``samples`` queries per row."""
        pairs = self.samples // 2
        per_call = max(1, ROWS_PER_CALL // (2 * x.shape[0]))  # antithetic pairs sent in one batch
        grad = torch.zeros_like(x)
        for start in range(0, pairs, per_call):
            grad += self._difference_sum(x, v, min(per_call, pairs - start))
        return grad / pairs

    def _difference_sum(self, x: Tensor, v: Tensor, pairs: int) -> Tensor:
        """Sum over ``pairs`` directions u of (F(x + sigma u) - F(x - sigma u)) / (2 sigma) * u."""
        n, feature_axes = x.shape[0], (1,) * (x.dim() - 1)
        u = self._directions((pairs, *x.shape), x)
        points = torch.cat([x + self.sigma * u, x - self.sigma * u]).reshape(2 * pairs * n, *x.shape[1:])
        f = (self.scores(points).reshape(2, pairs, n, -1) * v).sum(dim=-1)  # F at each point: (2, pairs, n)
        slope = (f[0] - f[1]) / (2 * self.sigma)
        return (slope.reshape(pairs, n, *feature_axes) * u).sum(dim=0)

    def _directions(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """Gaussian (NES) or Rademacher (SPSA) directions."""
        if self.method == "nes":
            return torch.randn(shape, generator=self.generator, device=like.device, dtype=like.dtype)
        bits = torch.randint(0, 2, shape, generator=self.generator, device=like.device)
        return (2 * bits - 1).to(like.dtype)

    def __repr__(self) -> str:
        return f"Estimated({self.model!r}, method={self.method!r}, samples={self.samples}, sigma={self.sigma})"


class _EstimatedScores(torch.autograd.Function):
    """Forward: the wrapped model's scores. Backward: the estimator's vector-Jacobian product."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, view: Estimated) -> Tensor:
        ctx.view = view
        ctx.save_for_backward(x)
        return view.scores(x)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        view: Estimated = ctx.view
        return view.estimate_vjp(x.detach(), grad_output.detach()), None
