"""The attack-surface map from real gateway configs: the built app's routes, threat rules, advisories, JSON, HTML."""

from __future__ import annotations

import json
import pickle
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import uvicorn
from fastapi.routing import APIRoute
from safetensors.torch import save_file

from bastion.audit import SurfaceMap, audit_dependencies, build_surface_map
from bastion.audit.osv import OsvDatabase
from bastion.audit.surface import mask_url
from bastion.audit.threats import THREATS
from bastion.errors import DataError, NotFoundError
from bastion.gateway import Gateway, create_app, load_config
from bastion.gateway.config import GatewayConfig
from bastion.gateway.keys import Role
from bastion.report.surface import render_surface_html

NO_MONITORS = """
[monitors.boundary]
enabled = false
[monitors.query]
enabled = false
"""
STAFF_ONLY = {
    "/v1/review/{kind}": ("reviewer", "admin"),
    "/v1/audit": ("admin",),
    "/metrics": ("admin",),
}


def write_config(folder: Path, body: str = "", *, guards: list[str] | None = None, name: str = "bastion.toml") -> Path:
    """A gateway config on the demo digits model with its store in ``folder``."""
    head = f"guards = {json.dumps(guards)}\n" if guards is not None else ""
    path = folder / name
    path.write_text(
        f'{head}[model]\nsource = "demo:digits"\n[store]\nurl = "sqlite:///{folder / "gateway.db"}"\n{body}',
        encoding="utf-8",
    )
    return path


@contextmanager
def served(config: Path, model: Any) -> Iterator[tuple[httpx.Client, dict[str, str], set[tuple[str, str]]]]:
    """The app ``create_app`` builds from ``config`` on uvicorn (loopback): a client, a key per role, its routes."""
    gateway = Gateway.build(load_config(config, environ={}), model=model)  # monitors off: nothing to calibrate
    keys = {role.value: gateway.store.create_key(role, f"test-{role.value}")[0] for role in Role}
    app = create_app(gateway)
    routes = {(m, route.path) for route in app.routes if isinstance(route, APIRoute) for m in route.methods}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        raise RuntimeError("the gateway did not start")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as client:
            yield client, keys, routes
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def concrete(path: str) -> str:
    return path.replace("{kind}", "flags").replace("{item_id}", "0" * 32)


@pytest.fixture
def digits_shaped(linear_model: Callable[..., Any]) -> Any:
    """A model with the digits input shape: the gateway needs one, and a linear one costs nothing to build."""
    return linear_model(64, 10, input_shape=(1, 8, 8))


def test_the_map_lists_every_route_of_the_built_app_with_the_roles_it_enforces(
    tmp_path: Path, digits_shaped: Any
) -> None:
    config = write_config(tmp_path, NO_MONITORS + '[rate_limit]\nper_key = ["1000/second"]\n')
    surface = build_surface_map(config, environ={})
    mapped = {(e.method, e.path): e for e in surface.entry_points}
    with served(config, digits_shaped) as (client, keys, routes):
        assert set(mapped) == routes
        assert mapped[("POST", "/v1/predict")].roles == ("client", "reviewer", "admin")
        assert mapped[("POST", "/review/login")].public and mapped[("GET", "/v1/health")].public
        for path, roles in STAFF_ONLY.items():
            assert mapped[("GET", path)].roles == roles
        api = [e for e in surface.entry_points if e.guarded and not e.public and not e.endpoint.startswith("ui.")]
        for role, secret in keys.items():  # what the map says a role may call is what the app lets through
            for entry in api:
                response = client.request(entry.method, concrete(entry.path), headers={"X-API-Key": secret})
                assert (response.status_code == 403) == (role not in entry.roles), (role, entry.path, response.text)


def test_with_the_auth_guard_off_the_map_says_who_really_gets_in(tmp_path: Path, digits_shaped: Any) -> None:
    guards = ["error_boundary", "audit", "size_limit", "validation", "model", "output_policy"]
    config = write_config(tmp_path, NO_MONITORS, guards=guards)
    surface = build_surface_map(config, environ={})
    mapped = {(e.method, e.path): e for e in surface.entry_points}
    assert mapped[("POST", "/v1/predict")].reachable_by.startswith("anyone")
    assert mapped[("GET", "/v1/audit")].reachable_by.startswith("nobody")
    assert "auth" in surface.guards_off and not surface.rate_limits.enabled
    with served(config, digits_shaped) as (client, _, _):
        assert client.post("/v1/predict", json={"inputs": [[[0.0] * 8] * 8]}).status_code == 200
        assert client.get("/v1/audit").status_code == 403
    assert surface.threat("poisoning").status == "partial"


def test_stealing_is_open_to_scores_without_limits_and_mitigated_by_labels_limits_and_detector(tmp_path: Path) -> None:
    no_limits = ["error_boundary", "audit", "auth", "size_limit", "validation", "model", "output_policy"]
    scores = write_config(tmp_path, '[output]\nclient = "scores"\n', guards=no_limits, name="scores.toml")
    guarded = write_config(
        tmp_path,
        '[output]\nclient = "label"\n[rate_limit]\nper_key = ["5/second", "1000/day"]\n'
        '[monitors.query]\naction = "throttle"\n',
        name="guarded.toml",
    )
    exposed = build_surface_map(scores, environ={}).threat("stealing")
    assert exposed.status == "open" and exposed.layers == ()
    assert "clients see full probability vectors" in exposed.gaps and "no per-key rate limit" in exposed.gaps

    guarded_map = build_surface_map(guarded, environ={})
    stealing = guarded_map.threat("stealing")
    assert stealing.status == "mitigated"
    # The same layers leave membership inference partial: labels alone leak membership (no DP training);
    # inversion is mitigated by labels only with per-key limits (without limits, test below: partial).
    assert guarded_map.threat("membership").status == "partial"
    assert guarded_map.threat("inversion").status == "mitigated"
    assert stealing.layers == (
        "output policy: clients see labels only",
        "per-key rate limits (5/second, 1000/day)",
        "query-attack detector (action 'throttle')",
    )
    partial = write_config(tmp_path, '[output]\nclient = "scores"\n', name="partial.toml")  # limits + detector on
    assert build_surface_map(partial, environ={}).threat("stealing").status == "partial"


def test_a_planted_pillow_advisory_marks_the_image_decoder_vulnerable(tmp_path: Path) -> None:
    installed = metadata.version("pillow")
    record = {
        "id": "GHSA-test-pillow",
        "summary": "a planted decoder bug",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "Pillow"}, "versions": [installed]}],
    }
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "GHSA-test-pillow.json").write_text(json.dumps(record), encoding="utf-8")
    findings = audit_dependencies(
        [("pillow", installed), ("numpy", metadata.version("numpy"))], OsvDatabase.load(tmp_path / "db")
    )
    config = write_config(tmp_path)

    surface = build_surface_map(config, findings=findings, environ={})
    libraries = {lib.package: lib for lib in surface.libraries}
    formats = {fmt.key: fmt for fmt in surface.formats}
    assert libraries["pillow"].status == "vulnerable" and libraries["pillow"].version == installed
    assert libraries["pillow"].advisories[0].startswith("GHSA-test-pillow")
    assert libraries["numpy"].status == "no known advisories"
    assert formats["image"].status == "vulnerable" and "pillow" in formats["image"].decoders
    assert formats["inputs"].status != "vulnerable"
    dependencies = surface.threat("dependencies")
    assert dependencies.status == "open" and "pillow" in dependencies.gaps[0]

    clean = build_surface_map(config, audited=True, environ={})
    assert {lib.package: lib.status for lib in clean.libraries}["pillow"] == "no known advisories"
    assert clean.threat("dependencies").status == "mitigated"
    assert build_surface_map(config, environ={}).threat("dependencies").status == "open"  # no audit given


def test_a_hardened_model_file_counts_as_a_layer_against_perturbation(tmp_path: Path) -> None:
    save_file({"weight": torch.zeros(10, 64)}, str(tmp_path / "model.safetensors"))
    manifest = {"method": "pgd_at", "weights": "model.safetensors", "model": {}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    config = tmp_path / "file.toml"
    config.write_text(
        f'[model]\nsource = "{tmp_path / "model.safetensors"}"\ninput_shape = [64]\n'
        f'[store]\nurl = "postgresql://gateway:hunter2@db/bastion"\n[output]\nclient = "scores"\n' + NO_MONITORS,
        encoding="utf-8",
    )
    surface = build_surface_map(config, environ={})
    assert surface.model.format == "safetensors" and surface.model.hardening == "pgd_at"
    assert not surface.model.images_accepted and not next(f for f in surface.formats if f.key == "image").accepted
    perturbation = surface.threat("perturbation")
    assert perturbation.status == "partial"
    assert any("adversarial training (pgd_at" in layer for layer in perturbation.layers)
    assert surface.storage.url == "postgresql://gateway:***@db/bastion"
    assert "hunter2" not in json.dumps(surface.to_dict())
    assert surface.threat("supply_chain").status in ("partial", "mitigated")

    (tmp_path / "manifest.json").unlink()
    bare = build_surface_map(config, environ={}).threat("perturbation")
    assert bare.status == "open" and bare.layers == ()  # not hardened, no monitor, clients see scores


def test_the_map_round_trips_through_json(tmp_path: Path) -> None:
    surface = build_surface_map(write_config(tmp_path), environ={})
    data = json.loads(json.dumps(surface.to_dict()))
    assert data == surface.to_dict()
    assert SurfaceMap.from_dict(data) == surface
    assert [row["key"] for row in data["threats"]] == list(THREATS)
    with pytest.raises(DataError, match="not a surface map: KeyError"):
        SurfaceMap.from_dict({k: v for k, v in data.items() if k != "limits"})


def test_a_missing_config_is_named(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"nowhere\.toml does not exist"):
        build_surface_map(tmp_path / "nowhere.toml")


class _Rows(HTMLParser):
    """The threat rows (id, badge text) and the tags of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.threats: dict[str, str] = {}
        self.tags: set[str] = set()
        self._row: str | None = None
        self._badge = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        found = dict(attrs)
        if tag == "tr" and found.get("class") == "threat":
            self._row = str(found["id"]).removeprefix("threat-")
        self._badge = tag == "span" and "badge" in (found.get("class") or "")

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._badge and self._row not in self.threats:
            self.threats[self._row] = data.strip()

    def handle_endtag(self, tag: str) -> None:
        self._badge = False
        if tag == "tr":
            self._row = None


def test_the_html_section_shows_every_threat_with_its_status(tmp_path: Path) -> None:
    config = write_config(tmp_path, name="<script onload=x>.toml")
    surface = build_surface_map(config, environ={})
    page = render_surface_html(surface)
    parsed = _Rows()
    parsed.feed(page)
    assert parsed.threats == {row.key: row.status for row in surface.threats}
    assert set(parsed.threats) == set(THREATS)
    assert "script" not in parsed.tags  # the file name is shown as text
    assert render_surface_html(surface.to_dict()) == page


@pytest.mark.parametrize(
    ("client", "inversion", "membership"),
    [("scores", "open", "open"), ("rounded", "partial", "partial"), ("label", "partial", "partial")],
)
def test_inversion_and_membership_follow_what_clients_see(
    tmp_path: Path, client: str, inversion: str, membership: str
) -> None:
    no_limits = ["error_boundary", "audit", "auth", "size_limit", "validation", "model", "output_policy"]
    config = write_config(tmp_path, f'[output]\nclient = "{client}"\n' + NO_MONITORS, guards=no_limits)
    surface = build_surface_map(config, environ={})
    assert surface.threat("inversion").status == inversion
    assert surface.threat("membership").status == membership  # label-only inference needs limits and a detector
    assert surface.threat("physical").status == "open"
    assert surface.threat("reprogramming").status == "partial"  # keys are required, nothing more
    assert [o.policy for o in surface.outputs] == [client, "scores", "scores"]


def test_a_trusted_pickle_model_leaves_the_supply_chain_partly_open(tmp_path: Path) -> None:
    model_file = tmp_path / "model.pkl"
    model_file.write_bytes(pickle.dumps({"weights": [0.0] * 4}, protocol=4))  # never loaded: only sniffed
    config = tmp_path / "pickle.toml"
    config.write_text(
        f'[model]\nsource = "{model_file}"\ninput_shape = [4]\ntrust_pickle = true\n' + NO_MONITORS,
        encoding="utf-8",
    )
    surface = build_surface_map(config, environ={})
    assert surface.model.format == "pickle" and surface.model.loaders == ("joblib", "scikit-learn")
    supply_chain = surface.threat("supply_chain")
    assert supply_chain.status == "partial"
    assert any("trust_pickle" in gap for gap in supply_chain.gaps)
    assert {lib.package for lib in surface.libraries} >= {"joblib", "scikit-learn"}


def test_a_required_signed_manifest_closes_the_supply_chain_gap(tmp_path: Path) -> None:
    if "integrity" not in GatewayConfig.model_fields:
        pytest.skip("this gateway config has no [integrity] section (issue 8, part 3)")
    unsigned = build_surface_map(write_config(tmp_path, name="unsigned.toml"), environ={}).threat("supply_chain")
    assert unsigned.status == "partial" and any("no signed manifest" in gap for gap in unsigned.gaps)
    signed = write_config(tmp_path, "[integrity]\nrequired = true\n", name="signed.toml")
    supply_chain = build_surface_map(signed, environ={}).threat("supply_chain")
    assert supply_chain.status == "mitigated"
    assert supply_chain.layers[-1].startswith("signed manifest of the configuration and model hashes")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("memory://", "memory://"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        (
            "postgresql://gw@db/bastion?password=s3cret&sslmode=require",
            "postgresql://gw@db/bastion?password=***&sslmode=require",
        ),
        ("sqlite:///var/lib/bastion/gateway.db", "sqlite:///var/lib/bastion/gateway.db"),
    ],
)
def test_urls_are_shown_without_their_passwords(url: str, shown: str) -> None:
    assert mask_url(url) == shown
