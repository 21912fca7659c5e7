"""False-feedback campaigns: simulated clients that lie about the gateway's predictions over time.

The seed's attacker can give false feedback: "wrong" for a good classification, "correct" for a
bad one, hoping the lies end up as training labels at the next retraining. A
:class:`FeedbackCampaign` plays ``clients`` such clients against a running gateway over real HTTP:
in each of ``requests`` rounds every client asks ``POST /v1/predict`` for a batch of labelled
inputs, then answers each prediction on ``POST /v1/feedback``. Exactly ``round(rate * total)``
of the predictions, chosen by the seed, get a lie (``{"correct": false, "label": <another class>}``
for a right prediction, ``{"correct": true}`` for a wrong one); the others get the truth as cover
(or nothing, with ``honest=False``). Everything sent is recorded, ids included, so that a later
check can prove none of it reached a promoted model.

Example::

    campaign = FeedbackCampaign(clients=3, rate=0.3, requests=20, seed=0)
    result = campaign("http://127.0.0.1:8000", keys, load_demo("digits", "test"))
    result.false_feedback_ids      # what must never become a training label
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import torch
from torch import Tensor

from bastion.attacks.interface import require_at_least
from bastion.data.dataset import Dataset
from bastion.errors import ConfigError, RemoteModelError
from bastion.poisoning.interface import class_count

__all__ = ["CampaignResult", "FeedbackCampaign", "Refusal", "SentFeedback"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SentFeedback:
    """One feedback the campaign sent, what it claimed, and what the truth was."""

    client: int  # index of the simulated client; it used ``keys[client]``
    prediction_id: str
    feedback_id: str | None  # None when the gateway refused the feedback
    true_label: int
    predicted: int
    correct: bool  # what the feedback claimed about the prediction
    label: int | None  # the label it gave, if any
    false: bool  # True when the claim is a lie

    @property
    def accepted(self) -> bool:
        return self.feedback_id is not None


@dataclass(frozen=True)
class Refusal:
    """A request the gateway answered with an error: which endpoint, its status and its error code."""

    client: int
    endpoint: str
    status: int
    code: str


@dataclass(frozen=True)
class CampaignResult:
    """Everything a campaign sent and what the gateway refused."""

    sent: tuple[SentFeedback, ...]
    predictions: int  # predictions the gateway answered
    refused: tuple[Refusal, ...]

    @property
    def feedback_ids(self) -> tuple[str, ...]:
        return tuple(item.feedback_id for item in self.sent if item.feedback_id is not None)

    @property
    def false_feedback_ids(self) -> tuple[str, ...]:
        return tuple(item.feedback_id for item in self.sent if item.feedback_id is not None and item.false)

    @property
    def false_share(self) -> float:
        """Share of the accepted feedback that lies."""
        accepted = [item for item in self.sent if item.accepted]
        return sum(item.false for item in accepted) / len(accepted) if accepted else 0.0


@dataclass(frozen=True)
class _Plan:
    """The campaign's seeded choices: which inputs each prediction is about, which get a lie, the lies' labels."""

    rows: Tensor  # (rounds, clients, batch) row indices into the data
    lie: Tensor  # bool, same shape: this prediction gets false feedback
    shift: Tensor  # int, same shape: 1..k-1, the offset of a lie's wrong label from the prediction
    classes: int


@dataclass
class _Log:
    """What the campaign has sent and been refused so far (mutable while it runs)."""

    sent: list[SentFeedback] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    predictions: int = 0

    def result(self) -> CampaignResult:
        return CampaignResult(tuple(self.sent), self.predictions, tuple(self.refused))


@dataclass(frozen=True, kw_only=True)
class FeedbackCampaign:
    """``clients`` clients, ``requests`` predict calls each, lying about a ``rate`` share of the predictions."""

    clients: int = 3
    rate: float = 0.3  # share of all predictions that get false feedback, in (0, 1]
    requests: int = 10  # predict calls per client, one per round
    batch_size: int = 1  # inputs per predict call
    honest: bool = True  # the other predictions get truthful feedback (cover); False: no feedback at all
    interval: float = 0.0  # seconds between rounds: a campaign spread over time
    seed: int = 0
    timeout: float = 30.0  # seconds per HTTP request

    def __call__(
        self,
        url: str,
        keys: Sequence[str],
        data: Dataset,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> CampaignResult:
        """Run the campaign against the gateway at ``url`` with one API key per client (``keys[i]``)."""
        self._validate(keys)
        plan = self._plan(data)
        log = _Log()
        sessions = [self._session(url, key, transport) for key in keys[: self.clients]]
        try:
            for round_ in range(self.requests):
                if round_ and self.interval > 0:
                    sleep(self.interval)
                for client, session in enumerate(sessions):
                    self._turn(session, client, round_, data, plan, log)
        finally:
            for session in sessions:
                session.close()
        result = log.result()
        logger.info(
            "feedback campaign: %d predictions, %d feedback sent (%d false), %d refused",
            result.predictions, len(result.sent), len(result.false_feedback_ids), len(result.refused),
        )  # fmt: skip
        return result

    def _turn(self, session: httpx.Client, client: int, round_: int, data: Dataset, plan: _Plan, log: _Log) -> None:
        """One client's predict call in one round, then its feedback on each answer."""
        rows = plan.rows[round_, client].tolist()
        answered = _predict(session, data.x[rows], client, log)
        for i, (prediction_id, predicted) in enumerate(answered):
            lie = bool(plan.lie[round_, client, i])
            if not (lie or self.honest):
                continue
            truth = int(data.y[rows[i]])
            claim = _claim(predicted, truth, lie, (predicted + int(plan.shift[round_, client, i])) % plan.classes)
            log.sent.append(_feedback(session, client, prediction_id, truth, predicted, claim, lie, log))

    def _validate(self, keys: Sequence[str]) -> None:
        require_at_least("clients", self.clients, 1)
        require_at_least("requests", self.requests, 1)
        require_at_least("batch_size", self.batch_size, 1)
        if not 0.0 < self.rate <= 1.0:
            raise ConfigError(f"expected a false-feedback rate in (0, 1], got {self.rate}")
        if not self.interval >= 0:
            raise ConfigError(f"expected interval >= 0 seconds, got {self.interval}")
        if len(keys) < self.clients:
            raise ConfigError(f"the campaign plays {self.clients} clients and needs as many API keys, got {len(keys)}")

    def _plan(self, data: Dataset) -> _Plan:
        shape = (self.requests, self.clients, self.batch_size)
        total = self.requests * self.clients * self.batch_size
        gen = torch.Generator().manual_seed(self.seed)
        rows = torch.randint(0, len(data), shape, generator=gen)
        lie = torch.zeros(total, dtype=torch.bool)
        lie[torch.randperm(total, generator=gen)[: round(self.rate * total)]] = True
        classes = class_count(data, None)
        if classes < 2:
            raise ConfigError(f"{data.name}: false feedback needs at least 2 classes, got {classes}")
        shift = torch.randint(1, classes, shape, generator=gen)
        return _Plan(rows, lie.view(shape), shift, classes)

    def _session(self, url: str, key: str, transport: httpx.BaseTransport | None) -> httpx.Client:
        return httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=self.timeout, transport=transport
        )


def _claim(predicted: int, truth: int, lie: bool, wrong_label: int) -> dict[str, Any]:
    """The feedback body's claim: a lie contradicts the truth, the truth confirms or corrects."""
    right = predicted == truth
    if lie:
        return {"correct": False, "label": wrong_label} if right else {"correct": True}
    return {"correct": True} if right else {"correct": False, "label": truth}


def _predict(session: httpx.Client, x: Tensor, client: int, log: _Log) -> list[tuple[str, int]]:
    """``(prediction_id, label)`` for each input, or none when the gateway refuses the call."""
    response = _post(session, "/v1/predict", {"inputs": x.cpu().tolist()})
    if response.status_code != 200:
        log.refused.append(Refusal(client, "predict", response.status_code, _error_code(response)))
        return []
    body = response.json()
    answered = list(zip(body["prediction_ids"], (int(label) for label in body["labels"]), strict=True))
    log.predictions += len(answered)
    return answered


def _feedback(
    session: httpx.Client,
    client: int,
    prediction_id: str,
    truth: int,
    predicted: int,
    claim: dict[str, Any],
    lie: bool,
    log: _Log,
) -> SentFeedback:
    response = _post(session, "/v1/feedback", {"prediction_id": prediction_id, **claim})
    feedback_id = None
    if response.status_code == 202:
        feedback_id = str(response.json()["feedback_id"])
    else:
        log.refused.append(Refusal(client, "feedback", response.status_code, _error_code(response)))
    label = claim.get("label")
    return SentFeedback(client, prediction_id, feedback_id, truth, predicted, bool(claim["correct"]), label, lie)


def _post(session: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    try:
        return session.post(path, json=body)
    except httpx.HTTPError as error:
        raise RemoteModelError(f"the gateway at {session.base_url} did not answer {path}: {error}") from error


def _error_code(response: httpx.Response) -> str:
    """The gateway's stable error code (``{"error": {"code": ...}}``), or the status when the body has none."""
    try:
        error = response.json().get("error", {})
        return str(error.get("code", response.status_code))
    except (ValueError, AttributeError):
        return str(response.status_code)
