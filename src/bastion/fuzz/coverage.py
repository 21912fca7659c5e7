"""Coverage signals for guided fuzzing: activation vectors, nearest-neighbour novelty and neuron coverage."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from bastion.models.interface import Classifier

__all__ = ["ActivationReader", "NearestNeighbourCoverage", "NeuronCoverage", "Outputs", "seed_threshold"]


@dataclass(frozen=True)
class Outputs:
    """One batch through the model: its logits and the activation vectors coverage is measured on."""

    logits: Tensor  # (n, num_classes), on the CPU
    activations: Tensor  # (n, d), on the CPU
    hidden: bool  # True when ``activations`` is a hidden layer (the input of the last nn.Linear), not the logits


def _last_linear(model: Classifier) -> nn.Linear | None:
    module = getattr(model, "module", None)
    if not isinstance(module, nn.Module):
        return None
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


class ActivationReader:
    """Runs a model and reads the activation vector TensorFuzz measures coverage on.

    For a white-box model with an ``nn.Module`` (a :class:`~bastion.models.TorchClassifier`) that
    is the input of its last ``nn.Linear``, read by a forward hook; for any other model, the logits.
    """

    def __init__(self, model: Classifier) -> None:
        self.model = model
        self.layer = _last_linear(model)

    def __call__(self, x: Tensor) -> Outputs:
        captured: list[Tensor] = []

        def hook(_module: nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
            captured.append(inputs[0].detach())

        handle = self.layer.register_forward_hook(hook) if self.layer is not None else None
        try:
            with self.model.inference(), torch.no_grad():
                logits = self.model.logits(x.to(self.model.device)).detach().cpu().float()
        finally:
            if handle is not None:
                handle.remove()
        if captured and captured[-1].shape[0] == x.shape[0]:
            return Outputs(logits, captured[-1].reshape(x.shape[0], -1).cpu().float(), True)
        return Outputs(logits, logits.clone(), False)


@dataclass
class NearestNeighbourCoverage:
    """TensorFuzz's coverage: an input is new when its activation is far from every one seen so far.

    The nearest neighbour is exact (``torch.cdist``) over a corpus bounded by ``max_size``
    activations, which TensorFuzz approximates with FLANN; at the sizes a fuzzing budget reaches
    (thousands of vectors of a few hundred values) the exact search costs under a millisecond.
    Once full, the corpus stops growing and nothing more counts as new.
    """

    threshold: float
    max_size: int
    vectors: Tensor = field(default_factory=lambda: torch.empty(0))

    @property
    def size(self) -> int:
        return int(self.vectors.shape[0]) if self.vectors.dim() == 2 else 0

    def distances(self, activations: Tensor) -> Tensor:
        """Per row, the distance to the nearest stored activation (``inf`` when none is stored)."""
        if self.size == 0:
            return torch.full((activations.shape[0],), float("inf"))
        return torch.cdist(activations, self.vectors).amin(dim=1)

    def is_new(self, activation: Tensor) -> bool:
        """Whether one activation vector is finite, farther than ``threshold`` from all, and fits."""
        if self.size >= self.max_size or not bool(torch.isfinite(activation).all()):
            return False
        return float(self.distances(activation.unsqueeze(0))[0]) > self.threshold

    def add(self, activations: Tensor) -> None:
        rows = activations.reshape(activations.shape[0], -1)
        self.vectors = rows.clone() if self.size == 0 else torch.cat([self.vectors, rows])


def seed_threshold(activations: Tensor, novelty: float) -> float:
    """``novelty`` times the median nearest-neighbour distance among the seeds' activations.

    A scale-free threshold: activations of different layers and models differ in magnitude. With
    one seed (no neighbour), the scale is the norm of its activation.
    """
    finite = activations[torch.isfinite(activations).all(dim=1)]
    if finite.shape[0] < 2:
        scale = float(finite.norm(dim=1).mean()) if finite.shape[0] else 1.0
    else:
        pairwise = torch.cdist(finite, finite)
        pairwise.fill_diagonal_(float("inf"))
        scale = float(pairwise.amin(dim=1).median())
    return novelty * (scale if scale > 0 else 1.0)


@dataclass
class NeuronCoverage:
    """Neuron coverage (Pei et al., DeepXplore, 2017): the share of units ever above ``threshold``.

    A diversity signal only, reported next to the corpus's growth; it does not guide the fuzzer
    (Odena et al. 2019 found it too coarse to be a useful guide).
    """

    threshold: float
    covered: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.bool))

    def update(self, activations: Tensor) -> None:
        rows = activations[torch.isfinite(activations).all(dim=1)]
        if rows.shape[0] == 0:
            return
        active = (rows > self.threshold).any(dim=0)
        self.covered = active if self.covered.numel() == 0 else self.covered | active

    @property
    def value(self) -> float:
        return float(self.covered.float().mean()) if self.covered.numel() else 0.0
