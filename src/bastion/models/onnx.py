"""ONNX adapter: a model run by onnxruntime as a scores-only :class:`Classifier`."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from bastion.errors import ConfigError, DataError, ModelError
from bastion.models.interface import Knowledge, QueryCounter, no_mode_change

if TYPE_CHECKING:
    import onnxruntime

__all__ = ["OnnxClassifier"]

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


class OnnxClassifier:
    """Runs an ONNX model (a file or an ``onnxruntime.InferenceSession``) whose first float output is the scores.

    The scores are the first output holding a float tensor of shape ``(n, classes)``: the logits of a
    model exported from PyTorch, the probabilities of one converted from scikit-learn (whose first
    output is the label); ``output`` names another. A model with a fixed batch size runs in chunks
    of that size. It runs on the CPU, or with CUDA when ``device`` asks for it and onnxruntime here
    has the CUDA provider.

    Example::

        model = OnnxClassifier("model.onnx", input_shape=(1, 28, 28), bounds=(0.0, 1.0))
    """

    knowledge = Knowledge.SCORES

    def __init__(
        self,
        model: onnxruntime.InferenceSession | str | Path,
        *,
        input_shape: tuple[int, ...],
        bounds: tuple[float, float] = (0.0, 1.0),
        name: str = "model",
        device: str | torch.device = "cpu",
        output: str | None = None,
    ) -> None:
        self.input_shape = tuple(int(d) for d in input_shape)
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.name = name
        self.queries = QueryCounter()
        if self.bounds[0] >= self.bounds[1]:
            raise DataError(f"expected bounds (low, high) with low < high, got {self.bounds}")
        self.session = model if not isinstance(model, (str, Path)) else _session(Path(model), torch.device(device))
        self.device = _session_device(self.session)
        first = self.session.get_inputs()[0]
        self._input = first.name
        self._input_dtype = _NUMPY_TYPES.get(first.type, np.float32)
        self._batch, self._feed_shape = _feed_shape(first.shape, self.input_shape)
        self._output = output or _scores_output(self.session)
        self.num_classes = self._probe_classes()

    def logits(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise DataError(f"inputs have shape {tuple(x.shape[1:])}, the model expects {self.input_shape}")
        self.queries.forward += x.shape[0]
        out = self._run(x.detach().to("cpu").numpy())
        if out.shape != (x.shape[0], self.num_classes):
            raise ModelError(f"expected scores of shape {(x.shape[0], self.num_classes)}, got {out.shape}")
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return torch.from_numpy(np.ascontiguousarray(out)).to(device=x.device, dtype=dtype)

    def inference(self) -> contextlib.AbstractContextManager[None]:
        """Nothing to switch: an ONNX graph runs as it was exported."""
        return no_mode_change()

    def _run(self, rows: np.ndarray) -> np.ndarray:
        """The scores output for ``rows``, in chunks of the model's fixed batch size (padded with the last row)."""
        rows = rows.astype(self._input_dtype, copy=False).reshape(len(rows), *self._feed_shape)
        if self._batch is None or len(rows) == 0:
            return self._call(rows)
        chunks = []
        for start in range(0, len(rows), self._batch):
            chunk = rows[start : start + self._batch]
            pad = np.repeat(chunk[-1:], self._batch - len(chunk), axis=0)
            chunks.append(self._call(np.concatenate([chunk, pad]))[: len(chunk)])
        return np.concatenate(chunks)

    def _call(self, rows: np.ndarray) -> np.ndarray:
        try:
            (out,) = self.session.run([self._output], {self._input: rows})
        except Exception as exc:  # onnxruntime raises its own exception types for shape and type mismatches
            raise ModelError(f"the ONNX model failed on inputs of shape {rows.shape}: {exc}") from exc
        out = np.asarray(out)
        if out.ndim != 2 or out.shape[0] != len(rows):
            raise ModelError(
                f"expected the ONNX output {self._output!r} of shape ({len(rows)}, classes), got {out.shape}"
            )
        return out

    def _probe_classes(self) -> int:
        return int(self._run(np.full((1, *self.input_shape), self.bounds[0])).shape[1])

    def __repr__(self) -> str:
        return (
            f"OnnxClassifier({self.name!r}, input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"bounds={self.bounds}, device={self.device})"
        )


def _session(path: Path, device: torch.device) -> onnxruntime.InferenceSession:
    import onnxruntime

    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise ConfigError(
                f"device {str(device)!r} was asked for, but this onnxruntime has no CUDAExecutionProvider "
                "(install onnxruntime-gpu); expected device 'cpu'"
            )
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime reports damaged or unsupported graphs with its own exceptions
        raise ModelError(f"could not load ONNX model {path}: {exc}") from exc


def _session_device(session: onnxruntime.InferenceSession) -> torch.device:
    providers = session.get_providers()
    return torch.device("cuda") if providers and providers[0] == "CUDAExecutionProvider" else torch.device("cpu")


def _feed_shape(declared: list[Any], input_shape: tuple[int, ...]) -> tuple[int | None, tuple[int, ...]]:
    """(the fixed batch size or None, the shape one input is fed as) from the graph's declared input shape."""
    batch = declared[0] if declared and isinstance(declared[0], int) and declared[0] > 0 else None
    rest = declared[1:]
    static = all(isinstance(d, int) and d > 0 for d in rest)
    if not static or tuple(rest) == input_shape:
        return batch, input_shape
    if math.prod(rest) == math.prod(input_shape):  # e.g. a model that takes flattened features
        return batch, tuple(rest)
    raise DataError(f"the ONNX model takes inputs of shape {tuple(rest)}, the data has shape {input_shape}")


def _scores_output(session: onnxruntime.InferenceSession) -> str:
    for out in session.get_outputs():
        if out.type in _NUMPY_TYPES:
            return str(out.name)
    names = [f"{o.name} ({o.type})" for o in session.get_outputs()]
    raise ModelError(f"expected an ONNX output holding a float tensor of scores, got {', '.join(names)}")
