"""The model guard: runs the deployed model on the decoded inputs and records each prediction."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio.to_thread
import numpy as np
import torch
from starlette.responses import Response

from bastion.errors import ModelError
from bastion.gateway.call import Call, Handler
from bastion.gateway.store import PredictionRecord
from bastion.models.interface import Classifier

if TYPE_CHECKING:
    from bastion.gateway.service import Gateway

__all__ = ["ModelGuard", "classify", "to_probabilities"]


class ModelGuard:
    """Fills ``call.probs`` and ``call.result`` (prediction ids and labels) for the predict endpoint."""

    name = "model"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, call: Call, call_next: Handler) -> Response:
        if call.endpoint == "predict" and call.inputs is not None:
            inputs = call.inputs
            call.probs = await anyio.to_thread.run_sync(classify, self.gateway.model, inputs)
            labels = call.probs.argmax(axis=1)
            call.prediction_ids = [uuid.uuid4().hex for _ in range(len(labels))]
            call.result = {"prediction_ids": call.prediction_ids, "labels": [int(label) for label in labels]}
            self._record(call, inputs, call.probs, labels)
        return await call_next(call)

    def _record(self, call: Call, inputs: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> None:
        now = datetime.now(UTC)
        for index, prediction_id in enumerate(call.prediction_ids):
            self.gateway.recorder.add(
                PredictionRecord(
                    prediction_id=prediction_id,
                    time=now,
                    client=call.client,
                    label=int(labels[index]),
                    scores=tuple(float(p) for p in probs[index]),
                    input_sha256=hashlib.sha256(inputs[index].tobytes()).hexdigest(),
                    x=inputs[index] if self.gateway.config.store.keep_inputs else None,
                )
            )
        self.gateway.metrics.observe_predictions(len(call.prediction_ids))


def classify(model: Classifier, inputs: np.ndarray) -> np.ndarray:
    """Class probabilities for a float32 batch, as float64 rows summing to one."""
    x = torch.from_numpy(inputs).to(model.device)
    try:
        with torch.no_grad(), model.inference():
            scores = model.logits(x)
    except ModelError:
        raise
    except Exception as error:  # a model failing on an input is a model error (500), never a traceback
        raise ModelError(f"the model failed on this input: {type(error).__name__}") from error
    return to_probabilities(scores.detach().to("cpu", torch.float64).numpy())


def to_probabilities(scores: np.ndarray) -> np.ndarray:
    """Scores that already are probabilities are kept; logits go through a softmax."""
    if np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-4):
        return scores
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp: np.ndarray = np.exp(shifted)
    probs: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return probs
