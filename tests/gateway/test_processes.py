"""The gateway as OS processes (``bastion serve``): durability under kill -9, limits shared through Redis."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from gateway_live import gateway_process

from bastion.data import load_demo
from bastion.gateway.keys import Role
from bastion.gateway.store import Store

ONE = load_demo("digits", "test").x[:1].numpy().tolist()


def write_config(tmp_path: Path, *, store: Path, extra: str = "") -> Path:
    config = tmp_path / "bastion.toml"
    config.write_text(
        f"""
[model]
source = "demo:digits"
[store]
url = "sqlite:///{store}"
[rate_limit]
per_key = ["100000/second"]
[monitors.boundary]
enabled = false
[monitors.query]
enabled = false
{extra}
""",
        encoding="utf-8",
    )
    return config


def key_for(store_path: Path, role: Role = Role.CLIENT) -> str:
    with Store.open(f"sqlite:///{store_path}") as store:
        return store.create_key(role, "burst")[0]


@pytest.fixture(autouse=True)
def _trained_in_this_session(digits_model: object) -> None:
    """The demo model the servers load, trained once in the session's cache before any server starts."""


def test_acknowledged_feedback_and_submissions_survive_kill_9(tmp_path: Path) -> None:
    store_path = tmp_path / "gateway.db"
    config = write_config(tmp_path, store=store_path)
    secret = key_for(store_path)
    acknowledged: list[tuple[str, str]] = []
    lock = threading.Lock()
    with gateway_process(config) as (url, process):
        headers = {"Authorization": f"Bearer {secret}"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            prediction_ids = client.post("/v1/predict", json={"inputs": ONE * 32}).json()["prediction_ids"]

        def burst(worker: int) -> None:
            with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
                for i in range(10_000):
                    try:
                        if i % 2:
                            response = client.post("/v1/submissions", json={"inputs": ONE[0], "label": worker % 10})
                            item = (
                                ("submission", response.json()["submission_id"])
                                if response.status_code == 202
                                else None
                            )
                        else:
                            body = {"prediction_id": prediction_ids[i % 32], "correct": bool(worker % 2)}
                            response = client.post("/v1/feedback", json=body)
                            item = ("feedback", response.json()["feedback_id"]) if response.status_code == 202 else None
                    except (httpx.HTTPError, ValueError):
                        return  # the gateway is gone: what was acknowledged before is what counts
                    if item is not None:
                        with lock:
                            acknowledged.append(item)

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(burst, worker) for worker in range(4)]
            while True:
                with lock:
                    if len(acknowledged) >= 200:
                        break
                threading.Event().wait(0.01)
            os.kill(process.pid, signal.SIGKILL)
            for future in futures:
                future.result()
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    with Store.open(f"sqlite:///{store_path}") as store:
        feedback = {f.feedback_id for f in store.list_feedback(limit=1000)}
        submissions = {s.submission_id for s in store.list_submissions(limit=1000)}
    missing = [
        (kind, item) for kind, item in acknowledged if item not in (feedback if kind == "feedback" else submissions)
    ]
    assert len(acknowledged) >= 200
    assert missing == []


def test_two_gateways_sharing_redis_never_admit_more_than_the_limit(tmp_path: Path, redis_url: str) -> None:
    store_path = tmp_path / "gateway.db"
    config = write_config(tmp_path, store=store_path)
    text = config.read_text().replace(
        'per_key = ["100000/second"]', f'per_key = ["25/minute"]\nstorage = "{redis_url}"'
    )
    config.write_text(text)
    secret = key_for(store_path)
    headers = {"Authorization": f"Bearer {secret}"}
    with gateway_process(config) as (first, _), gateway_process(config) as (second, _):

        def hammer(url: str) -> list[int]:
            with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
                return [client.post("/v1/predict", json={"inputs": ONE}).status_code for _ in range(50)]

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(hammer, [first, second, first, second]))
    statuses = [status for result in results for status in result]
    assert statuses.count(200) == 25
    assert statuses.count(429) == 175
    assert all(result.count(200) > 0 for result in results[:2])  # both processes admitted some: the window is shared


@pytest.mark.parametrize("bad", ["[server]\nprot = 1\n", '[output]\nclient = "everything"\n'])
def test_a_bad_config_stops_the_gateway_from_starting(tmp_path: Path, bad: str) -> None:
    import subprocess
    import sys

    config = tmp_path / "bastion.toml"
    config.write_text(bad, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "bastion", "serve", "--config", str(config)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert ("prot" in result.stderr) or ("everything" in result.stderr)
    assert "Traceback" not in result.stderr


def test_serve_demo_prints_an_admin_key_once_that_works(tmp_path: Path) -> None:
    import re
    import subprocess
    import sys
    import time

    from gateway_live import free_port

    port = free_port()
    log = tmp_path / "serve.log"
    store = f"sqlite:///{tmp_path / 'demo.db'}"
    env = {**os.environ, "BASTION__MODEL__SOURCE": "demo:digits"}  # the digits demo: trained in seconds
    command = [sys.executable, "-m", "bastion", "serve", "--demo", "--store", store, "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not re.search(r"bst_\w+", log.read_text()) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        found = re.findall(r"bst_[0-9a-f]+_[\w-]+", log.read_text())
        assert len(found) == 1, log.read_text()
        url = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/v1/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {found[0]}"}) as admin:
            assert admin.get("/metrics").status_code == 200
            assert "scores" in admin.post("/v1/predict", json={"inputs": ONE}).json()
    finally:
        process.terminate()
        process.wait(timeout=30)
    with Store.open(store) as opened:
        keys = opened.list_keys()
    assert [(k.role, k.name) for k in keys] == [(Role.ADMIN, "demo-admin")]
    assert found[0] not in (tmp_path / "demo.db").read_bytes().decode("latin-1")
