"""The retrain loop end to end: a running gateway, honest clients and a false-feedback campaign, RONI per client,
the gate, and a promoted model that never saw the campaign's data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
from gateway_live import GatewayFactory, running

from bastion.data import Dataset, load_demo
from bastion.defences import Roni
from bastion.gate import GatePolicy, ModelRegistry, RobustCheck
from bastion.gate.retrain import retrain
from bastion.poisoning import FeedbackCampaign
from bastion.training import demo_recipe


def part(data: Dataset, start: int, stop: int) -> Dataset:
    return replace(data, x=data.x[start:stop], y=data.y[start:stop], name=f"{data.name}[{start}:{stop}]")


def test_a_false_feedback_campaign_never_reaches_the_promoted_model(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    train, test = load_demo("digits", "train"), load_demo("digits", "test")
    traffic, quiz, holdout = part(test, 0, 200), part(test, 200, 280), part(test, 280, len(test))
    recipe = demo_recipe("digits", epochs=10)
    registry = ModelRegistry(tmp_path / "registry")
    baseline = recipe.fit(train, seed=0)
    registry.promote(registry.register(baseline, factory=recipe.factory_spec or "", note="baseline").version)

    gateway = make_gateway(**{"monitors.boundary.enabled": False, "monitors.query.enabled": False})
    with running(gateway) as live:
        honest = [live.new_key("client", f"honest-{i}") for i in range(2)]
        for index, secret in enumerate(honest):
            with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {secret}"}) as client:
                for row in range(index * 40, index * 40 + 40):
                    body = {"inputs": traffic.x[row].tolist(), "label": int(traffic.y[row])}
                    assert client.post("/v1/submissions", json=body).status_code == 202
        liars = [live.new_key("client", f"liar-{i}") for i in range(2)]
        campaign = FeedbackCampaign(clients=2, rate=0.8, requests=20, batch_size=2, seed=0)
        sent = campaign(live.url, liars, part(traffic, 80, 200))
        assert len(sent.false_feedback_ids) >= 50
        store = live.gateway.store
        live.gateway.recorder.flush()
        policy = GatePolicy(max_accuracy_drop=0.02, robust=RobustCheck(eps=0.05, steps=5, examples=64), scan=None)
        outcome = retrain(
            store,
            registry,
            recipe,
            trusted=train,
            quiz=quiz,
            test=holdout,
            policy=policy,
            include="all",
            roni=Roni(seed=0),
        )
        liar_ids = {key.key_id for key in store.list_keys() if key.name.startswith("liar-")}
        flags = store.list_flags(open_only=False)

    used_ids = {item.item_id for item in outcome.used}
    assert not used_ids & set(sent.feedback_ids), "campaign feedback reached the training set"
    assert not {item.client for item in outcome.used} & liar_ids
    assert sum(item.kind == "submission" for item in outcome.used) == 80  # the honest clients' data was kept
    assert outcome.decision is not None and outcome.decision.passed, outcome.decision.summary()
    assert outcome.promoted and registry.current() == outcome.version
    assert {flag.client for flag in flags if flag.kind == "roni"} == liar_ids
    assert outcome.version is not None and "RONI rejected" in outcome.version.note


def test_nothing_admitted_trains_nothing(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = make_gateway(**{"monitors.boundary.enabled": False, "monitors.query.enabled": False})
    registry = ModelRegistry(tmp_path / "registry")
    test = load_demo("digits", "test")
    outcome = retrain(
        gateway.store, registry, demo_recipe("digits", epochs=1), trusted=load_demo("digits", "train"),
        quiz=part(test, 0, 50), test=part(test, 50, 100),
    )  # fmt: skip
    assert (outcome.offered, outcome.version, outcome.promoted) == ((), None, False)
    gateway.close()


def test_only_reviewed_items_are_used_by_default(make_gateway: GatewayFactory) -> None:
    from bastion.gate.retrain import collect
    from bastion.gateway.store import Decision, ItemKind

    gateway = make_gateway(**{"monitors.boundary.enabled": False, "monitors.query.enabled": False})
    test = load_demo("digits", "test")
    store = gateway.store
    ids = [store.add_submission(client="c", x=test.x[i].numpy(), label=int(test.y[i])) for i in range(3)]
    store.decide(kind=ItemKind.SUBMISSION, item_id=ids[0], decision=Decision.APPROVE, reviewer="r", reason="")
    store.decide(kind=ItemKind.SUBMISSION, item_id=ids[1], decision=Decision.REJECT, reviewer="r", reason="")
    items, inputs = collect(store, (1, 8, 8), include="approved")
    assert [item.item_id for item in items] == [ids[0]] and inputs.shape == (1, 1, 8, 8)
    items, _ = collect(store, (1, 8, 8), include="all")
    assert sorted(item.item_id for item in items) == sorted([ids[0], ids[2]])  # never the rejected one
    gateway.close()
