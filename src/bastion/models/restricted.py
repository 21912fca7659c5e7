"""A view of a classifier that exposes less: scores only, or labels only, as a black-box attacker sees it."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor

from bastion.errors import ConfigError
from bastion.models.interface import Classifier, Knowledge, QueryCounter
from bastion.models.view import ModelView

__all__ = ["Restricted", "restrict"]


class Restricted(ModelView):
    """Wraps ``model`` so that attacks see only its scores (no gradients) or only its labels.

    Label-only models return one-hot rows from :meth:`logits`, so ``argmax`` still gives the
    label and nothing else leaks. Queries are counted on the wrapped model's counter.
    """

    def __init__(self, model: Classifier, knowledge: Knowledge) -> None:
        if not model.knowledge.covers(knowledge):
            raise ConfigError(f"cannot give {knowledge.value} access to a model that exposes {model.knowledge.value}")
        super().__init__(model)
        self.knowledge = knowledge
        self.name = getattr(model, "name", type(model).__name__)

    @property
    def queries(self) -> QueryCounter:
        return self.model.queries

    def logits(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            out = self.model.logits(x.detach())
        if self.knowledge is Knowledge.LABELS:
            return F.one_hot(out.argmax(dim=1), self.num_classes).to(out.dtype)
        return out

    def inference(self) -> contextlib.AbstractContextManager[None]:
        return self.model.inference()


def restrict(model: Classifier, knowledge: Knowledge | str) -> Classifier:
    """``model`` as seen with ``knowledge`` (``white-box``, ``scores`` or ``labels``)."""
    level = Knowledge(knowledge)
    if level is model.knowledge:
        return model
    return Restricted(model, level)
