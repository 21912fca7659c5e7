"""PyTorch adapter: an ``nn.Module`` as a white-box :class:`Classifier`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from bastion.errors import DataError, ModelError
from bastion.models.interface import Knowledge, QueryCounter

__all__ = ["TorchClassifier"]


class TorchClassifier:
    """Wraps a module that maps ``(n, *input_shape)`` inputs to ``(n, num_classes)`` logits.

    Normalisation belongs inside the module, so that ``bounds`` are the bounds of the raw input
    an attacker controls. The device is the device of the module's parameters.

    Example::

        model = TorchClassifier(net, input_shape=(1, 28, 28), bounds=(0.0, 1.0))
        logits = model.logits(x.to(model.device))
    """

    knowledge = Knowledge.WHITE_BOX

    def __init__(
        self,
        module: nn.Module,
        *,
        input_shape: tuple[int, ...],
        num_classes: int | None = None,
        bounds: tuple[float, float] = (0.0, 1.0),
        name: str = "model",
    ) -> None:
        self.module = module
        self.input_shape = tuple(int(d) for d in input_shape)
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.name = name
        self.queries = QueryCounter()
        if self.bounds[0] >= self.bounds[1]:
            raise DataError(f"expected bounds (low, high) with low < high, got {self.bounds}")
        self.num_classes = num_classes if num_classes is not None else self._probe_classes()

    @property
    def device(self) -> torch.device:
        for tensor in (*self.module.parameters(), *self.module.buffers()):
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for tensor in self.module.parameters():
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.float32

    def logits(self, x: Tensor) -> Tensor:
        self.queries.forward += x.shape[0]
        out = self.module(x)
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ModelError(f"expected the model to return logits of shape (n, classes), got {shape}")
        return out

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """Eval mode for the duration; the module's previous modes are restored on exit."""
        modes = [(m, m.training) for m in self.module.modules()]
        # The flags, not module.eval(): a module from torch.export refuses eval() (its mode was fixed at export).
        for m, _ in modes:
            m.training = False
        try:
            yield
        finally:
            for m, training in modes:
                m.training = training

    def _probe_classes(self) -> int:
        probe = torch.full((1, *self.input_shape), self.bounds[0], device=self.device, dtype=self.dtype)
        try:
            with torch.no_grad(), self.inference():
                out = self.module(probe)
        except Exception as exc:  # the user's module: any failure is a shape mismatch to report
            raise DataError(
                f"the model does not accept inputs of shape {self.input_shape}: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(out, Tensor) or out.dim() != 2:
            raise ModelError("expected the model to return logits of shape (n, classes)")
        return int(out.shape[1])

    def __repr__(self) -> str:
        return (
            f"TorchClassifier({self.name!r}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, bounds={self.bounds}, device={self.device})"
        )
