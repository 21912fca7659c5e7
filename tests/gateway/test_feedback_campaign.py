"""A false-feedback campaign against a real running gateway: everything it sent lands in quarantine, as sent."""

from __future__ import annotations

from gateway_live import Served

from bastion.data import load_demo
from bastion.gateway.store import ItemStatus
from bastion.poisoning import FeedbackCampaign


def test_the_campaigns_feedback_is_stored_quarantined_with_the_right_share_of_lies(served: Served) -> None:
    data = load_demo("digits", "test")
    keys = [served.keys["client"], served.new_key("client", "mallory-2"), served.new_key("client", "mallory-3")]
    campaign = FeedbackCampaign(clients=3, rate=0.25, requests=4, batch_size=2, seed=0)
    result = campaign(served.url, keys, data)
    assert result.predictions == 24 and not result.refused
    store = served.gateway.store
    stored = {row.feedback_id: row for row in store.list_feedback(limit=1000)}
    assert set(stored) == set(result.feedback_ids) and len(stored) == 24
    assert all(row.status is ItemStatus.QUARANTINED for row in stored.values())
    lies = 0
    for item in result.sent:
        row = stored[item.feedback_id or ""]
        prediction = store.get_prediction(item.prediction_id)
        assert prediction is not None and prediction.label == item.predicted  # the gateway's own answer
        assert (row.prediction_id, row.correct, row.label) == (item.prediction_id, item.correct, item.label)
        # A stored row lies when its claim disagrees with the truth about the gateway's prediction.
        claims_right = row.correct and row.label in (None, prediction.label)
        lies += claims_right != (prediction.label == item.true_label)
    assert lies == 6 == len(result.false_feedback_ids)
    clients = {row.client for row in stored.values()}
    assert len(clients) == 3  # three distinct clients, one per key
