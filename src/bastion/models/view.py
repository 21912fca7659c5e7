"""The shared base of model views: a wrapper that passes the wrapped model's shape, classes, bounds and device on."""

from __future__ import annotations

import torch

from bastion.models.interface import Classifier

__all__ = ["ModelView"]


class ModelView:
    """Delegates the descriptive half of the Classifier protocol to ``self.model``; subclasses add the rest."""

    def __init__(self, model: Classifier) -> None:
        self.model = model

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.model.input_shape

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def bounds(self) -> tuple[float, float]:
        return self.model.bounds

    @property
    def device(self) -> torch.device:
        return self.model.device
