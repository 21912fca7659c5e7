"""The gateway checks its manifest at start and refuses to run on a mismatch; no endpoint changes its settings."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import torch
from gateway_live import Served, running, serve_in_thread
from pydantic import ValidationError
from safetensors.torch import save_file

from bastion.audit import sign_config, verify_manifest
from bastion.audit.integrity import KEY_ENV
from bastion.data import load_demo
from bastion.errors import IntegrityError
from bastion.gateway import Gateway, create_app, load_config
from bastion.models.zoo import DigitsCNN

KEY = b"gateway-integrity-key-0123456789"
ONE = load_demo("digits", "test").x[:1].numpy().tolist()
# Every route the gateway serves: a new one must be added here on purpose (and must not change settings).
KNOWN_ROUTES = {
    ("GET", "/v1/health"),
    ("GET", "/review/login"),
    ("POST", "/review/login"),
    ("POST", "/review/logout"),
    ("GET", "/review"),
    ("GET", "/review/submissions/{item_id}/image.png"),
    ("POST", "/review/{kind}/{item_id}"),
    ("POST", "/v1/predict"),
    ("POST", "/v1/feedback"),
    ("POST", "/v1/submissions"),
    ("GET", "/v1/review/{kind}"),
    ("GET", "/v1/review/submissions/{item_id}"),
    ("GET", "/v1/review/submissions/{item_id}/image.png"),
    ("POST", "/v1/review/{kind}/{item_id}"),
    ("GET", "/v1/audit"),
    ("GET", "/metrics"),
    ("GET", "/v1/openapi.json"),
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("BASTION__") or name == KEY_ENV]:
        monkeypatch.delenv(name)


def write_config(folder: Path, integrity: str = "required = true") -> Path:
    """A gateway on a model file (safetensors + the zoo's factory), monitors off, SQLite in ``folder``."""
    torch.manual_seed(0)
    save_file(DigitsCNN().state_dict(), str(folder / "model.safetensors"))
    config = folder / "bastion.toml"
    config.write_text(
        f"""
[model]
source = "{folder / "model.safetensors"}"
factory = "bastion.models.zoo:DigitsCNN"
input_shape = [1, 8, 8]
[store]
url = "sqlite:///{folder / "gateway.db"}"
[rate_limit]
per_key = ["1000/second"]
[monitors.boundary]
enabled = false
[monitors.query]
enabled = false
[output]
client = "label"
[integrity]
{integrity}
""",
        encoding="utf-8",
    )
    return config


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_signed_gateway_starts_and_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path, 'required = true\nkey_file = "key"')
    (tmp_path / "key").write_bytes(KEY)
    sign_config(config, key=KEY)
    gateway = Gateway.build(load_config(config))
    with serve_in_thread(gateway) as url:
        assert httpx.get(f"{url}/v1/health", timeout=10).json()["status"] == "ok"
    monkeypatch.setenv(KEY_ENV, "another-key-of-enough-length")  # the key file wins over the environment
    Gateway.build(load_config(config)).close()


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        (lambda c: c.write_text(c.read_text().replace('client = "label"', 'client = "scores"')), "output.client"),
        (lambda c: (c.parent / "model.safetensors").write_bytes(b"\0" * 16), "file.model.source.sha256"),
    ],
    ids=["config", "model-file"],
)
def test_a_tampered_config_or_model_file_stops_the_gateway(
    tmp_path: Path, tamper: Callable[[Path], object], named: str
) -> None:
    config = write_config(tmp_path)
    sign_config(config)
    tamper(config)
    with pytest.raises(IntegrityError, match=rf"(?s)does not match its manifest .*\n  .*{named}"):
        Gateway.build(load_config(config))


def test_an_environment_override_stops_the_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path)
    sign_config(config)
    monkeypatch.setenv("BASTION__RATE_LIMIT__PER_KEY", '["100000/second"]')
    with pytest.raises(IntegrityError, match=r"effective\.rate_limit\.per_key: expected \[\"1000/second\"\]"):
        Gateway.build(load_config(config))


def test_a_required_manifest_must_exist_and_a_signed_one_needs_its_key(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with pytest.raises(
        IntegrityError, match=r"bastion\.toml\.manifest\.json does not exist and \[integrity\] required"
    ):
        Gateway.build(load_config(config))
    config.write_text(config.read_text().replace("required = true", 'key_file = "key"'))
    (tmp_path / "key").write_bytes(KEY)
    sign_config(config)  # unsigned, while the gateway has a key: a downgrade
    with pytest.raises(IntegrityError, match=r"signature: expected signed \(hmac-sha256\), got unsigned"):
        Gateway.build(load_config(config))


def test_without_integrity_the_gateway_starts_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = write_config(tmp_path, integrity="")
    with caplog.at_level(logging.WARNING, logger="bastion.audit.integrity"):
        Gateway.build(load_config(config)).close()
    assert "is not verified at start" in caplog.text
    config.write_text(config.read_text().replace("[integrity]\n", '[integrity]\nmanifest = "m.json"\n'))
    with caplog.at_level(logging.WARNING, logger="bastion.audit.integrity"):
        Gateway.build(load_config(config)).close()  # named, not required, absent: starts, says so
    assert "m.json does not exist: starting unverified" in caplog.text


def test_bastion_serve_refuses_a_tampered_model_file(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    sign_config(config)
    model = tmp_path / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0x01
    model.write_bytes(bytes(data))
    command = [sys.executable, "-m", "bastion", "serve", "--config", str(config), "--port", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == IntegrityError.exit_code
    assert "does not match its manifest" in done.stderr and "file.model.source.sha256" in done.stderr
    assert "Traceback" not in done.stderr


def exercise_every_route(served: Served) -> None:
    """Call each route once, as the role it is for: the API with keys, the review pages with a session."""
    with served.client("client") as client:
        prediction_id = client.post("/v1/predict", json={"inputs": ONE}).json()["prediction_ids"][0]
        feedback = client.post("/v1/feedback", json={"prediction_id": prediction_id, "correct": False})
        submission = client.post("/v1/submissions", json={"inputs": ONE[0], "label": 3})
    assert (feedback.status_code, submission.status_code) == (202, 202)
    item = f"/v1/review/submissions/{submission.json()['submission_id']}"
    with served.client("admin") as admin:
        for path in ("/v1/review/submissions", "/v1/review/feedback", "/v1/review/flags", item, f"{item}/image.png"):
            assert admin.get(path).status_code == 200, path
        assert admin.post(item, json={"decision": "approve", "reason": "fine"}).status_code == 200
        for path in ("/v1/audit", "/metrics", "/v1/openapi.json", "/v1/health"):
            assert admin.get(path).status_code == 200, path
        # What a settings-changing endpoint would look like is refused: there is none.
        assert admin.post("/v1/config", json={"output": {"client": "scores"}}).status_code == 404
        assert admin.put("/v1/predict", json={}).status_code == 405
    with served.client("pages") as pages:  # no key: a session cookie, as a browser
        assert pages.get("/review/login").status_code == 200
        assert pages.post("/review/login", data={"api_key": served.keys["admin"]}).status_code == 303
        home = pages.get("/review")
        token = home.text.split('name="csrf" value="')[1].split('"')[0]
        assert pages.get(f"/review/submissions/{item.rsplit('/', 1)[1]}/image.png").status_code == 200
        decided = pages.post(
            f"/review/feedback/{feedback.json()['feedback_id']}", data={"decision": "reject", "csrf": token}
        )
        assert decided.status_code == 303
        assert pages.post("/review/logout", data={"csrf": token}).status_code == 303


def test_no_endpoint_changes_the_settings_or_the_model(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    sign_config(config)
    gateway = Gateway.build(load_config(config))
    routes = {(m, getattr(r, "path", "")) for r in create_app(gateway).routes for m in getattr(r, "methods", ())}
    assert routes == KNOWN_ROUTES
    settings = gateway.config.model_dump()
    weights = {k: v.clone() for k, v in gateway.model.module.state_dict().items()}  # type: ignore[attr-defined]
    model_hash = sha256(tmp_path / "model.safetensors")
    with running(gateway) as served:
        exercise_every_route(served)
    assert gateway.config.model_dump() == settings
    after = gateway.model.module.state_dict()  # type: ignore[attr-defined]
    assert all(torch.equal(weights[k], after[k]) for k in weights)
    assert sha256(tmp_path / "model.safetensors") == model_hash
    assert verify_manifest(config).ok
    with pytest.raises(ValidationError, match="frozen"):
        gateway.config.output.client = "scores"
    with pytest.raises(ValidationError, match="frozen"):
        gateway.config.monitors.boundary.quantile = 0.4
