"""The training loop every trainer shares: a copy of the model, seeded batches, Adam, figures after each epoch.

The loop owns what is the same for every method: the input model's module is deep-copied (the
input model is never modified), the trainer adapts it (:meth:`Trainer.prepare`), batches are drawn
in a seeded order, each batch's loss comes from :meth:`Trainer.loss`, and after every epoch the
trainer measures the model on the held-out evaluation set. A trainer that watches for a collapse
(:meth:`Trainer.collapsed`) gets the last good epoch's weights restored and the run stopped.

Everything runs on the device of the model's parameters; randomness comes from ``config.seed``
alone (module randomness such as dropout too, under a forked global generator), so a seed gives
identical weights on the CPU.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bastion.data.dataset import Dataset
from bastion.errors import ModelError
from bastion.harden.interface import EpochStats, Figures, HardenConfig, Threat, Trainer
from bastion.models.torch import TorchClassifier
from bastion.norms import get_norm

__all__ = ["LoopOutcome", "Progress", "train_loop"]

Progress = Callable[[EpochStats], None]


@dataclass(frozen=True)
class LoopOutcome:
    """The trained model and what the loop saw on the way."""

    model: TorchClassifier
    initial: Figures  # the model before training (after the trainer's prepare), on the evaluation set
    history: tuple[EpochStats, ...]
    final: Figures  # the returned model's figures (the restored epoch's after a collapse)
    collapsed: bool
    restored_epoch: int | None  # the epoch whose weights were restored after a collapse (0: the input's)


def train_loop(
    trainer: Trainer,
    model: TorchClassifier,
    train: Dataset,
    holdout: Dataset,
    config: HardenConfig,
    progress: Progress | None = None,
) -> LoopOutcome:
    """Train a copy of ``model`` on ``train`` with ``trainer``, measuring on ``holdout`` after each epoch."""
    working = _working_copy(trainer, model)
    device = working.device
    threat = Threat(get_norm(config.norm), config.eps, working.bounds, torch.Generator(device).manual_seed(config.seed))
    x, y = train.x.to(device), train.y.to(device)
    x_eval, y_eval = holdout.x.to(device), holdout.y.to(device)
    optimiser = torch.optim.Adam(working.module.parameters(), lr=config.lr)
    order = torch.Generator().manual_seed(config.seed)
    history: list[EpochStats] = []
    initial = trainer.measure(working, x_eval, y_eval, config)
    good, final = (0, _snapshot(working.module)), initial
    with _seeded(config.seed, device):
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            loss = _one_epoch(trainer, working.module, optimiser, x, y, threat, order, config.batch_size)
            seconds = time.perf_counter() - started
            figures = trainer.measure(working, x_eval, y_eval, config)
            history.append(_stats(epoch, figures, loss, seconds))
            if progress is not None:
                progress(history[-1])
            if trainer.collapsed([_stats(0, initial, math.nan, 0.0), *history]):
                working.module.load_state_dict(good[1])
                working.module.eval()
                return LoopOutcome(working, initial, tuple(history), final, True, good[0])
            good, final = (epoch, _snapshot(working.module)), figures
    working.module.eval()
    return LoopOutcome(working, initial, tuple(history), final, False, None)


def _one_epoch(
    trainer: Trainer,
    net: nn.Module,
    optimiser: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    threat: Threat,
    order: torch.Generator,
    batch_size: int,
) -> float:
    """One pass over the data in a seeded order; returns the mean batch loss."""
    net.train()
    permutation = torch.randperm(x.shape[0], generator=order).to(x.device)
    total = torch.zeros((), device=x.device)
    batches = 0
    for start in range(0, x.shape[0], batch_size):
        idx = permutation[start : start + batch_size]
        optimiser.zero_grad(set_to_none=True)
        loss = trainer.loss(net, x[idx], y[idx], threat)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        total += loss.detach()  # summed on the device: no synchronisation per batch
        batches += 1
    return float(total) / max(batches, 1)


def _working_copy(trainer: Trainer, model: TorchClassifier) -> TorchClassifier:
    """A deep copy of the model's module, adapted by the trainer, wrapped as a classifier."""
    module = trainer.prepare(copy.deepcopy(model.module), model.num_classes)
    module.to(model.device)
    working = TorchClassifier(module, input_shape=model.input_shape, bounds=model.bounds, name=f"{model.name}-hardened")
    expected = model.num_classes + trainer.extra_outputs
    if working.num_classes != expected:
        raise ModelError(
            f"{model.name}: prepared for {trainer.name}, the model has {working.num_classes} outputs, "
            f"expected {expected}"
        )
    return working


def _snapshot(module: nn.Module) -> dict[str, Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def _stats(epoch: int, figures: Figures, loss: float, seconds: float) -> EpochStats:
    return EpochStats(
        epoch=epoch,
        clean_accuracy=figures.clean_accuracy,
        robust_accuracy=figures.robust_accuracy,
        loss=loss,
        seconds=seconds,
        fgsm_accuracy=figures.fgsm_accuracy,
    )


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """The global generators seeded (for randomness inside the module), the caller's restored after."""
    devices = []
    if device.type == "cuda":
        devices.append(device.index if device.index is not None else torch.cuda.current_device())
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
