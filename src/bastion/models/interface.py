"""The one model protocol every attack, check and report sees, and the query accounting behind it.

A classifier takes a batch of inputs (a tensor on its device) and returns one row of logits (or
scores) per input. What an attacker may know of it is its :class:`Knowledge`: white-box
(gradients), scores (outputs only) or labels (the top class only).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from bastion.errors import ConfigError

__all__ = ["Classifier", "Knowledge", "QueryCounter", "predict", "value_and_grad"]


class Knowledge(str, enum.Enum):
    """What an attacker can learn from the model."""

    WHITE_BOX = "white-box"
    SCORES = "scores"
    LABELS = "labels"

    def covers(self, needed: Knowledge) -> bool:
        """Whether a model exposing this much serves an attack that needs ``needed``.

        White-box covers scores (the logits are scores), and scores cover labels (the argmax).
        """
        order = (Knowledge.LABELS, Knowledge.SCORES, Knowledge.WHITE_BOX)
        return order.index(self) >= order.index(needed)


@dataclass
class QueryCounter:
    """Rows sent through the model: each forward row and each backward row counts once."""

    forward: int = 0
    backward: int = 0

    def snapshot(self) -> tuple[int, int]:
        return self.forward, self.backward


@runtime_checkable
class Classifier(Protocol):
    """A batch-in, logits-out classifier with declared input shape, classes and bounds."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, without the batch axis."""
        ...

    @property
    def num_classes(self) -> int: ...

    @property
    def bounds(self) -> tuple[float, float]:
        """The valid range of every input feature, e.g. ``(0.0, 1.0)`` for images."""
        ...

    @property
    def knowledge(self) -> Knowledge: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def queries(self) -> QueryCounter: ...

    def logits(self, x: Tensor) -> Tensor:
        """Logits of shape ``(n, num_classes)``; differentiable when the model is white-box.

        A scores model returns its scores (logits or probabilities); a labels model returns
        one-hot rows, so that ``argmax`` gives the label and nothing more.
        """
        ...

    def inference(self) -> contextlib.AbstractContextManager[None]:
        """A context in which the model runs as deployed (eval mode), restored on exit."""
        ...


def predict(model: Classifier, x: Tensor) -> Tensor:
    """Predicted labels, without building a graph."""
    with torch.no_grad():
        return model.logits(x).argmax(dim=1)


def value_and_grad(model: Classifier, x: Tensor, loss: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Logits, per-example loss and the gradient of the summed loss with respect to ``x``.

    Counts one forward and one backward row per example.
    """
    if model.knowledge is not Knowledge.WHITE_BOX:
        raise ConfigError(
            f"this attack needs gradients, but the model exposes only {model.knowledge.value}: "
            "use a score- or decision-based attack"
        )
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model.logits(x)
        per_example = loss(logits)
        (grad,) = torch.autograd.grad(per_example.sum(), x)
    model.queries.backward += x.shape[0]
    return logits.detach(), per_example.detach(), grad.detach()


@contextlib.contextmanager
def no_mode_change() -> Iterator[None]:
    """A context that changes nothing, for models without train/eval modes."""
    yield
