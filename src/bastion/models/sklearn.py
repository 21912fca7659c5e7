"""scikit-learn adapter: a fitted estimator's scores as a scores-only :class:`Classifier`."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from bastion.errors import DataError, ModelError
from bastion.models.interface import Knowledge, QueryCounter, no_mode_change

__all__ = ["SklearnClassifier"]

ScoreFn = Callable[[np.ndarray], np.ndarray]


class SklearnClassifier:
    """Wraps a fitted estimator; ``logits`` returns its ``predict_proba``, else its ``decision_function``.

    Probabilities are returned as they are, not as log-probabilities: they are what the deployed
    model exposes, and score-based attacks work on any monotone scores (the trust checks flag
    probability outputs, as they should). A binary ``decision_function`` ``d`` becomes the two
    columns ``[-d, d]``. Column ``i`` is the estimator's ``classes_[i]``, so integer classes must be
    ``0 .. k-1``, the labels Bastion's data uses. Inputs are flattened to ``(n, features)`` and run
    as float64 on the CPU; the scores come back in the input's floating dtype (float32 otherwise)
    on the input's device.

    Example::

        model = SklearnClassifier(LogisticRegression().fit(x, y), input_shape=(64,), bounds=(0.0, 16.0))
    """

    knowledge = Knowledge.SCORES
    device = torch.device("cpu")

    def __init__(
        self,
        estimator: object,
        *,
        input_shape: tuple[int, ...],
        bounds: tuple[float, float] = (0.0, 1.0),
        name: str = "model",
    ) -> None:
        self.estimator = estimator
        self.input_shape = tuple(int(d) for d in input_shape)
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.name = name
        self.queries = QueryCounter()
        if self.bounds[0] >= self.bounds[1]:
            raise DataError(f"expected bounds (low, high) with low < high, got {self.bounds}")
        self._scores = _score_function(estimator)
        self.num_classes = _num_classes(estimator)
        _check_features(estimator, math.prod(self.input_shape))

    def logits(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise DataError(f"inputs have shape {tuple(x.shape[1:])}, the model expects {self.input_shape}")
        self.queries.forward += x.shape[0]
        rows = x.detach().to("cpu", torch.float64).reshape(x.shape[0], -1).numpy()
        scores = np.asarray(self._scores(rows), dtype=np.float64)
        if scores.ndim == 1:  # a binary decision_function: the signed distance to the positive class
            scores = np.stack([-scores, scores], axis=1)
        if scores.shape != (x.shape[0], self.num_classes):
            raise ModelError(f"expected scores of shape {(x.shape[0], self.num_classes)}, got {scores.shape}")
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return torch.from_numpy(scores).to(device=x.device, dtype=dtype)

    def inference(self) -> contextlib.AbstractContextManager[None]:
        """Nothing to switch: a fitted estimator has no training mode."""
        return no_mode_change()

    def __repr__(self) -> str:
        return (
            f"SklearnClassifier({self.name!r}, {type(self.estimator).__name__}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, bounds={self.bounds})"
        )


def _score_function(estimator: object) -> ScoreFn:
    for method in ("predict_proba", "decision_function"):
        # hasattr, not a look at the class: sklearn hides predict_proba when it is not available (SVC).
        if hasattr(estimator, method):
            return getattr(estimator, method)  # type: ignore[no-any-return]
    raise ModelError(
        f"{type(estimator).__name__} has neither predict_proba nor decision_function: "
        "expected a fitted classifier that exposes scores"
    )


def _num_classes(estimator: object) -> int:
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        raise ModelError(f"{type(estimator).__name__} has no classes_: expected a fitted classifier")
    classes = np.asarray(classes)
    if classes.ndim != 1 or len(classes) < 2:
        raise ModelError(f"expected a single-output classifier with at least 2 classes, got classes {classes!r}")
    if np.issubdtype(classes.dtype, np.integer) and not np.array_equal(classes, np.arange(len(classes))):
        raise ModelError(f"expected integer classes 0..{len(classes) - 1} (the data's labels), got {classes.tolist()}")
    return len(classes)


def _check_features(estimator: object, features: int) -> None:
    expected = getattr(estimator, "n_features_in_", None)
    if expected is not None and int(expected) != features:
        raise DataError(f"the estimator expects {int(expected)} features, but the input shape has {features}")
