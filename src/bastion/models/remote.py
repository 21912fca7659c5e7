"""Remote adapter: a classifier behind an HTTP endpoint that answers with scores or labels, under a hard query budget.

Two counts are kept, because they answer different questions:

* ``queries.forward`` counts the rows the attack asked for, once each, as every adapter does;
  it is what the attack's per-example ledger adds up to.
* ``rows_sent`` counts the rows the endpoint saw, every attempt included (a retried request
  counts again, whether or not the endpoint answered). The hard ``query_budget`` caps this
  count: a request that would go over it is never sent; :class:`BudgetExhaustedError` is
  raised instead.

Example::

    model = RemoteClassifier(RemoteConfig(
        url="https://api.example.com/v1/classify", num_classes=10, input_shape=(1, 28, 28),
        headers={"Authorization": "Bearer ..."}, query_budget=10_000,
    ))
    labels = model.logits(x).argmax(dim=1)
"""

from __future__ import annotations

import contextlib
import email.utils
import io
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from bastion.errors import BudgetExhaustedError, ConfigError, DataError, RemoteModelError
from bastion.models.interface import Knowledge, QueryCounter

__all__ = ["RemoteClassifier", "RemoteConfig", "encode_png", "parse_retry_after", "safe_url"]

logger = logging.getLogger(__name__)

REQUEST_MODES = ("json", "image")
# Statuses whose Retry-After header says how long to wait before the next attempt.
RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True, kw_only=True)
class RemoteConfig:
    """How to reach the endpoint and read its answers; checked when a :class:`RemoteClassifier` is built.

    Field paths are dotted (``data.instances``); in ``response_field`` a ``*`` maps over a list
    (``predictions.*.scores``) and a number indexes one.
    """

    url: str  # http:// or https://; keep secrets in headers, not in the URL
    num_classes: int
    input_shape: tuple[int, ...]  # one input, without the batch axis
    knowledge: str = "scores"  # what the endpoint returns: scores (one row per input) or labels
    bounds: tuple[float, float] = (0.0, 1.0)
    request_mode: str = "json"  # json: the batch as a nested array; image: one multipart PNG per input
    request_field: str = "inputs"  # json: dotted path of the array in the body; image: the form field's name
    response_field: str = "outputs"  # dotted path to the scores rows, or to the labels (e.g. "label")
    batch_size: int = 32  # inputs per JSON request (image mode sends one input per request)
    max_concurrency: int = 4  # requests in flight at once
    timeout: float = 30.0  # seconds for each request
    retries: int = 3  # further attempts after a failed one
    backoff: float = 0.5  # seconds: attempt k waits backoff * 2**k, jittered to 50-100 %
    max_wait: float = 60.0  # cap on any wait, a server's Retry-After included
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # e.g. Authorization; never logged
    query_budget: int | None = None  # hard cap on rows sent to the endpoint, retries included
    seed: int = 0  # seeds the backoff jitter


class _BadResponse(Exception):
    """An answer the adapter cannot use (internal: becomes a retry, then a RemoteModelError)."""


@dataclass(frozen=True)
class _Failure:
    status: int | None
    reason: str
    retryable: bool
    retry_after: float | None = None


class _Budget:
    """Rows and requests sent so far, against an optional hard limit; safe across threads."""

    def __init__(self, limit: int | None, where: str) -> None:
        self.limit = limit
        self.where = where
        self.rows = 0
        self.requests = 0
        self._lock = threading.Lock()

    def require(self, rows: int) -> None:
        """Refuse now if ``rows`` more would not fit."""
        with self._lock:
            self._check(rows)

    def take(self, rows: int) -> None:
        """Charge one request of ``rows`` rows, or raise without charging if it would not fit."""
        with self._lock:
            self._check(rows)
            self.rows += rows
            self.requests += 1

    def _check(self, rows: int) -> None:
        if self.limit is not None and self.rows + rows > self.limit:
            raise BudgetExhaustedError(
                f"query budget of {self.limit} rows for {self.where} exhausted: {self.rows} sent, {rows} more needed"
            )


class RemoteClassifier:
    """A :class:`~bastion.models.interface.Classifier` whose forward pass is an HTTP request.

    ``transport`` replaces httpx's network transport (``httpx.MockTransport`` in tests);
    ``sleep`` and ``clock`` replace ``time.sleep`` and ``time.time`` for the waits between
    attempts. Scores models return the endpoint's scores; labels models return one-hot rows.
    """

    def __init__(
        self,
        config: RemoteConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _validate(config)
        self.config = config
        self.knowledge = Knowledge(config.knowledge)
        self.input_shape = tuple(int(d) for d in config.input_shape)
        self.num_classes = int(config.num_classes)
        self.bounds = (float(config.bounds[0]), float(config.bounds[1]))
        self.device = torch.device("cpu")
        self.name = safe_url(config.url)
        self.queries = QueryCounter()
        self._budget = _Budget(config.query_budget, self.name)
        self._sleep = sleep
        self._clock = clock
        self._rng = random.Random(config.seed)
        self._rng_lock = threading.Lock()
        # Until the endpoint has answered once, a refused connection is a wrong URL, not a hiccup: no retries.
        self._reached = False
        self._client = httpx.Client(
            transport=transport,
            timeout=config.timeout,
            headers=dict(config.headers),
            limits=httpx.Limits(max_connections=config.max_concurrency),
        )

    @property
    def rows_sent(self) -> int:
        """Rows the endpoint was sent, every attempt included: what the query budget caps."""
        return self._budget.rows

    @property
    def requests_sent(self) -> int:
        return self._budget.requests

    @property
    def budget_left(self) -> int | None:
        """Rows that may still be sent, or None without a budget."""
        return None if self._budget.limit is None else self._budget.limit - self._budget.rows

    def logits(self, x: Tensor) -> Tensor:
        """Scores (or one-hot labels) for ``x``, sent in requests of ``batch_size`` rows, several at once."""
        rows = self._check_input(x)
        if rows == 0:
            return torch.zeros((0, self.num_classes), device=x.device)
        self._budget.require(rows)
        self.queries.forward += rows
        cpu = x.detach().to("cpu", torch.float32)
        size = 1 if self.config.request_mode == "image" else self.config.batch_size
        chunks = [cpu[start : start + size] for start in range(0, rows, size)]
        return torch.cat(self._map(chunks)).to(x.device)

    def inference(self) -> contextlib.AbstractContextManager[None]:
        """Nothing to switch: the endpoint runs as deployed."""
        return contextlib.nullcontext()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> RemoteClassifier:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:  # the headers stay out: they may hold credentials
        return (
            f"RemoteClassifier({self.name!r}, knowledge={self.knowledge.value}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, bounds={self.bounds}, query_budget={self.config.query_budget})"
        )

    def _check_input(self, x: Tensor) -> int:
        if x.dim() != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise DataError(
                f"expected inputs of shape (n, {', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}"
            )
        return int(x.shape[0])

    def _map(self, chunks: list[Tensor]) -> list[Tensor]:
        workers = min(self.config.max_concurrency, len(chunks))
        if workers == 1:
            return [self._send(chunk) for chunk in chunks]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bastion-remote") as pool:
            futures = [pool.submit(self._send, chunk) for chunk in chunks]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:  # requests not yet started are not sent
                    future.cancel()
                raise

    def _send(self, chunk: Tensor) -> Tensor:
        """One chunk's answer, retrying failures; the budget is charged before every attempt."""
        rows = int(chunk.shape[0])
        attempts = self.config.retries + 1
        attempt = 1
        while True:
            self._budget.take(rows)
            outcome = self._attempt(chunk)
            if isinstance(outcome, Tensor):
                return outcome
            if not outcome.retryable or attempt == attempts:
                raise RemoteModelError(
                    f"{self.name} failed after {attempt} attempt{'s' if attempt > 1 else ''}: {outcome.reason}"
                )
            wait = self._wait(outcome, attempt - 1)
            logger.info("%s: %s; retry %d of %d in %.2f s", self.name, outcome.reason, attempt, attempts - 1, wait)
            self._sleep(wait)
            attempt += 1

    def _attempt(self, chunk: Tensor) -> Tensor | _Failure:
        try:
            response = self._post(chunk)
        except httpx.TimeoutException:
            return _Failure(None, f"timed out after {self.config.timeout:g} s", retryable=True)
        except httpx.ConnectError as exc:
            return _Failure(None, f"cannot connect to the host ({exc})", retryable=self._reached)
        except httpx.TransportError as exc:
            return _Failure(None, f"{type(exc).__name__}: {exc}", retryable=True)
        self._reached = True
        return self._read(response, int(chunk.shape[0]))

    def _post(self, chunk: Tensor) -> httpx.Response:
        path = self.config.request_field
        if self.config.request_mode == "image":
            upload = ("input.png", encode_png(chunk[0], self.bounds), "image/png")
            return self._client.post(self.config.url, files={path: upload})
        return self._client.post(self.config.url, json=_nest(path.split("."), chunk.tolist()))

    def _read(self, response: httpx.Response, rows: int) -> Tensor | _Failure:
        status = response.status_code
        if not response.is_success:
            header = response.headers.get("Retry-After") if status in RETRY_AFTER_STATUSES else None
            wait = parse_retry_after(header, self._clock())
            reason = f"HTTP {status} {response.reason_phrase}".rstrip()
            return _Failure(status, reason, retryable=status == 429 or status >= 500, retry_after=wait)
        try:
            body = response.json()
        except ValueError:
            return _Failure(status, "malformed JSON in the response", retryable=True)
        try:
            return self._decode(body, rows)
        except _BadResponse as exc:
            return _Failure(status, str(exc), retryable=True)

    def _decode(self, body: Any, rows: int) -> Tensor:
        value = extract(body, self.config.response_field.split("."))
        single = self.config.request_mode == "image"
        if self.knowledge is Knowledge.LABELS:
            labels = [value] if single and not isinstance(value, list) else value
            return F.one_hot(_labels(labels, rows, self.num_classes), self.num_classes).float()
        scores = [value] if single and isinstance(value, list) and not _is_nested(value) else value
        return _scores(scores, rows, self.num_classes)

    def _wait(self, failure: _Failure, attempt: int) -> float:
        if failure.retry_after is not None:
            return min(failure.retry_after, self.config.max_wait)
        with self._rng_lock:
            jitter = 0.5 + self._rng.random() / 2
        return min(self.config.backoff * 2.0**attempt * jitter, self.config.max_wait)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delay in seconds or an HTTP date); None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until(text, now)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _seconds_until(date: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def safe_url(url: str) -> str:
    """``url`` without credentials, query or fragment, fit for logs and reports."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket: show nothing of it rather than fail
        return "<malformed URL>"
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def encode_png(x: Tensor, bounds: tuple[float, float]) -> bytes:
    """One input of shape (H, W), (1, H, W) or (3, H, W) as 8-bit PNG bytes, ``bounds`` mapped to 0..255."""
    lo, hi = bounds
    pixels = ((x.detach().cpu().float().clamp(lo, hi) - lo) / (hi - lo) * 255).round().to(torch.uint8).numpy()
    if pixels.ndim == 3:
        pixels = pixels[0] if pixels.shape[0] == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def extract(value: Any, path: Sequence[str]) -> Any:
    """The part of a parsed JSON ``value`` at ``path``; ``*`` maps over a list, a number indexes one."""
    for i, part in enumerate(path):
        if part == "*":
            if not isinstance(value, list):
                raise _BadResponse(f"expected a list at {'.'.join(path[:i]) or 'the top'} of the response")
            return [extract(item, path[i + 1 :]) for item in value]
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise _BadResponse(f"the response has no field {'.'.join(path[: i + 1])!r}")
    return value


def _nest(path: Sequence[str], payload: Any) -> Any:
    for part in reversed(path):
        payload = {part: payload}
    return payload


def _is_nested(value: list[Any]) -> bool:
    return bool(value) and isinstance(value[0], list)


def _scores(value: Any, rows: int, classes: int) -> Tensor:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: an integer too large for a float
        raise _BadResponse(f"expected {rows} rows of {classes} numbers, got something else ({exc})") from exc
    if array.ndim != 2 or array.shape[0] != rows:
        raise _BadResponse(f"expected scores of shape ({rows}, {classes}), got shape {array.shape}")
    if array.shape[1] != classes:
        raise _BadResponse(f"wrong number of classes: expected {classes} scores per row, got {array.shape[1]}")
    if not np.isfinite(array).all():
        raise _BadResponse("the scores hold NaN or infinity")
    return torch.from_numpy(array).float()


def _is_whole(number: int | float) -> bool:
    """An int, or a finite float without a fractional part (NaN and infinity have no integer value)."""
    return isinstance(number, int) or (math.isfinite(number) and number == int(number))


def _labels(value: Any, rows: int, classes: int) -> Tensor:
    if not isinstance(value, list) or len(value) != rows:
        got = f"{len(value)} items" if isinstance(value, list) else type(value).__name__
        raise _BadResponse(f"expected {rows} labels, got {got}")
    labels = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not _is_whole(item):
            raise _BadResponse(f"expected integer labels, got {item!r}")
        if not 0 <= int(item) < classes:
            raise _BadResponse(f"wrong number of classes: label {int(item)} is outside 0..{classes - 1}")
        labels.append(int(item))
    return torch.tensor(labels, dtype=torch.int64)


def _validate(config: RemoteConfig) -> None:
    """Refuse a configuration that cannot work, naming the value and the choices."""
    _validate_url(config.url)
    if config.knowledge not in (Knowledge.SCORES.value, Knowledge.LABELS.value):
        raise ConfigError(f"expected knowledge scores or labels for a remote model, got {config.knowledge!r}")
    if config.request_mode not in REQUEST_MODES:
        raise ConfigError(f"expected request mode one of {', '.join(REQUEST_MODES)}, got {config.request_mode!r}")
    _validate_shape(config)
    _validate_fields(config)
    _validate_numbers(config)
    for key, value in config.headers.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise ConfigError(f"expected headers as non-empty text names and text values, got a {key!r} header")


def _validate_url(url: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"expected an http:// or https:// URL with a host, got a malformed URL ({exc})") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"expected an http:// or https:// URL with a host, got {safe_url(url)!r}")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ConfigError(f"the URL {safe_url(url)!r} has an invalid port: {exc}") from exc


def _validate_shape(config: RemoteConfig) -> None:
    shape = tuple(config.input_shape)
    if not shape or any(int(d) < 1 for d in shape):
        raise ConfigError(f"expected an input shape of positive sizes, got {shape}")
    if config.request_mode == "image" and not (len(shape) == 2 or (len(shape) == 3 and shape[0] in (1, 3))):
        raise ConfigError(f"image mode sends (H, W), (1, H, W) or (3, H, W) inputs as PNG, got input shape {shape}")
    if config.num_classes < 2:
        raise ConfigError(f"expected num_classes >= 2, got {config.num_classes}")
    if not float(config.bounds[0]) < float(config.bounds[1]):
        raise ConfigError(f"expected bounds (low, high) with low < high, got {tuple(config.bounds)}")


def _validate_fields(config: RemoteConfig) -> None:
    request = config.request_field.split(".")
    if any(not part or part == "*" for part in request):
        raise ConfigError(f"expected a dotted request field path without '*', got {config.request_field!r}")
    if config.request_mode == "image" and len(request) != 1:
        raise ConfigError(f"image mode takes a plain form field name, got {config.request_field!r}")
    if any(not part for part in config.response_field.split(".")):
        raise ConfigError(f"expected a dotted response field path, got {config.response_field!r}")


def _validate_numbers(config: RemoteConfig) -> None:
    checks: list[tuple[str, float, float]] = [
        ("batch_size", config.batch_size, 1),
        ("max_concurrency", config.max_concurrency, 1),
        ("retries", config.retries, 0),
        ("backoff", config.backoff, 0),
        ("max_wait", config.max_wait, 0),
    ]
    if config.query_budget is not None:
        checks.append(("query_budget", config.query_budget, 1))
    for name, value, low in checks:
        if not value >= low:
            raise ConfigError(f"expected {name} >= {low}, got {value}")
    if not config.timeout > 0:
        raise ConfigError(f"expected timeout > 0 seconds, got {config.timeout}")
