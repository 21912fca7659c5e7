"""fuzz_gateway against a real gateway served by uvicorn on loopback: healthy, planted with a 500, and unreachable."""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from torch import Tensor, nn

from bastion.errors import ConfigError, RemoteModelError
from bastion.fuzz import fuzz_gateway
from bastion.gateway import Gateway, create_app, load_config
from bastion.gateway.keys import Role
from bastion.models import TorchClassifier

# No monitors (they need calibration data) and a rate limit the burst never meets; the rest as deployed.
GUARDS = ["error_boundary", "audit", "auth", "rate_limit", "size_limit", "validation", "model", "output_policy"]


class FailsOnDarkInputs(nn.Module):
    """A model planted with a fault: it raises on a dark input (mean below 0.25), which the gateway answers with 500."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        if bool((x.flatten(1).mean(dim=1) < 0.25).any()):
            raise RuntimeError("planted fault")
        return self.linear(x.flatten(1))


class SlowOnDarkInputs(FailsOnDarkInputs):
    """A model planted with a stall: it takes 4 s on a dark input."""

    def forward(self, x: Tensor) -> Tensor:
        if bool((x.flatten(1).mean(dim=1) < 0.25).any()):
            time.sleep(4.0)
        return self.linear(x.flatten(1))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(model: TorchClassifier, db: Path) -> Iterator[tuple[str, str]]:
    """The gateway on ``model`` served on a free loopback port; yields its URL and an admin key."""
    settings = {"store.url": f"sqlite:///{db}", "rate_limit.per_key": ["100000/second"], "guards": GUARDS}
    gateway = Gateway.build(load_config(None, environ={}, overrides=settings), model=model)
    key = gateway.store.create_key(Role.ADMIN, "fuzzer")[0]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(gateway), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", key
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        gateway.close()


def test_a_healthy_gateway_yields_no_findings(tmp_path: Path) -> None:
    module = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    model = TorchClassifier(module, input_shape=(1, 8, 8), bounds=(0.0, 1.0), name="linear")
    with serving(model, tmp_path / "gateway.db") as (url, key):
        with pytest.raises(ConfigError, match=r"refused its OpenAPI document \(HTTP 401\); expected a valid API key"):
            fuzz_gateway(url, max_examples=1)
        result = fuzz_gateway(url, api_key=key, max_examples=4, seed=0, out_dir=tmp_path / "out")
        cut = fuzz_gateway(url, api_key=key, max_examples=200, seed=0, time_limit_s=0.3)
    # The time limit stops the run; the operations not fuzzed to the end are named, in order, the last ones.
    assert cut.skipped and cut.skipped == cut.targets[len(cut.targets) - len(cut.skipped) :]
    assert "POST /v1/predict" in result.targets and "GET /v1/audit" in result.targets
    assert result.inputs_tried >= 2 * len(result.targets)
    assert result.findings == (), [f"{f.kind} {f.target}: {f.message}\n{f.reproducer}" for f in result.findings]
    assert not (tmp_path / "out").exists()


def test_a_planted_server_error_is_found_with_a_curl_reproducer(tmp_path: Path) -> None:
    model = TorchClassifier(
        FailsOnDarkInputs().eval(), input_shape=(1, 2, 2), bounds=(0.0, 1.0), num_classes=3, name="planted"
    )
    with serving(model, tmp_path / "gateway.db") as (url, key):
        result = fuzz_gateway(url, api_key=key, max_examples=6, seed=0, out_dir=tmp_path / "out")
        errors = [f for f in result.findings if f.kind == "server-error"]
        assert [f.target for f in errors] == ["POST /v1/predict"], result.findings
        (error,) = errors
        assert error.message.startswith("HTTP 500")
        assert "model_error" in error.message
        command = shlex.split(error.reproducer)
        assert command[:3] == ["curl", "-X", "POST"]
        assert "Authorization: Bearer $BASTION_API_KEY" in command
        assert key not in error.reproducer
        # The saved request, sent again with the key, meets the same fault; so does the curl command.
        assert error.reproducer_path is not None
        request = json.loads(Path(error.reproducer_path).read_text())
        assert key not in json.dumps(request)
        headers = {**request["headers"], "Authorization": f"Bearer {key}"}
        body = base64.b64decode(request["body_base64"])
        answer = httpx.request(request["method"], request["url"], content=body, headers=headers)
        assert answer.status_code == 500
        assert answer.json()["error"]["code"] == "model_error"
        if shutil.which("curl") is not None:
            status = subprocess.run(
                ["bash", "-c", f"{error.reproducer} -s -o /dev/null -w '%{{http_code}}'"],
                env={**os.environ, "BASTION_API_KEY": key},
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert status.stdout == "500", status


def test_a_request_that_outlasts_the_timeout_is_a_hang(tmp_path: Path) -> None:
    model = TorchClassifier(SlowOnDarkInputs().eval(), input_shape=(1, 2, 2), bounds=(0.0, 1.0), num_classes=3)
    with serving(model, tmp_path / "gateway.db") as (url, key):
        # 1.5 s: far above an ordinary answer even on a loaded 2-core machine, far below the stall.
        result = fuzz_gateway(url, api_key=key, max_examples=6, seed=0, request_timeout_s=1.5)
    assert [(f.kind, f.target, f.message) for f in result.findings] == [
        ("hang", "POST /v1/predict", "no answer within 1.5 s")
    ]


def test_an_unreachable_gateway_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RemoteModelError, match=f"the gateway at {url}/v1/openapi.json does not answer"):
        fuzz_gateway(url, max_examples=1, request_timeout_s=2)


@pytest.mark.parametrize(
    ("url", "options", "match"),
    [
        ("127.0.0.1:8000", {}, "expected the gateway's URL as http"),
        ("http://127.0.0.1:1", {"max_examples": 0}, "expected max_examples to be a positive int, got 0"),
        ("http://127.0.0.1:1", {"request_timeout_s": 0}, "expected request_timeout_s to be a positive number"),
    ],
)
def test_bad_options_are_refused(url: str, options: dict[str, int], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        fuzz_gateway(url, **options)  # type: ignore[arg-type]
