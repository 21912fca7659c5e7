"""RemoteClassifier against in-memory endpoints (httpx.MockTransport): mapping, retries, waits and the budget."""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import email.utils
import io
import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from bastion.errors import BudgetExhaustedError, ConfigError, DataError, RemoteModelError
from bastion.models import Classifier, Knowledge
from bastion.models.remote import RemoteClassifier, RemoteConfig, encode_png, parse_retry_after, safe_url

URL = "http://model.test/v1/predict"
SECRET = "Bearer s3cret-token"
Handler = Callable[[httpx.Request], httpx.Response]


def scores_of(rows: list[Any]) -> list[list[float]]:
    """The fake model: the scores of an input of shape (3,) are the input itself."""
    return [list(map(float, row)) for row in rows]


class Endpoint:
    """A scripted endpoint: each request gets the next planned answer, then ``ok`` for ever; rows are counted."""

    def __init__(self, *plan: Handler, ok: Handler | None = None) -> None:
        self.plan = list(plan)
        self.ok = ok or json_scores
        self.requests: list[httpx.Request] = []
        self.rows = 0
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            self.rows += rows_in(request)
            handler = self.plan.pop(0) if self.plan else self.ok
        return handler(request)


def rows_in(request: httpx.Request) -> int:
    if request.headers.get("content-type", "").startswith("multipart/"):
        return 1
    return len(json.loads(request.content)["inputs"])


def json_scores(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"outputs": scores_of(json.loads(request.content)["inputs"])})


def status(code: int, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(code, headers=headers, json={"detail": "nope"})


def make(
    endpoint: Handler, waits: list[float] | None = None, clock: Callable[[], float] = lambda: 0.0, **options: Any
) -> RemoteClassifier:
    settings: dict[str, Any] = {"url": URL, "num_classes": 3, "input_shape": (3,), "retries": 2, **options}
    sleep = waits.append if waits is not None else _no_sleep
    return RemoteClassifier(RemoteConfig(**settings), transport=httpx.MockTransport(endpoint), sleep=sleep, clock=clock)


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"unexpected wait of {seconds} s")


def inputs(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 3), generator=torch.Generator().manual_seed(seed))


# -- mapping ------------------------------------------------------------------------------------


def test_json_scores_in_order_across_concurrent_batches() -> None:
    endpoint = Endpoint()
    model = make(endpoint, batch_size=4, max_concurrency=3)
    x = inputs(10)
    out = model.logits(x)
    assert isinstance(model, Classifier) and model.knowledge is Knowledge.SCORES
    torch.testing.assert_close(out, x)
    assert sorted(rows_in(r) for r in endpoint.requests) == [2, 4, 4]
    assert model.queries.forward == 10 and model.rows_sent == 10 and model.requests_sent == 3


def test_requests_never_exceed_max_concurrency() -> None:
    active, peak, lock = [0], [0], threading.Lock()
    barrier = threading.Barrier(2, timeout=5)

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        barrier.wait()  # only passes when two requests are in flight together
        with lock:
            active[0] -= 1
        return json_scores(request)

    model = make(handler, batch_size=1, max_concurrency=2)
    model.logits(inputs(6))
    assert peak[0] == 2


def test_nested_request_and_response_field_paths() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        rows = json.loads(request.content)["data"]["instances"]
        return httpx.Response(200, json={"predictions": [{"scores": s} for s in scores_of(rows)]})

    model = make(handler, request_field="data.instances", response_field="predictions.*.scores")
    x = inputs(5)
    torch.testing.assert_close(model.logits(x), x)


def test_labels_mode_returns_one_hot_rows() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        rows = json.loads(request.content)["inputs"]
        return httpx.Response(200, json={"labels": [int(np.argmax(r)) for r in rows]})

    model = make(handler, knowledge="labels", response_field="labels")
    x = inputs(7)
    out = model.logits(x)
    assert model.knowledge is Knowledge.LABELS
    assert torch.equal(out, torch.nn.functional.one_hot(x.argmax(1), 3).float())


def test_empty_batch_sends_nothing() -> None:
    endpoint = Endpoint()
    assert make(endpoint).logits(torch.zeros((0, 3))).shape == (0, 3)
    assert endpoint.requests == []


def test_wrong_input_shape_is_refused() -> None:
    with pytest.raises(DataError, match=r"expected inputs of shape \(n, 3\), got \(2, 4\)"):
        make(Endpoint()).logits(torch.zeros((2, 4)))


# -- image mode ---------------------------------------------------------------------------------


def uploaded_png(request: httpx.Request, field: str) -> np.ndarray:
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(head + request.content)
    (part,) = list(message.iter_parts())  # type: ignore[attr-defined]
    assert part.get_param("name", header="content-disposition") == field
    assert part.get_content_type() == "image/png"
    return np.asarray(Image.open(io.BytesIO(part.get_payload(decode=True))))


@pytest.mark.parametrize(("shape", "bounds"), [((1, 6, 5), (0.0, 1.0)), ((3, 4, 4), (-1.0, 1.0))])
def test_image_mode_uploads_png_that_decodes_to_the_input(shape: tuple[int, ...], bounds: tuple[float, float]) -> None:
    seen: list[np.ndarray] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(uploaded_png(request, "file"))
        return httpx.Response(200, json={"scores": [0.1, 0.2, 0.7]})

    image = {"request_mode": "image", "request_field": "file", "response_field": "scores", "max_concurrency": 1}
    model = make(handler, input_shape=shape, bounds=bounds, **image)
    lo, hi = bounds
    x = torch.rand((2, *shape), generator=torch.Generator().manual_seed(1)) * (hi - lo) + lo
    out = model.logits(x)
    assert out.shape == (2, 3) and model.requests_sent == 2
    for pixels, original in zip(seen, x, strict=True):
        chw = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        decoded = torch.from_numpy(chw.astype(np.float32)) / 255 * (hi - lo) + lo
        assert (decoded - original).abs().max() <= (hi - lo) / 255 / 2 + 1e-6


def test_encode_png_keeps_the_extremes() -> None:
    x = torch.tensor([[[0.0, 1.0], [0.5, 1.0]]])
    pixels = np.asarray(Image.open(io.BytesIO(encode_png(x, (0.0, 1.0)))))
    assert pixels.tolist() == [[0, 255], [128, 255]]


# -- retries and waits --------------------------------------------------------------------------


def test_5xx_is_retried_with_seeded_exponential_backoff() -> None:
    waits: list[float] = []
    endpoint = Endpoint(status(500), status(502))
    model = make(endpoint, waits, backoff=1.0, retries=3)
    x = inputs(4)
    torch.testing.assert_close(model.logits(x), x)
    assert len(waits) == 2 and 0.5 <= waits[0] < 1.0 and 1.0 <= waits[1] < 2.0
    assert model.rows_sent == 12 and model.queries.forward == 4  # the endpoint saw 3 attempts, the attack asked once
    again: list[float] = []
    make(Endpoint(status(500), status(502)), again, backoff=1.0, retries=3).logits(x)
    assert again == waits  # the jitter is seeded


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_seconds_is_honoured_and_capped(code: int) -> None:
    waits: list[float] = []
    endpoint = Endpoint(status(code, {"Retry-After": "7"}), status(code, {"Retry-After": "120"}))
    make(endpoint, waits, max_wait=30.0).logits(inputs(2))
    assert waits == [7.0, 30.0]


def test_retry_after_http_date_is_read_against_the_clock() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 12, usegmt=True)
    waits: list[float] = []
    make(Endpoint(status(503, {"Retry-After": date})), waits, clock=lambda: now).logits(inputs(2))
    assert waits == [12.0]


@pytest.mark.parametrize(
    ("header", "expected"),
    [("5", 5.0), (" 1.5 ", 1.5), ("0", 0.0), ("-3", None), ("soon", None), (None, None), ("nan", None)],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=0.0) == expected


def test_parse_retry_after_date_in_the_past_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=2_000_000_000.0) == 0.0


def test_always_failing_endpoint_raises_naming_url_status_and_attempts() -> None:
    waits: list[float] = []
    endpoint = Endpoint(ok=status(500))
    with pytest.raises(RemoteModelError, match=r"http://model\.test/v1/predict failed after 3 attempts: HTTP 500"):
        make(endpoint, waits).logits(inputs(2))
    assert len(endpoint.requests) == 3 and len(waits) == 2


def test_client_errors_are_not_retried() -> None:
    endpoint = Endpoint(ok=status(401))
    with pytest.raises(RemoteModelError, match=r"after 1 attempt: HTTP 401 Unauthorized"):
        make(endpoint).logits(inputs(2))
    assert len(endpoint.requests) == 1


def test_connection_errors_are_retried_once_the_endpoint_has_answered() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    waits: list[float] = []
    model = make(Endpoint(refused, ok=refused), waits)
    with pytest.raises(RemoteModelError, match="after 1 attempt: cannot connect"):
        model.logits(inputs(1))
    model = make(Endpoint(json_scores, refused), waits)
    model.logits(inputs(1))
    model.logits(inputs(1))  # refused once, then answered
    assert len(waits) == 1


def test_timeouts_are_retried_then_reported() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    waits: list[float] = []
    with pytest.raises(RemoteModelError, match=r"after 3 attempts: timed out after 2 s"):
        make(Endpoint(ok=timeout), waits, timeout=2.0).logits(inputs(2))
    assert len(waits) == 2


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (lambda r: httpx.Response(200, content=b"{not json"), "malformed JSON"),
        (lambda r: httpx.Response(200, json={"outputs": [[0.1, 0.9]] * 2}), "wrong number of classes: expected 3"),
        (lambda r: httpx.Response(200, json={"outputs": [[0.1, 0.2, 0.7]]}), r"expected scores of shape \(2, 3\)"),
        (lambda r: httpx.Response(200, json={"other": 1}), "the response has no field 'outputs'"),
        (lambda r: httpx.Response(200, json={"outputs": [["a", "b", "c"]] * 2}), "rows of 3 numbers"),
    ],
)
def test_bad_answers_are_retried_then_reported(answer: Handler, reason: str) -> None:
    endpoint = Endpoint(ok=answer)
    with pytest.raises(RemoteModelError, match=reason):
        make(endpoint, []).logits(inputs(2))
    assert len(endpoint.requests) == 3


def test_a_bad_answer_then_a_good_one_succeeds() -> None:
    x = inputs(2)
    endpoint = Endpoint(lambda r: httpx.Response(200, content=b"<html>"))
    torch.testing.assert_close(make(endpoint, []).logits(x), x)


def test_scores_beyond_float_range_are_a_bad_answer() -> None:
    huge = json.dumps({"outputs": [[10**400, 0, 0]] * 2}).encode()  # found by bastion fuzz --pipeline
    endpoint = Endpoint(ok=lambda r: httpx.Response(200, content=huge))
    with pytest.raises(RemoteModelError, match="rows of 3 numbers"):
        make(endpoint, []).logits(inputs(2))


@pytest.mark.parametrize("body", [b'{"labels": [0.0, Infinity]}', b'{"labels": [NaN, 1]}', b'{"labels": [1.5, 1]}'])
def test_non_integer_labels_are_a_bad_answer(body: bytes) -> None:
    endpoint = Endpoint(ok=lambda r: httpx.Response(200, content=body))
    with pytest.raises(RemoteModelError, match="expected integer labels"):
        make(endpoint, [], knowledge="labels", response_field="labels").logits(inputs(2))


def test_malformed_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="malformed URL"):
        make(Endpoint(), url="http://[x/p")
    assert safe_url("http://[x/p") == "<malformed URL>"


def test_labels_outside_the_classes_are_a_wrong_class_count() -> None:
    answer = Endpoint(ok=lambda r: httpx.Response(200, json={"labels": [1, 9]}))
    with pytest.raises(RemoteModelError, match=r"label 9 is outside 0\.\.2"):
        make(answer, [], knowledge="labels", response_field="labels").logits(inputs(2))


# -- the budget ---------------------------------------------------------------------------------


def test_budget_refuses_before_sending() -> None:
    endpoint = Endpoint()
    model = make(endpoint, query_budget=10, batch_size=4)
    model.logits(inputs(8))
    with pytest.raises(BudgetExhaustedError, match=r"query budget of 10 rows .* exhausted: 8 sent, 3 more needed"):
        model.logits(inputs(3))
    assert endpoint.rows == 8 and model.budget_left == 2 and model.queries.forward == 8
    model.logits(inputs(2))
    assert endpoint.rows == 10 and model.budget_left == 0


def test_retries_stop_at_the_budget() -> None:
    endpoint = Endpoint(ok=status(500))
    model = make(endpoint, [], query_budget=5, retries=5)
    with pytest.raises(BudgetExhaustedError):
        model.logits(inputs(2))
    assert endpoint.rows == 4 == model.rows_sent


@pytest.mark.parametrize("seed", range(5))
def test_budget_is_never_exceeded_under_random_failures(seed: int) -> None:
    rng = np.random.default_rng(seed)
    failures = [status(503) if rng.random() < 0.4 else json_scores for _ in range(200)]
    endpoint = Endpoint(*failures)
    model = make(endpoint, [], query_budget=37, batch_size=3, max_concurrency=3, retries=2)
    for _ in range(20):
        with contextlib.suppress(BudgetExhaustedError, RemoteModelError):
            model.logits(inputs(int(rng.integers(1, 9))))
        assert endpoint.rows <= 37 and endpoint.rows == model.rows_sent


# -- headers, URLs, configuration ---------------------------------------------------------------


def test_auth_header_is_sent_but_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    endpoint = Endpoint(status(503))
    model = make(endpoint, [], headers={"Authorization": SECRET})
    with caplog.at_level(logging.DEBUG):
        model.logits(inputs(2))
    assert all(r.headers["authorization"] == SECRET for r in endpoint.requests)
    assert SECRET not in repr(model) and SECRET not in repr(model.config)
    assert "s3cret" not in caplog.text and "retry 1 of 2" in caplog.text
    with pytest.raises(RemoteModelError) as error:
        make(Endpoint(ok=status(500)), [], headers={"Authorization": SECRET}).logits(inputs(1))
    assert "s3cret" not in str(error.value)


def test_name_hides_credentials_and_query() -> None:
    model = make(Endpoint(), url="https://user:pw@api.test:8443/v1/m?key=abc#x")
    assert model.name == "https://api.test:8443/v1/m" == safe_url(model.config.url)


@pytest.mark.parametrize(
    "url", ["ftp://model.test/x", "model.test:8000/predict", "http:///nohost", "file:///etc/passwd"]
)
def test_urls_that_are_not_http_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match=r"expected an http:// or https:// URL"):
        make(Endpoint(), url=url)


def test_unreachable_host_is_a_clear_error() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = RemoteConfig(url=f"http://127.0.0.1:{port}/predict", num_classes=3, input_shape=(3,), retries=1)
    model = RemoteClassifier(config, sleep=lambda s: None)
    expected = rf"http://127\.0\.0\.1:{port}/predict failed after 1 attempt: cannot connect to the host"
    with model, pytest.raises(RemoteModelError, match=expected):
        model.logits(inputs(1))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"knowledge": "white-box"}, "expected knowledge scores or labels"),
        ({"request_mode": "grpc"}, "expected request mode one of json, image, got 'grpc'"),
        ({"batch_size": 0}, "expected batch_size >= 1, got 0"),
        ({"max_concurrency": 0}, "expected max_concurrency >= 1"),
        ({"retries": -1}, "expected retries >= 0"),
        ({"timeout": 0.0}, "expected timeout > 0"),
        ({"query_budget": 0}, "expected query_budget >= 1"),
        ({"num_classes": 1}, "expected num_classes >= 2"),
        ({"bounds": (1.0, 0.0)}, "low < high"),
        ({"request_field": "a..b"}, "dotted request field path"),
        ({"request_field": "a.*"}, "without '\\*'"),
        ({"request_mode": "image"}, r"image mode sends .* got input shape \(3,\)"),
        ({"input_shape": (2, 4, 4), "request_mode": "image"}, "image mode sends"),
    ],
)
def test_bad_configuration_is_refused_by_name(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make(Endpoint(), **options)


def test_config_is_a_frozen_value() -> None:
    config = RemoteConfig(url=URL, num_classes=3, input_shape=(3,))
    assert replace(config, batch_size=8).batch_size == 8
    with pytest.raises(AttributeError):
        config.batch_size = 8  # type: ignore[misc]
