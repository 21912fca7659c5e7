"""Bad input against the live gateway: each a 4xx with a stable code, never a 5xx, and the gateway keeps serving."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import numpy as np
import pytest
from gateway_live import GatewayFactory, Served, running
from PIL import Image
from test_decode import bomb_png

from bastion.data import load_demo

DIGITS = load_demo("digits", "test")
ONE = DIGITS.x[:1].numpy().tolist()


def png(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


GOOD_PNG = png((DIGITS.x[0, 0].numpy() * 255).astype(np.uint8))
JSON = {"content-type": "application/json"}

# (name, endpoint, request keyword arguments, expected status, expected code)
CASES: list[tuple[str, str, dict[str, object], int, str]] = [
    ("malformed json", "/v1/predict", {"content": b'{"inputs": [1,', "headers": JSON}, 400, "malformed_json"),
    ("not an object", "/v1/predict", {"content": b"[1, 2]", "headers": JSON}, 400, "bad_body"),
    ("invalid utf-8", "/v1/predict", {"content": b'{"inputs": "\xff\xfe"}', "headers": JSON}, 400, "invalid_utf8"),
    (
        "deep nesting",
        "/v1/predict",
        {"content": b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "headers": JSON},
        400,
        "too_deep",
    ),
    (
        "duplicate key",
        "/v1/predict",
        {"content": b'{"inputs": [], "inputs": []}', "headers": JSON},
        400,
        "duplicate_key",
    ),
    (
        "nan",
        "/v1/predict",
        {"content": json.dumps({"inputs": [[[float("nan")] * 8] * 8]}).encode(), "headers": JSON},
        422,
        "non_finite",
    ),
    (
        "infinity",
        "/v1/predict",
        {"content": json.dumps({"inputs": [[[float("inf")] * 8] * 8]}).encode(), "headers": JSON},
        422,
        "non_finite",
    ),
    ("wrong shape", "/v1/predict", {"json": {"inputs": [[0.1] * 7] * 8}}, 422, "bad_shape"),
    ("strings", "/v1/predict", {"json": {"inputs": [[["a"] * 8] * 8]}}, 422, "bad_dtype"),
    ("out of range", "/v1/predict", {"json": {"inputs": [[[7.0] * 8] * 8]}}, 422, "out_of_range"),
    ("empty batch", "/v1/predict", {"json": {"inputs": []}}, 422, "empty_batch"),
    ("batch too large", "/v1/predict", {"json": {"inputs": ONE * 65}}, 413, "batch_too_large"),
    ("unknown field", "/v1/predict", {"json": {"inputs": ONE, "debug": True}}, 422, "unknown_field"),
    ("missing inputs", "/v1/predict", {"json": {}}, 422, "missing_field"),
    ("no content type", "/v1/predict", {"content": b"hello"}, 415, "unsupported_media_type"),
    ("huge declared body", "/v1/predict", {"content": b"x" * 3_000_000, "headers": JSON}, 413, "body_too_large"),
    (
        "jpeg named png",
        "/v1/predict",
        {"files": {"file": ("a.png", png(np.zeros((8, 8), np.uint8), "GIF"), "image/png")}},
        415,
        "unsupported_format",
    ),
    (
        "truncated png",
        "/v1/predict",
        {"content": GOOD_PNG[: len(GOOD_PNG) // 2], "headers": {"content-type": "image/png"}},
        422,
        "corrupt_image",
    ),
    (
        "not an image",
        "/v1/predict",
        {"content": b"MZ\x90\x00" * 100, "headers": {"content-type": "image/png"}},
        415,
        "unsupported_format",
    ),
    (
        "decompression bomb",
        "/v1/predict",
        {"content": bomb_png(30_000), "headers": {"content-type": "image/png"}},
        413,
        "too_many_pixels",
    ),
    (
        "two files",
        "/v1/predict",
        {"files": [("file", ("a", GOOD_PNG)), ("file", ("b", GOOD_PNG))]},
        422,
        "malformed_form",
    ),
    (
        "feedback bad id",
        "/v1/feedback",
        {"json": {"prediction_id": "'; DROP TABLE feedback; --", "correct": False}},
        422,
        "bad_field",
    ),
    ("feedback bad bool", "/v1/feedback", {"json": {"prediction_id": "0" * 32, "correct": "yes"}}, 422, "bad_field"),
    (
        "feedback label",
        "/v1/feedback",
        {"json": {"prediction_id": "0" * 32, "correct": False, "label": 10}},
        422,
        "bad_label",
    ),
    (
        "feedback unknown",
        "/v1/feedback",
        {"json": {"prediction_id": "0" * 32, "correct": False}},
        404,
        "unknown_prediction",
    ),
    ("submission batch", "/v1/submissions", {"json": {"inputs": ONE * 2, "label": 1}}, 422, "bad_shape"),
    ("submission label", "/v1/submissions", {"json": {"inputs": ONE[0], "label": True}}, 422, "bad_label"),
    ("submission no label", "/v1/submissions", {"json": {"inputs": ONE[0]}}, 422, "missing_field"),
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from bastion.gateway import Gateway, load_config

    path = tmp_path_factory.mktemp("bad-input") / "gateway.db"
    overrides = {
        "model.source": "demo:digits",
        "store.url": f"sqlite:///{path}",
        "rate_limit.per_key": ["100000/second"],
    }
    with running(Gateway.build(load_config(None, environ={}, overrides=overrides))) as served:
        yield served


@pytest.mark.parametrize(("name", "path", "request_args", "status", "code"), CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_a_4xx_with_its_code(
    live: Served, name: str, path: str, request_args: dict, status: int, code: str
) -> None:
    with live.client("client") as client:
        response = client.post(path, **request_args)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
        assert client.post("/v1/predict", json={"inputs": ONE}).status_code == 200  # still serving


def test_a_chunked_body_past_the_limit_is_cut_off(live: Served) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"inputs": ['
        for _ in range(400):
            yield b"0.5, " * 2000  # 4 MB in all, with no Content-Length
        yield b"0.5]}"

    with live.client("client") as client:
        response = client.post("/v1/predict", content=chunks(), headers=JSON)
    assert (response.status_code, response.json()["error"]["code"]) == (413, "body_too_large")


def test_injection_strings_in_text_fields_are_stored_verbatim(live: Served) -> None:
    with live.client("client") as client:
        submission_id = client.post("/v1/submissions", json={"inputs": ONE[0], "label": 1}).json()["submission_id"]
    reason = "Robert'); DROP TABLE submissions;-- <script>alert(1)</script> {{7*7}} ${jndi:ldap://x}"
    with live.client("reviewer") as reviewer:
        assert (
            reviewer.post(
                f"/v1/review/submissions/{submission_id}", json={"decision": "approve", "reason": reason}
            ).status_code
            == 200
        )
        refused = reviewer.post(
            f"/v1/review/submissions/{submission_id}", json={"decision": "approve", "reason": "a\x00b"}
        )
        assert refused.status_code == 422
    decision = live.gateway.store.list_decisions(limit=5)[0]
    assert decision.reason == reason
    assert live.gateway.store.get_submission(submission_id) is not None


def test_a_failing_model_is_a_500_with_a_code_not_a_traceback(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    original = gateway.model

    class Broken:
        def __getattr__(self, name: str) -> object:
            return getattr(original, name)

        def logits(self, x: object) -> object:
            raise RuntimeError("CUDA error: device-side assert triggered")

    gateway.model = Broken()  # type: ignore[assignment]
    with running(gateway) as served, served.client("client") as client:
        response = client.post("/v1/predict", json={"inputs": ONE})
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "model_error"
        assert "Traceback" not in response.text and "device-side" not in response.text
