"""The gateway end to end on a real uvicorn server: endpoints, roles, output policies, quarantine, review, audit."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from gateway_live import GatewayFactory, Served, running
from PIL import Image

from bastion.data import load_demo

DIGITS = load_demo("digits", "test")


def inputs(n: int = 3) -> list[object]:
    return DIGITS.x[:n].numpy().tolist()


def png_of(index: int) -> bytes:
    pixels = (DIGITS.x[index, 0].numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_health_needs_no_key_and_everything_else_does(served: Served) -> None:
    assert httpx.get(f"{served.url}/v1/health").json()["status"] == "ok"
    for method, path in [
        ("POST", "/v1/predict"),
        ("GET", "/v1/review/flags"),
        ("GET", "/metrics"),
        ("GET", "/v1/openapi.json"),
    ]:
        response = httpx.request(method, f"{served.url}{path}", json={"inputs": inputs()})
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "missing_api_key"
        assert response.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.post(
        f"{served.url}/v1/predict", json={"inputs": inputs()}, headers={"Authorization": "Bearer bst_nope"}
    )
    assert wrong.json()["error"]["code"] == "invalid_api_key"


def test_predict_answers_the_models_labels(served: Served) -> None:
    with served.client("client") as client:
        body = client.post("/v1/predict", json={"inputs": inputs(5)}).json()
    expected = served.gateway.model.logits(DIGITS.x[:5]).argmax(1).tolist()
    assert body["labels"] == expected
    assert len(body["prediction_ids"]) == 5 and len(set(body["prediction_ids"])) == 5
    assert "scores" not in body  # clients see labels only by default


def test_an_uploaded_image_is_classified_like_its_array(served: Served) -> None:
    with served.client("admin") as client:
        as_json = client.post("/v1/predict", json={"inputs": inputs(1)}).json()
        as_form = client.post("/v1/predict", files={"file": ("x.bin", png_of(0), "application/octet-stream")}).json()
        as_body = client.post("/v1/predict", content=png_of(0), headers={"content-type": "image/png"}).json()
    assert as_form["labels"] == as_json["labels"] == as_body["labels"]
    np.testing.assert_allclose(as_form["scores"], as_json["scores"], atol=0.05)


@pytest.mark.parametrize(
    ("policy", "check"),
    [
        ("scores", lambda body: len(body["scores"][0]) == 10 and abs(sum(body["scores"][0]) - 1) < 1e-6),
        ("rounded", lambda body: all(round(p, 1) == p for p in body["scores"][0])),
        ("top_k", lambda body: len(body["top_k"][0]) == 2 and body["top_k"][0][0]["label"] == body["labels"][0]),
        ("label", lambda body: set(body) == {"prediction_ids", "labels"}),
    ],
)
def test_output_policy_per_role(make_gateway: GatewayFactory, policy: str, check: object) -> None:
    gateway = make_gateway(**{"output.client": policy, "output.decimals": 1, "output.top_k": 2})
    with running(gateway) as live, live.client("client") as client:
        body = client.post("/v1/predict", json={"inputs": inputs(2)}).json()
    assert callable(check) and check(body), body


def test_roles_are_enforced(served: Served) -> None:
    with served.client("client") as client:
        assert client.get("/v1/review/submissions").status_code == 403
        assert client.get("/metrics").json()["error"]["code"] == "forbidden"
        assert client.get("/v1/audit").status_code == 403
    with served.client("reviewer") as reviewer:
        assert reviewer.get("/v1/review/submissions").status_code == 200
        assert reviewer.get("/metrics").status_code == 403
    with served.client("admin") as admin:
        assert admin.get("/metrics").status_code == 200


def test_feedback_is_quarantined_and_only_for_the_clients_own_predictions(served: Served) -> None:
    with served.client("client") as client:
        prediction_id = client.post("/v1/predict", json={"inputs": inputs(1)}).json()["prediction_ids"][0]
        accepted = client.post("/v1/feedback", json={"prediction_id": prediction_id, "correct": False, "label": 7})
    assert accepted.status_code == 202 and accepted.json()["status"] == "quarantined"
    other = served.new_key("client", "someone-else")
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {other}"}) as stranger:
        refused = stranger.post("/v1/feedback", json={"prediction_id": prediction_id, "correct": True})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "unknown_prediction"
    stored = served.gateway.store.list_feedback()
    assert [(f.prediction_id, f.correct, f.label, f.status.value) for f in stored] == [
        (prediction_id, False, 7, "quarantined")
    ]


def test_a_submission_is_reviewed_and_the_decision_is_stored_and_audited(served: Served) -> None:
    with served.client("client") as client:
        submitted = client.post("/v1/submissions", json={"inputs": inputs(1)[0], "label": 4})
    assert submitted.status_code == 202
    submission_id = submitted.json()["submission_id"]
    with served.client("reviewer") as reviewer:
        listed = reviewer.get("/v1/review/submissions", params={"status": "quarantined"}).json()["items"]
        assert [item["submission_id"] for item in listed] == [submission_id]
        image = reviewer.get(f"/v1/review/submissions/{submission_id}/image.png")
        assert image.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(image.content)).size == (8, 8)
        decided = reviewer.post(
            f"/v1/review/submissions/{submission_id}", json={"decision": "reject", "reason": "looks off"}
        )
        assert decided.status_code == 200
        again = reviewer.post(f"/v1/review/submissions/{submission_id}", json={"decision": "approve"})
        assert again.status_code == 400  # already decided
    stored = served.gateway.store.get_submission(submission_id)
    assert stored is not None and stored.status.value == "rejected"
    np.testing.assert_allclose(stored.x, DIGITS.x[0].numpy())
    served.gateway.recorder.flush()
    events = served.gateway.store.audit_log(limit=50)
    assert any(e.action == "reject submission" and submission_id in e.detail for e in events)


def test_every_request_is_audited_without_secrets(served: Served) -> None:
    with served.client("client") as client:
        client.post("/v1/predict", json={"inputs": inputs(1)})
        nan_body = json.dumps({"inputs": [[[float("nan")] * 8] * 8]})  # NaN literals: valid to Python, not to JSON
        client.post("/v1/predict", content=nan_body, headers={"content-type": "application/json"})
    httpx.post(f"{served.url}/v1/predict", json={"inputs": inputs(1)})
    served.gateway.recorder.flush()
    events = served.gateway.store.audit_log(limit=10)
    outcomes = sorted((e.endpoint, e.status, e.code or "") for e in events)
    assert ("predict", 200, "") in outcomes
    assert ("predict", 401, "missing_api_key") in outcomes
    assert ("predict", 422, "non_finite") in outcomes
    dump = repr(events)
    assert all(secret not in dump for secret in served.keys.values())


def test_metrics_are_prometheus_text(served: Served) -> None:
    with served.client("client") as client:
        client.post("/v1/predict", json={"inputs": inputs(2)})
    with served.client("admin") as admin:
        text = admin.get("/metrics").text
    assert 'bastion_requests_total{endpoint="predict",status="200"} 1' in text
    assert "bastion_predictions_total 2" in text
    assert "# TYPE bastion_request_duration_seconds histogram" in text
    assert "bastion_submissions_quarantined 0" in text


def test_openapi_describes_every_guarded_route(served: Served) -> None:
    with served.client("client") as client:
        document = client.get("/v1/openapi.json").json()
    assert {"/v1/predict", "/v1/feedback", "/v1/submissions", "/v1/review/{kind}", "/metrics"} <= set(document["paths"])
    body = document["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_unknown_paths_and_methods_answer_in_the_error_shape(served: Served) -> None:
    missing = httpx.get(f"{served.url}/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = httpx.get(f"{served.url}/v1/predict")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


def test_a_guard_switched_off_is_really_off(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(guards=["error_boundary", "audit", "validation", "model", "output_policy"])
    with running(gateway) as live:
        anonymous = httpx.post(f"{live.url}/v1/predict", json={"inputs": inputs(1)})
        assert anonymous.status_code == 200  # no auth guard: anyone may predict, and sees labels only
        assert set(anonymous.json()) == {"prediction_ids", "labels"}
        review = httpx.get(f"{live.url}/v1/review/flags")
        assert review.status_code == 403  # reviewers' and admins' endpoints stay closed without a key


def test_rate_limit_refuses_with_retry_after(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(**{"rate_limit.per_key": ["3/minute"]})
    with running(gateway) as live, live.client("client") as client:
        statuses = [client.post("/v1/predict", json={"inputs": inputs(1)}).status_code for _ in range(5)]
        refused = client.post("/v1/predict", json={"inputs": inputs(1)})
        with live.client("admin") as admin:  # another key has its own window
            assert admin.post("/v1/predict", json={"inputs": inputs(1)}).status_code == 200
    assert statuses == [200, 200, 200, 429, 429]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(
        guards=["error_boundary", "rate_limit", "validation", "model"], **{"rate_limit.per_key": ["2/minute"]}
    )
    with running(gateway) as live:
        statuses = [
            httpx.post(
                f"{live.url}/v1/predict", json={"inputs": inputs(1)}, headers={"X-Forwarded-For": f"10.0.0.{i}"}
            ).status_code
            for i in range(4)
        ]
    assert statuses == [200, 200, 429, 429]  # a fresh header per request does not buy a fresh window
    trusted = make_gateway(
        guards=["error_boundary", "rate_limit", "validation", "model"],
        **{"rate_limit.per_key": ["2/minute"], "server.trusted_proxies": ["127.0.0.1"]},
    )
    with running(trusted) as live:
        statuses = [
            httpx.post(
                f"{live.url}/v1/predict", json={"inputs": inputs(1)}, headers={"X-Forwarded-For": f"10.0.0.{i}"}
            ).status_code
            for i in range(4)
        ]
    assert statuses == [200, 200, 200, 200]


def test_the_gateway_runs_on_postgresql(make_gateway: GatewayFactory, postgres_url: str) -> None:
    gateway = make_gateway(**{"store.url": postgres_url})
    with running(gateway) as live:
        with live.client("client") as client:
            prediction_id = client.post("/v1/predict", json={"inputs": inputs(1)}).json()["prediction_ids"][0]
            feedback = client.post("/v1/feedback", json={"prediction_id": prediction_id, "correct": True})
            submission = client.post("/v1/submissions", json={"inputs": inputs(1)[0], "label": 0})
        assert (feedback.status_code, submission.status_code) == (202, 202)
        with live.client("reviewer") as reviewer:
            item = submission.json()["submission_id"]
            assert reviewer.post(f"/v1/review/submissions/{item}", json={"decision": "approve"}).status_code == 200
        live.gateway.recorder.flush()
        store = live.gateway.store
        assert store.url.startswith("postgresql")
        assert store.get_prediction(prediction_id) is not None
        assert [f.feedback_id for f in store.list_feedback()] == [feedback.json()["feedback_id"]]
        assert store.list_submissions()[0].status.value == "approved"
        assert any(event.endpoint == "predict" for event in store.audit_log(limit=20))
