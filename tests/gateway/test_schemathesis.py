"""schemathesis over the gateway's OpenAPI document, on a real uvicorn server: no 5xx, every refusal in the error shape.

For each operation the document describes, schemathesis generates requests that fit the schema
(positive) and requests that break it (negative); each is sent with a key, so that the generated
bodies and parameters reach the guards behind authentication. Every answer must be below 500, a
4xx must read ``{"error": {"code": str, "detail": str}}``, and every answer must be as documented:
a status the operation lists, with the listed media type and schema. Generation is derandomised
(the same cases every run) and bounded per operation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from gateway_live import Served, running
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from requests.structures import CaseInsensitiveDict
from schemathesis import Case, GenerationMode, Response
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bastion.gateway import Gateway, load_config
from bastion.gateway.openapi import ROUTES

ADMIN_EXAMPLES = 30  # per operation and generation mode
CLIENT_EXAMPLES = 15
OPERATIONS = sorted({"GET /v1/health"} | {f"{route.method} {route.path}" for route in ROUTES})
CLIENT_OPERATIONS = ["POST /v1/predict", "POST /v1/feedback", "POST /v1/submissions"]
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
# Health takes no parameters, no body and no key: a request that breaks its schema does not exist.
ADMIN_CASES = [
    (label, mode) for label in OPERATIONS for mode in MODES if (label, mode) != ("GET /v1/health", "negative")
]
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Every guard on; a rate limit generous enough that the generated burst is never refused for its pace."""
    db = tmp_path_factory.mktemp("schemathesis") / "gateway.db"
    settings = {"model.source": "demo:digits", "store.url": f"sqlite:///{db}", "rate_limit.per_key": ["100000/second"]}
    with running(Gateway.build(load_config(None, environ={}, overrides=settings))) as served:
        yield served


@pytest.fixture(scope="module")
def schema(live: Served) -> BaseSchema:
    """The document as the gateway serves it (to any key) at /v1/openapi.json."""
    with live.client("admin") as admin:
        answer = admin.get("/v1/openapi.json")
    assert answer.status_code == 200, answer.text
    return schemathesis.openapi.from_dict(answer.json(), config=SchemathesisConfig())


def operation(schema: BaseSchema, label: str) -> APIOperation:
    found = schema.find_operation_by_label(label)
    assert found is not None, f"{label} is missing from the OpenAPI document"
    return found


def problem_of(case: Case, response: Response) -> str | None:
    """Why this answer is wrong, or None: a 5xx, a refusal not in the error shape, or not as documented.

    "As documented": the status is one the operation lists, and the body has the listed media
    type and matches the listed schema (schemathesis' own conformance checks).
    """
    if response.status_code >= 500:
        return f"{response.status_code}: {response.text[:300]}"
    if response.status_code >= 400 and not has_error_shape(response):
        return f"{response.status_code} not in the error shape: {response.text[:300]}"
    try:
        case.validate_response(response, checks=CONFORMANCE)
    except (AssertionError, FailureGroup) as failure:
        return f"{response.status_code} not as documented: {str(failure)[:400]}"
    return None


def has_error_shape(response: Response) -> bool:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error, dict) and isinstance(error.get("code"), str) and isinstance(error.get("detail"), str)


def exercise(live: Served, op: APIOperation, mode: GenerationMode, role: str, examples: int) -> Counter[int]:
    """Send the generated cases with ``role``'s key; fail listing every wrong answer (none shrunk, all shown)."""
    statuses: Counter[int] = Counter()
    problems: dict[str, str] = {}
    auth = {"Authorization": f"Bearer {live.keys[role]}"}

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def send(case: Case) -> None:
        # A negative case may leave the key out; set anew (not updated in place, which schemathesis would
        # not notice), the key takes the generated case past authentication to the guards behind it.
        case.headers = CaseInsensitiveDict({**case.headers, **auth})
        response = case.call(base_url=live.url, timeout=30)
        statuses[response.status_code] += 1
        problem = problem_of(case, response)
        if problem is not None:
            problems.setdefault(problem[:120], f"{problem}\n  {case.as_curl_command(auth)}")

    send()
    assert not problems, "\n".join(problems.values())
    assert statuses, f"no case was generated for {op.label}"
    return statuses


def test_the_document_lists_exactly_the_gateways_routes(schema: BaseSchema) -> None:
    paths = schema.raw_schema["paths"]
    assert sorted(f"{method.upper()} {path}" for path, item in paths.items() for method in item) == OPERATIONS


def test_the_operations_documented_as_keyed_refuse_a_request_without_a_key(live: Served, schema: BaseSchema) -> None:
    document = schema.raw_schema
    for label in OPERATIONS:
        method, path = label.split(" ", 1)
        needs_key = document["paths"][path][method.lower()].get("security", document["security"]) != []
        url = live.url + path.replace("{kind}", "flags").replace("{item_id}", "0" * 32)
        answer = httpx.request(method, url)
        assert (answer.status_code == 401) is needs_key, (label, answer.status_code)


@pytest.mark.parametrize(("label", "mode"), ADMIN_CASES, ids=str)
def test_an_admin_never_gets_a_5xx(live: Served, schema: BaseSchema, label: str, mode: GenerationMode) -> None:
    statuses = exercise(live, operation(schema, label), mode, "admin", ADMIN_EXAMPLES)
    assert statuses[401] == 0, "every case carried a valid admin key"
    assert statuses[403] == 0, "an admin may call every operation"


@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("label", CLIENT_OPERATIONS)
def test_a_client_never_gets_a_5xx(live: Served, schema: BaseSchema, label: str, mode: GenerationMode) -> None:
    statuses = exercise(live, operation(schema, label), mode, "client", CLIENT_EXAMPLES)
    assert statuses[401] == statuses[403] == 0


def test_the_gateway_still_serves_after_the_fuzzing(live: Served, schema: BaseSchema) -> None:
    with live.client("client") as client:
        answer = client.post("/v1/predict", json={"inputs": [[[0.5] * 8] * 8]})
    assert answer.status_code == 200, answer.text
    assert httpx.get(f"{live.url}/v1/health").json()["status"] == "ok"
    assert answer.json()["labels"][0] in range(10)
