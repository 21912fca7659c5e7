"""Helpers for gateway tests: a gateway on the demo digits model served by a real uvicorn on loopback; service URLs."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from bastion.gateway import Gateway, create_app, load_config
from bastion.gateway.keys import Role

POSTGRES_URL = os.environ.get("BASTION_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
logger = logging.getLogger(__name__)
REDIS_URL = os.environ.get("BASTION_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def missing_service(what: str, reason: str) -> None:
    """Skip with the reason, except in CI, where a missing service is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required in CI: {reason}")
    pytest.skip(f"{what} unavailable: {reason}")


def _psycopg(url: str | URL) -> URL:
    return make_url(url).set(drivername="postgresql+psycopg")


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[URL]:
    """A database of this test module's own, dropped afterwards (or the configured one, see above)."""
    base = _psycopg(POSTGRES_URL)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"bastion_store_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except ProgrammingError as error:  # no CREATEDB privilege: fresh schemas in the base database still isolate
        logger.warning("cannot create a database (%s); using schemas in %s", error.orig, base.database)
        admin.dispose()
        yield base
        return
    except OperationalError as error:
        admin.dispose()
        missing_service("PostgreSQL", str(error.orig))
    try:
        yield base.set(database=name)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_database: URL) -> Iterator[str]:
    """A URL whose search path is a fresh schema, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(postgres_database, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = postgres_database.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except Exception as error:
        missing_service("Redis", str(error))
    return REDIS_URL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """A running gateway: its URL, its parts, and keys of each role (secrets)."""

    url: str
    gateway: Gateway
    keys: dict[str, str]

    def client(self, role: str = "client", **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role in self.keys else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kwargs)

    def new_key(self, role: str = "client", name: str = "extra") -> str:
        secret, _ = self.gateway.store.create_key(Role(role), name)
        return secret


@contextmanager
def serve_in_thread(gateway: Gateway) -> Iterator[str]:
    """Serve ``gateway`` with uvicorn on a free loopback port in this process; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(gateway), host="127.0.0.1", port=port, log_level="warning", proxy_headers=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


GatewayFactory = Callable[..., Gateway]


@pytest.fixture
def make_gateway(tmp_path: Path) -> GatewayFactory:
    """A gateway on the demo digits model, SQLite in ``tmp_path``; keyword overrides are dotted keys."""

    def build(**overrides: Any) -> Gateway:
        settings: dict[str, Any] = {
            "model.source": "demo:digits",
            "store.url": f"sqlite:///{tmp_path / 'gateway.db'}",
            "rate_limit.per_key": ["1000/second"],
        }
        settings.update({key.replace("__", "."): value for key, value in overrides.items()})
        return Gateway.build(load_config(None, environ={}, overrides=settings))

    return build


@contextmanager
def running(gateway: Gateway) -> Iterator[Served]:
    keys = {role.value: gateway.store.create_key(role, f"test-{role.value}")[0] for role in Role}
    with serve_in_thread(gateway) as url:
        yield Served(url=url, gateway=gateway, keys=keys)


@pytest.fixture
def served(make_gateway: GatewayFactory) -> Iterator[Served]:
    """The default gateway (every guard on) served on loopback."""
    with running(make_gateway()) as live:
        yield live


@contextmanager
def gateway_process(
    config: Path, *, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``bastion serve --config`` as a separate OS process; yields its URL and the process."""
    port = free_port()
    command = [sys.executable, "-m", "bastion", "serve", "--config", str(config), "--port", str(port)]
    log = config.with_name(f"gateway-{port}.log")
    with log.open("wb") as output:  # a file, not a pipe: a pipe nobody reads would block the server
        process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the gateway did not become healthy within 120 s: {log.read_text()[-2000:]}")
