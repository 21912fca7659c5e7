"""The monitors on the running gateway: real attacks from the registry, sent through the HTTP adapter, get their
client flagged; benign clients sending test images do not."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch
from gateway_live import GatewayFactory, Served, running

from bastion.attacks.registry import ATTACKS
from bastion.data import load_demo
from bastion.errors import BudgetExhaustedError, RemoteModelError
from bastion.models import RemoteClassifier, RemoteConfig

TEST = load_demo("digits", "test")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from bastion.gateway import Gateway, load_config

    path = tmp_path_factory.mktemp("monitors-live") / "gateway.db"
    overrides = {
        "model.source": "demo:digits",
        "store.url": f"sqlite:///{path}",
        "rate_limit.per_key": ["100000/second"],
        "output.client": "scores",  # so that a score-based attack can run too
    }
    with running(Gateway.build(load_config(None, environ={}, overrides=overrides))) as served:
        yield served


def remote(served: Served, secret: str, knowledge: str, budget: int, retries: int = 3) -> RemoteClassifier:
    field = "scores" if knowledge == "scores" else "labels"
    config = RemoteConfig(
        url=f"{served.url}/v1/predict",
        num_classes=10,
        input_shape=(1, 8, 8),
        knowledge=knowledge,
        response_field=field,
        headers={"Authorization": f"Bearer {secret}"},
        query_budget=budget,
        batch_size=64,
        retries=retries,
    )
    return RemoteClassifier(config)


def key_id(served: Served, secret: str) -> str:
    key = served.gateway.store.authenticate(secret)
    assert key is not None
    return key.key_id


@pytest.mark.parametrize(
    ("name", "knowledge", "norm", "eps"),
    [("hopskipjump", "labels", "l2", None), ("boundary", "labels", "l2", None), ("square", "scores", "linf", 0.2)],
)
def test_an_attacking_client_is_flagged(live: Served, name: str, knowledge: str, norm: str, eps: float | None) -> None:
    secret = live.new_key("client", f"attacker-{name}")
    model = remote(live, secret, knowledge, budget=200)
    attack = ATTACKS[name](max_queries=150)
    x, y = TEST.x[40:41], TEST.y[40:41]
    try:
        attack(model, x, y, norm=norm, eps=eps, seed=0)
    except BudgetExhaustedError:
        pass  # the flag is what this test is about, not the attack's result
    finally:
        model.close()
    flags = live.gateway.store.list_flags(client=key_id(live, secret))
    assert flags, f"{name}: {model.rows_sent} queries and no flag"
    assert {flag.kind for flag in flags} <= {"query", "boundary"}


def test_benign_clients_sending_test_images_are_not_flagged(live: Served) -> None:
    gen = torch.Generator().manual_seed(0)
    clients = []
    for index in range(8):
        secret = live.new_key("client", f"benign-{index}")
        model = remote(live, secret, "scores", budget=1000)
        picks = torch.randint(0, len(TEST), (40,), generator=gen)
        picks[30:33] = picks[:3]  # a user re-sending a photo is benign too
        for pick in picks.tolist():
            model.logits(TEST.x[pick : pick + 1])
        model.close()
        clients.append(key_id(live, secret))
    flagged = [client for client in clients if live.gateway.store.list_flags(client=client)]
    assert flagged == []


def test_keys_sharing_one_attack_are_linked(live: Served) -> None:
    secrets = [live.new_key("client", f"sybil-{i}") for i in range(3)]
    models = [remote(live, secret, "labels", budget=200) for secret in secrets]

    class RoundRobin:
        """One attacker spreading its queries over several keys."""

        def __init__(self) -> None:
            first = models[0]
            self.input_shape, self.num_classes, self.bounds = first.input_shape, first.num_classes, first.bounds
            self.knowledge, self.device, self.queries, self.name = first.knowledge, first.device, first.queries, "sybil"
            self.turn = 0

        def logits(self, x: torch.Tensor) -> torch.Tensor:
            rows = []
            for row in x:
                rows.append(models[self.turn % len(models)].logits(row[None]))
                self.turn += 1
            return torch.cat(rows)

        def inference(self) -> object:
            return models[0].inference()

    with contextlib.suppress(BudgetExhaustedError):
        ATTACKS["hopskipjump"](max_queries=150)(RoundRobin(), TEST.x[80:81], TEST.y[80:81], norm="l2", seed=1)
    flagged = {key_id(live, secret) for secret in secrets if live.gateway.store.list_flags(client=key_id(live, secret))}
    assert len(flagged) == 3
    links = {other for flag in live.gateway.store.list_flags() for other in flag.linked_clients}
    assert links & flagged


def test_the_throttle_action_refuses_the_flagged_client(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(
        **{"monitors.query.action": "throttle", "monitors.boundary.enabled": False, "output.client": "scores"}
    )
    with running(gateway) as served:
        secret = served.new_key("client", "throttled")
        model = remote(served, secret, "scores", budget=200, retries=0)
        with pytest.raises(RemoteModelError, match="429"):
            ATTACKS["square"](max_queries=150)(model, TEST.x[:1], TEST.y[:1], norm="linf", eps=0.2, seed=0)
        model.close()
        assert served.gateway.store.list_flags(client=key_id(served, secret))
        assert np.isfinite(served.gateway.penalties.remaining(key_id(served, secret)))
        assert served.gateway.penalties.remaining(key_id(served, secret)) > 0


def test_the_omit_action_sets_the_clients_submissions_aside(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(
        **{"monitors.query.action": "omit", "monitors.boundary.enabled": False, "output.client": "scores"}
    )
    with running(gateway) as served:
        secret = served.new_key("client", "omitted")
        with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {secret}"}) as client:
            before = client.post("/v1/submissions", json={"inputs": TEST.x[5].tolist(), "label": int(TEST.y[5])})
            model = remote(served, secret, "scores", budget=200)
            with contextlib.suppress(BudgetExhaustedError):
                ATTACKS["square"](max_queries=150)(model, TEST.x[:1], TEST.y[:1], norm="linf", eps=0.2, seed=0)
            model.close()
            after = client.post("/v1/submissions", json={"inputs": TEST.x[6].tolist(), "label": int(TEST.y[6])})
        store = served.gateway.store
        client_id = key_id(served, secret)
        assert store.list_flags(client=client_id)
        statuses = {s.submission_id: s.status.value for s in store.list_submissions(client=client_id)}
    assert statuses == {before.json()["submission_id"]: "omitted", after.json()["submission_id"]: "omitted"}
    assert after.status_code == 202  # the client is not told: its data is just kept out of training
