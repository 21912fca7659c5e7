"""Fuzzing a running gateway through its OpenAPI document (schemathesis): 5xx, hangs and undocumented answers.

Issue 7, part 3. The gateway's own document (``/v1/openapi.json``) is read once; for every
operation it describes, schemathesis (Hatfield-Dodds and Dygalo, "Deriving semantics-aware fuzzers
from web API schemas", ICSE 2022) generates requests that fit the schema (positive) and requests
that break it (negative), sent with the API key when one is given. A finding is:

* ``server-error``: an answer of 500 or more, or a connection the server dropped;
* ``hang``: no answer within ``request_timeout_s``;
* ``schema``: an answer the document does not allow (its status, media type or body schema).

Requests are not shrunk (each one may change the gateway's state); of the failing requests seen
for one failure (kind, operation, status or check), the shortest is kept. Each request is prepared
once and sent as prepared, so its reproducer, a curl command line, sends exactly the same bytes;
the API key is never written out: the command reads it from ``$BASTION_API_KEY``.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import shlex
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from bastion.errors import ConfigError, RemoteModelError
from bastion.fuzz.pipeline import PipelineFinding, PipelineResult, safe_name

if TYPE_CHECKING:
    import requests
    from schemathesis import Case
    from schemathesis.schemas import APIOperation, BaseSchema

__all__ = ["OPENAPI_PATH", "curl_command", "fuzz_gateway"]

logger = logging.getLogger(__name__)

OPENAPI_PATH = "/v1/openapi.json"
_KEY_PLACEHOLDER = "$BASTION_API_KEY"
_EXCERPT_CHARS = 200
_REQUEST_FIELDS = ("method", "url", "headers", "files", "data", "params", "cookies", "json")
# Headers the HTTP client adds by itself: left out of the reproducer.
_CLIENT_HEADERS = frozenset({"user-agent", "accept-encoding", "accept", "connection", "content-length"})


def fuzz_gateway(
    url: str,
    *,
    api_key: str | None = None,
    max_examples: int = 100,
    seed: int = 0,
    time_limit_s: float | None = None,
    request_timeout_s: float = 10.0,
    out_dir: Path | None = None,
) -> PipelineResult:
    """Send ``max_examples`` generated requests per operation (half positive, half negative) to the gateway at ``url``.

    ``url`` is the gateway's base URL (``http://127.0.0.1:8000``) or the address of its OpenAPI
    document. A URL that does not answer raises :class:`~bastion.errors.RemoteModelError` naming it.
    """
    _check_options(url, max_examples, seed, time_limit_s, request_timeout_s)
    start = time.monotonic()
    base_url, document_url = _urls(url)
    # The document is fetched once and may be built on first request: the probe's timeout does not apply to it.
    schema = _schema(_document(document_url, api_key, max(request_timeout_s, DOCUMENT_TIMEOUT_S)))
    session = _Session(base_url, api_key, request_timeout_s, None if time_limit_s is None else start + time_limit_s)
    operations = _operations(schema)
    with warnings.catch_warnings(), session.http:
        warnings.simplefilter("ignore")  # schemathesis and hypothesis warn about generated data; findings say enough
        for operation in operations:
            _fuzz_operation(session, operation, max_examples, seed)
    findings = _findings(session, out_dir)
    for finding in findings:
        logger.info("%s in %s: %s", finding.kind, finding.target, finding.message)
    labels = tuple(operation.label for operation in operations)
    return PipelineResult(labels, session.sent, tuple(findings), time.monotonic() - start, tuple(session.skipped))


def _check_options(
    url: object, max_examples: object, seed: object, time_limit_s: object, request_timeout_s: object
) -> None:
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise ConfigError(f"expected the gateway's URL as http(s)://host[:port], got {url!r}")
    if not isinstance(max_examples, int) or isinstance(max_examples, bool) or max_examples < 1:
        raise ConfigError(f"expected max_examples to be a positive int, got {max_examples!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"expected seed to be a non-negative int, got {seed!r}")
    for name, value in (("time_limit_s", time_limit_s), ("request_timeout_s", request_timeout_s)):
        if value is None and name == "time_limit_s":
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
            raise ConfigError(f"expected {name} to be a positive number of seconds, got {value!r}")


DOCUMENT_TIMEOUT_S = 30.0  # the least time given to the OpenAPI document


def _urls(url: str) -> tuple[str, str]:
    """The base URL requests go to, and the document's URL."""
    parts = urlsplit(url)
    if parts.path.endswith(".json"):
        return f"{parts.scheme}://{parts.netloc}", url
    base = url.rstrip("/")
    return base, base + OPENAPI_PATH


def _document(document_url: str, api_key: str | None, timeout_s: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        answer = httpx.get(document_url, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as error:
        raise RemoteModelError(
            f"the gateway at {document_url} does not answer ({type(error).__name__}: {error}); "
            "expected a running Bastion gateway"
        ) from None
    if answer.status_code in (401, 403):
        raise ConfigError(
            f"the gateway at {document_url} refused its OpenAPI document (HTTP {answer.status_code}); "
            "expected a valid API key (api_key)"
        )
    try:
        document = answer.json() if answer.status_code == 200 else None
    except ValueError:
        document = None
    if not isinstance(document, dict) or "paths" not in document:
        raise RemoteModelError(
            f"{document_url} answered HTTP {answer.status_code} without an OpenAPI document; "
            "expected a Bastion gateway's /v1/openapi.json"
        )
    return document


def _schema(document: dict[str, Any]) -> BaseSchema:
    import schemathesis
    from schemathesis.config import SchemathesisConfig

    try:
        return schemathesis.openapi.from_dict(document, config=SchemathesisConfig())
    except Exception as error:  # schemathesis refuses documents in several ways; any of them is a bad document
        raise RemoteModelError(f"the gateway's OpenAPI document cannot be read: {error}") from None


def _operations(schema: BaseSchema) -> list[APIOperation[Any, Any, Any, Any]]:
    from schemathesis.core.result import Ok

    found = []
    for result in schema.get_all_operations():
        if isinstance(result, Ok):
            found.append(result.ok())
        else:
            logger.warning("an operation of the OpenAPI document is invalid and skipped: %s", result.err())
    return sorted(found, key=lambda operation: operation.label)


# ---------------------------------------------------------------------------------------------
# Sending the generated requests
# ---------------------------------------------------------------------------------------------


def _http_session() -> requests.Session:
    import requests

    return requests.Session()


class _OutOfTime(BaseException):
    """Ends the search when time_limit_s runs out (hypothesis lets BaseException pass)."""


@dataclass(frozen=True)
class _Failure:
    kind: str
    message: str
    request: dict[str, Any]  # method, url, headers (the key replaced), body text or None, body_base64


@dataclass
class _Session:
    """Sends cases and keeps, per distinct failure, the shortest request that met it."""

    base_url: str
    api_key: str | None
    timeout_s: float
    deadline: float | None
    http: requests.Session = field(default_factory=lambda: _http_session())
    sent: int = 0
    out_of_time: bool = False
    failures: dict[tuple[str, ...], _Failure] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def send(self, case: Case[Any]) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise _OutOfTime
        from requests.structures import CaseInsensitiveDict

        if self.api_key:  # set anew, not updated in place, so that schemathesis sees it
            headers = dict(case.headers or {})
            case.headers = CaseInsensitiveDict({**headers, "Authorization": f"Bearer {self.api_key}"})
        prepared = _prepared(case, self.base_url)  # once: a multipart boundary is drawn at random
        self.sent += 1
        key, kind, message = _judge(case, prepared, self)
        if key:
            self._keep(key, kind, message, prepared)

    def _keep(self, key: tuple[str, ...], kind: str, message: str, prepared: requests.PreparedRequest) -> None:
        request = _request(prepared)
        size = len(json.dumps(request))
        known = self.failures.get(key)
        if known is None or size < len(json.dumps(known.request)):
            self.failures[key] = _Failure(kind, message, request)


def _judge(case: Case[Any], prepared: requests.PreparedRequest, session: _Session) -> tuple[tuple[str, ...], str, str]:
    """(key, kind, message) of the failure this case meets, or ((), "", "") when the answer is fine."""
    import requests
    from schemathesis.core.failures import FailureGroup

    label = case.operation.label
    try:
        response = session.http.send(prepared, timeout=session.timeout_s)
    except requests.Timeout:
        return ("hang", label), "hang", f"no answer within {session.timeout_s:g} s"
    except requests.ConnectionError as error:
        return ("server-error", label, "connection"), "server-error", f"the connection failed: {_one_line(error)}"
    except requests.RequestException as error:  # a request the client refused to send (an invalid header, say)
        logger.debug("%s: request not sent: %r", label, error)
        return (), "", ""
    if response.status_code >= 500:
        message = f"HTTP {response.status_code}: {_one_line(response.text)}"
        return ("server-error", label, str(response.status_code)), "server-error", message
    try:
        case.validate_response(response, checks=_conformance_checks())
    except (AssertionError, FailureGroup) as failure:
        title = _one_line(failure).split(":")[0]
        message = f"HTTP {response.status_code} not as documented: {_one_line(failure)}"
        return ("schema", label, title), "schema", message
    return (), "", ""


def _prepared(case: Case[Any], base_url: str) -> requests.PreparedRequest:
    """The case as the exact request sent: what the reproducer shows is byte for byte what the gateway got."""
    import requests

    sent = case.as_transport_kwargs(base_url=base_url)
    return requests.Request(**{name: value for name, value in sent.items() if name in _REQUEST_FIELDS}).prepare()


def _conformance_checks() -> list[Callable[..., Any]]:
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [status_code_conformance, content_type_conformance, response_schema_conformance]


def _one_line(value: object) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= _EXCERPT_CHARS else text[: _EXCERPT_CHARS - 3] + "..."


def _request(prepared: requests.PreparedRequest) -> dict[str, Any]:
    """The request as JSON: its headers (the key replaced by a placeholder) and its exact body, in base64."""
    headers = {
        name: (f"Bearer {_KEY_PLACEHOLDER}" if name.lower() == "authorization" else value)
        for name, value in prepared.headers.items()
        if name.lower() not in _CLIENT_HEADERS and not name.lower().startswith("x-schemathesis")
    }
    body = prepared.body.encode("utf-8") if isinstance(prepared.body, str) else prepared.body
    if body is not None and not isinstance(body, bytes):  # requests prepares str or bytes; a stream is not sent here
        body = b"".join(part if isinstance(part, bytes) else part.encode("utf-8") for part in body)  # type: ignore[union-attr]
    try:
        text = body.decode("utf-8") if body is not None else None
    except UnicodeDecodeError:
        text = None
    return {
        "method": prepared.method,
        "url": prepared.url,
        "headers": headers,
        "body": text,
        "body_base64": None if body is None else base64.b64encode(body).decode("ascii"),
    }


def curl_command(request: dict[str, Any], body_file: Path | None = None) -> str:
    """A bash command line sending ``request`` with curl; the key comes from ``$BASTION_API_KEY``.

    The body goes inline (ANSI-C quoted, so any byte but NUL is exact) or, from ``body_file``.
    """
    parts = ["curl", "-X", shlex.quote(str(request["method"]))]
    for name, value in request["headers"].items():
        header = f"{name}: {value}"
        parts += ["-H", f'"{header}"' if _KEY_PLACEHOLDER in header else shlex.quote(header)]
    if request["body_base64"] is not None:
        body = base64.b64decode(request["body_base64"])
        parts += ["--data-binary", f"@{shlex.quote(str(body_file))}" if body_file is not None else _ansi_c(body)]
    parts.append(shlex.quote(str(request["url"])))
    return " ".join(parts)


def _ansi_c(data: bytes) -> str:
    """``data`` as a bash ``$'...'`` string (a NUL byte would end it: such bodies go in a file)."""
    plain = set(range(0x20, 0x7F)) - {ord("'"), ord("\\")}
    return "$'" + "".join(chr(b) if b in plain else f"\\x{b:02x}" for b in data) + "'"


def _fuzz_operation(
    session: _Session, operation: APIOperation[Any, Any, Any, Any], max_examples: int, seed: int
) -> None:
    """Positive then negative requests for one operation; a generation error skips that half, logged."""
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as seeded
    from schemathesis import GenerationMode

    halves: list[tuple[GenerationMode, int]] = [
        (GenerationMode.POSITIVE, math.ceil(max_examples / 2)),
        (GenerationMode.NEGATIVE, max_examples // 2),
    ]
    if session.out_of_time:
        session.skipped.append(operation.label)
        return
    for mode, count in halves:
        if count == 0 or session.out_of_time:
            continue

        @seeded(seed)
        @settings(
            max_examples=count,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def send(case: Case[Any]) -> None:
            session.send(case)

        try:
            send()
        except _OutOfTime:
            session.out_of_time = True
            session.skipped.append(operation.label)
        except Exception as error:  # e.g. no request can break a schema that has no parameters
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            logger.debug("%s (%s): no requests generated: %s", operation.label, mode.value, first_line[:200])


def _findings(session: _Session, out_dir: Path | None) -> list[PipelineFinding]:
    """One finding per failure; with ``out_dir``, the request as JSON and a body holding NUL as a file beside it."""
    found = []
    counts: dict[str, int] = {}
    for failure_key, failure in session.failures.items():
        label = failure_key[1]
        counts[label] = counts.get(label, 0) + 1
        path, body_file = None, None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            stem = out_dir / f"{safe_name(label)}-{counts[label]}"
            Path(f"{stem}.json").write_text(json.dumps(failure.request, indent=2), encoding="utf-8")
            path = f"{stem}.json"
            body = base64.b64decode(failure.request["body_base64"] or "")
            if b"\x00" in body:
                body_file = Path(f"{stem}.body")
                body_file.write_bytes(body)
        curl = curl_command(failure.request, body_file)
        found.append(PipelineFinding(failure.kind, label, failure.message, curl, path))
    return found
