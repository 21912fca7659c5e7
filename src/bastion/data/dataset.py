"""The Dataset value type: inputs, labels and the bounds every input must respect."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from bastion.data.constraints import FeatureConstraints
from bastion.errors import DataError

__all__ = ["Dataset"]


@dataclass(frozen=True)
class Dataset:
    """Labelled inputs: ``x`` float32 of shape ``(n, *input_shape)``, ``y`` int64 of shape ``(n,)``."""

    x: Tensor
    y: Tensor
    bounds: tuple[float, float] = (0.0, 1.0)
    name: str = "data"
    class_names: tuple[str, ...] | None = None
    # Tabular data: what an attack may change (ranges, integer, immutable, one-hot features).
    constraints: FeatureConstraints | None = None
    # The customary attack radii for this data, per norm (bundled datasets set them); assess
    # uses them when no epsilons are given.
    epsilons: dict[str, tuple[float, ...]] | None = None

    @classmethod
    def from_arrays(
        cls,
        x: np.ndarray | Tensor,
        y: np.ndarray | Tensor,
        *,
        bounds: tuple[float, float] = (0.0, 1.0),
        name: str = "data",
        class_names: tuple[str, ...] | None = None,
    ) -> Dataset:
        """Build from numpy arrays or tensors, checking types, shapes, values and labels."""
        xt = _numeric(x, "inputs", name)
        yt = _numeric(y, "labels", name)
        if yt.is_floating_point() and not torch.equal(yt, yt.round()):
            odd = yt[yt != yt.round()][0].item()  # NaN != NaN: a NaN label is named too
            raise DataError(f"{name}: expected integer class labels, got non-integer values such as {odd:g}")
        data = cls(xt.float(), yt.long(), (float(bounds[0]), float(bounds[1])), name, class_names)
        data.validate()
        return data

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def validate(self, *, num_classes: int | None = None, input_shape: tuple[int, ...] | None = None) -> None:
        """Raise :class:`DataError` naming the first problem found; return quietly if there is none."""
        lo, hi = self.bounds
        if not lo < hi:
            raise DataError(f"{self.name}: expected bounds (low, high) with low < high, got {self.bounds}")
        if self.x.dim() == 0:
            raise DataError(f"{self.name}: expected inputs with a leading example axis, got a single number")
        if len(self) == 0:
            raise DataError(f"{self.name}: the dataset is empty; expected at least one example")
        if self.x[0].numel() == 0:
            raise DataError(f"{self.name}: inputs of shape {self.input_shape} hold no values; expected features")
        if self.y.dim() != 1 or self.y.shape[0] != self.x.shape[0]:
            raise DataError(
                f"{self.name}: expected one label per input ({self.x.shape[0]}), got labels of shape "
                f"{tuple(self.y.shape)}"
            )
        finite = torch.isfinite(self.x.reshape(len(self), -1)).all(dim=1)
        if not bool(finite.all()):
            first = int((~finite).nonzero()[0])
            raise DataError(f"{self.name}: {int((~finite).sum())} inputs contain NaN or Inf (first at index {first})")
        self._check_bounds()
        self._check_labels(num_classes)
        if input_shape is not None and tuple(input_shape) != self.input_shape:
            raise DataError(
                f"{self.name}: inputs have shape {self.input_shape}, but the model expects {tuple(input_shape)}"
            )

    def _check_bounds(self) -> None:
        lo, hi = self.bounds
        xmin, xmax = float(self.x.min()), float(self.x.max())
        if xmin < lo or xmax > hi:
            flat = self.x.reshape(len(self), -1)
            bad = ((flat < lo) | (flat > hi)).any(dim=1)
            first = int(bad.nonzero()[0])
            raise DataError(
                f"{self.name}: inputs must lie within bounds [{lo}, {hi}], found values in "
                f"[{xmin:.6g}, {xmax:.6g}] ({int(bad.sum())} inputs, first at index {first}); "
                "rescale the data or declare its bounds"
            )

    def _check_labels(self, num_classes: int | None) -> None:
        ymin, ymax = int(self.y.min()), int(self.y.max())
        if ymin < 0:
            raise DataError(f"{self.name}: labels must be >= 0, found {ymin}")
        if num_classes is not None and ymax >= num_classes:
            raise DataError(
                f"{self.name}: label {ymax} is out of range for a model with {num_classes} classes "
                f"(expected 0..{num_classes - 1})"
            )

    def take(self, n: int | None, *, seed: int = 0) -> Dataset:
        """The first ``n`` examples after a seeded shuffle (all of them, shuffled, for ``None``)."""
        if n is not None and n <= 0:
            raise DataError(f"expected a number of examples > 0, got {n}")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        if n is not None:
            order = order[:n]
        return replace(self, x=self.x[order], y=self.y[order])

    def to(self, device: torch.device | str) -> Dataset:
        return replace(self, x=self.x.to(device), y=self.y.to(device))


def _numeric(values: np.ndarray | Tensor, what: str, name: str) -> Tensor:
    """A tensor of ``values``, refusing text and objects with a DataError rather than a TypeError."""
    if isinstance(values, Tensor):
        return values
    array = np.asarray(values)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataError(f"{name}: expected numeric {what}, got dtype {array.dtype}")
    return torch.as_tensor(array.astype(np.float32, copy=False) if what == "inputs" else array)
