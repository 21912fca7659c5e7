"""Model stealing by queries, in the manner of Knockoff Nets and Copycat CNN.

Orekondy, Schiele & Fritz, "Knockoff Nets: Stealing Functionality of Black-Box Models", CVPR 2019,
https://arxiv.org/abs/1812.02766; Correia-Silva et al., "Copycat CNN: Stealing Knowledge by
Persuading Confession with Random Non-Labeled Data", IJCNN 2018, https://arxiv.org/abs/1806.05476.

The attacker holds unlabelled inputs (the "seeds": natural images of the task, or any images),
sends them, and perturbed copies of them when the budget allows more queries than seeds, to the
target, records what it answers (scores when it gives them, else labels) and trains a surrogate
of their own choosing on those answers. Success is *agreement*: the share of held-out inputs on
which the surrogate predicts the target's label.

Arguments:
    budget: queries to the target (20000).
    epochs: passes of surrogate training over the transfer set (10).
    batch_size: examples per query and per training step (128).
    lr: Adam learning rate (1e-3).
    noise: standard deviation of the Gaussian noise added to seed copies beyond the first pass (0.1,
        as a fraction of the input range), with random shifts of up to ``shift`` pixels (2).

Example::

    stolen = Extraction(budget=20000)(target, seeds, MnistCNN(), seed=0)
    agreement(stolen.surrogate, target, holdout.x)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bastion.errors import ConfigError, DataError
from bastion.models.interface import Classifier, Knowledge, predict
from bastion.models.torch import TorchClassifier

__all__ = ["Extraction", "ExtractionResult", "agreement"]


@dataclass(frozen=True)
class ExtractionResult:
    """The stolen surrogate and what it cost."""

    surrogate: TorchClassifier
    queries: int  # rows sent to the target
    soft_labels: bool  # trained on the target's scores (True) or on its labels only
    elapsed: float


@dataclass(frozen=True, kw_only=True)
class Extraction:
    """Query the target on seeds and noisy copies of them, then fit a surrogate to its answers."""

    budget: int = 20000
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    noise: float = 0.1
    shift: int = 2

    def __call__(self, target: Classifier, seeds: Tensor, surrogate: nn.Module, *, seed: int = 0) -> ExtractionResult:
        self._check(target, seeds)
        started = time.perf_counter()
        gen = torch.Generator().manual_seed(seed)
        inputs = self._transfer_inputs(seeds.detach().float().cpu(), target.bounds, gen)
        answers = self._query(target, inputs)
        soft = target.knowledge is not Knowledge.LABELS
        model = TorchClassifier(
            surrogate, input_shape=target.input_shape, num_classes=target.num_classes, bounds=target.bounds
        )
        self._fit(surrogate, inputs.to(model.device), answers.to(model.device), soft, gen)
        return ExtractionResult(model, int(inputs.shape[0]), soft, time.perf_counter() - started)

    def _check(self, target: Classifier, seeds: Tensor) -> None:
        if self.budget <= 0:
            raise ConfigError(f"expected a query budget > 0, got {self.budget}")
        if self.epochs <= 0 or self.batch_size <= 0:
            raise ConfigError(f"expected epochs and batch_size > 0, got {self.epochs} and {self.batch_size}")
        if seeds.shape[0] == 0:
            raise DataError("expected at least one seed input to query the target with, got none")
        if tuple(seeds.shape[1:]) != tuple(target.input_shape):
            raise DataError(f"seed inputs have shape {tuple(seeds.shape[1:])}, the target expects {target.input_shape}")

    def _transfer_inputs(self, seeds: Tensor, bounds: tuple[float, float], gen: torch.Generator) -> Tensor:
        """The seeds once (in a seeded order), then noisy shifted copies until the budget is used."""
        order = torch.randperm(seeds.shape[0], generator=gen)
        copies = [seeds[order][: self.budget]]
        total = copies[0].shape[0]
        while total < self.budget:
            batch = seeds[torch.randint(0, seeds.shape[0], (min(seeds.shape[0], self.budget - total),), generator=gen)]
            copies.append(self._perturb(batch, bounds, gen))
            total += batch.shape[0]
        return torch.cat(copies)

    def _perturb(self, x: Tensor, bounds: tuple[float, float], gen: torch.Generator) -> Tensor:
        span = bounds[1] - bounds[0]
        noisy = x + self.noise * span * torch.randn(x.shape, generator=gen)
        if x.dim() == 4 and self.shift > 0:
            dx, dy = (int(v) for v in torch.randint(-self.shift, self.shift + 1, (2,), generator=gen))
            noisy = torch.roll(noisy, shifts=(dx, dy), dims=(2, 3))
        return noisy.clamp(bounds[0], bounds[1])

    def _query(self, target: Classifier, inputs: Tensor) -> Tensor:
        """The target's answers as probability rows (one-hot for a labels-only target)."""
        rows = []
        with target.inference(), torch.no_grad():
            for start in range(0, inputs.shape[0], self.batch_size):
                out = target.logits(inputs[start : start + self.batch_size].to(target.device)).float().cpu()
                rows.append(_as_probabilities(out))
        return torch.cat(rows)

    def _fit(self, module: nn.Module, x: Tensor, p: Tensor, soft: bool, gen: torch.Generator) -> None:
        opt = torch.optim.Adam(module.parameters(), lr=self.lr)
        module.train()
        steps_per_epoch = math.ceil(x.shape[0] / self.batch_size)
        for _ in range(self.epochs):
            order = torch.randperm(x.shape[0], generator=gen).to(x.device)
            for i in range(steps_per_epoch):
                idx = order[i * self.batch_size : (i + 1) * self.batch_size]
                logits = module(x[idx])
                loss: Tensor = _soft_ce(logits, p[idx]) if soft else F.cross_entropy(logits, p[idx].argmax(dim=1))
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
        module.eval()


def _as_probabilities(out: Tensor) -> Tensor:
    """Rows that already sum to one (probabilities, one-hot labels) stay; logits go through softmax."""
    sums = out.sum(dim=1)
    if bool((out >= 0).all()) and bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-3)):
        return out
    return F.softmax(out, dim=1)


def _soft_ce(logits: Tensor, p: Tensor) -> Tensor:
    return -(p * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def agreement(surrogate: Classifier, target: Classifier, x: Tensor, *, batch_size: int = 500) -> float:
    """Share of inputs on which the surrogate predicts the target's label (queries the target once each)."""
    if x.shape[0] == 0:
        raise DataError("expected at least one held-out input to measure agreement on")
    same = 0
    with surrogate.inference(), target.inference():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            a = predict(surrogate, xb.to(surrogate.device)).cpu()
            b = predict(target, xb.to(target.device)).cpu()
            same += int((a == b).sum())
    return same / x.shape[0]
