"""The false-feedback campaign against an in-memory gateway double: what it sends, lies about, and records."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import torch

from bastion.data import Dataset
from bastion.errors import ConfigError, RemoteModelError
from bastion.poisoning import FeedbackCampaign


@dataclass
class FakeGateway:
    """Answers /v1/predict with the true label except for every third input, and accepts any feedback."""

    data: Dataset
    predictions: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (key, label)
    feedback: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    refuse_predict: int = 0  # refuse this many predict calls with 429 first

    def __call__(self, request: httpx.Request) -> httpx.Response:
        key = request.headers["authorization"].removeprefix("Bearer ")
        body = json.loads(request.content)
        if request.url.path == "/v1/predict":
            if self.refuse_predict:
                self.refuse_predict -= 1
                return httpx.Response(429, json={"error": {"code": "rate_limited", "detail": "slow down"}})
            labels = [self.label_of(torch.tensor(row)) for row in body["inputs"]]
            ids = [uuid.uuid4().hex for _ in labels]
            self.predictions.update({pid: (key, label) for pid, label in zip(ids, labels, strict=True)})
            return httpx.Response(200, json={"prediction_ids": ids, "labels": labels})
        owner, _ = self.predictions[body["prediction_id"]]
        if owner != key:
            return httpx.Response(404, json={"error": {"code": "unknown_prediction", "detail": "no"}})
        self.feedback.append((key, body))
        return httpx.Response(202, json={"feedback_id": uuid.uuid4().hex, "status": "quarantined"})

    def label_of(self, x: torch.Tensor) -> int:
        index = int((self.data.x.flatten(1) - x.flatten()).abs().sum(dim=1).argmin())
        truth = int(self.data.y[index])
        return (truth + 1) % 10 if index % 3 == 0 else truth


def run(campaign: FeedbackCampaign, data: Dataset, gateway: FakeGateway, **kwargs: Any) -> Any:
    keys = [f"key-{i}" for i in range(campaign.clients)]
    return campaign("http://gateway.test", keys, data, transport=httpx.MockTransport(gateway), **kwargs)


@pytest.fixture
def small(digits_test: Dataset) -> Dataset:
    return Dataset(digits_test.x[:60], digits_test.y[:60], class_names=digits_test.class_names, name="digits-60")


def test_exactly_the_rate_lies_and_the_rest_tell_the_truth(small: Dataset) -> None:
    gateway = FakeGateway(small)
    result = run(FeedbackCampaign(clients=3, rate=0.25, requests=4, batch_size=2, seed=0), small, gateway)
    assert result.predictions == 24 and len(result.sent) == 24 and not result.refused
    assert sum(item.false for item in result.sent) == 6 and result.false_share == 0.25
    assert len(gateway.feedback) == 24 and len(set(result.feedback_ids)) == 24
    for item, (key, body) in zip(result.sent, gateway.feedback, strict=True):
        assert key == f"key-{item.client}" and body["prediction_id"] == item.prediction_id
        right = item.predicted == item.true_label
        says_right = body["correct"] and body.get("label") in (None, item.predicted)
        if item.false:  # a lie contradicts the truth: "wrong" with another label, or "correct" for a mistake
            assert says_right != right and body.get("label") != item.predicted
        else:  # the truth: confirm a right prediction, correct a wrong one with the true label
            assert says_right == right and (right or body["label"] == item.true_label)
    assert any(item.false and not item.correct for item in result.sent)
    assert set(result.false_feedback_ids) == {item.feedback_id for item in result.sent if item.false}


def test_without_cover_only_the_lies_are_sent_and_the_plan_follows_the_seed(small: Dataset) -> None:
    first = run(FeedbackCampaign(rate=0.5, requests=4, honest=False, seed=1), small, FakeGateway(small))
    again = run(FeedbackCampaign(rate=0.5, requests=4, honest=False, seed=1), small, FakeGateway(small))
    assert len(first.sent) == 6 and all(item.false for item in first.sent) and first.false_share == 1.0
    plan = [(i.client, i.true_label, i.predicted, i.correct, i.label) for i in first.sent]
    assert plan == [(i.client, i.true_label, i.predicted, i.correct, i.label) for i in again.sent]


def test_the_campaign_is_spread_over_time_and_records_refusals(small: Dataset) -> None:
    naps: list[float] = []
    gateway = FakeGateway(small, refuse_predict=2)
    result = run(FeedbackCampaign(clients=2, requests=3, interval=5.0), small, gateway, sleep=naps.append)
    assert naps == [5.0, 5.0]  # between rounds, not after the last
    assert [(r.client, r.endpoint, r.status, r.code) for r in result.refused] == [
        (0, "predict", 429, "rate_limited"),
        (1, "predict", 429, "rate_limited"),
    ]
    assert result.predictions == 4 and len(result.sent) == 4


def test_bad_settings_and_an_unreachable_gateway_are_clear_errors(small: Dataset) -> None:
    with pytest.raises(ConfigError, match="plays 3 clients and needs as many API keys, got 1"):
        FeedbackCampaign(clients=3)("http://gateway.test", ["k"], small)
    with pytest.raises(ConfigError, match=r"expected a false-feedback rate in \(0, 1\], got 0"):
        FeedbackCampaign(rate=0)("http://gateway.test", ["a", "b", "c"], small)
    with pytest.raises(ConfigError, match="expected requests >= 1, got 0"):
        FeedbackCampaign(requests=0)("http://gateway.test", ["a", "b", "c"], small)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(RemoteModelError, match="did not answer /v1/predict"):
        FeedbackCampaign(clients=1)("http://gateway.test", ["k"], small, transport=httpx.MockTransport(down))
