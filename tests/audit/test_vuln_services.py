"""The vulnerability services against a real loopback server shaped like the OSV and PyPI APIs, and CVSS scoring."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bastion.audit.run import AuditOptions, run_audit
from bastion.audit.severity import Severity, at_or_above, cvss3_base_score, severity_of
from bastion.audit.vulns import OfflineService, OsvService, PyPIService, online_service
from bastion.errors import AdvisoryServiceError, ConfigError, DataError

PKG = "bastion-test-pkg"
CVSS_HIGH = "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"  # 7.8
RECORDS: dict[str, dict[str, Any]] = {
    "GHSA-test-0001": {
        "id": "GHSA-test-0001",
        "summary": "planted advisory",
        "aliases": ["CVE-2099-0001"],
        "severity": [{"type": "CVSS_V3", "score": CVSS_HIGH}],
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "Bastion_Test_Pkg"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"fixed": "1.4.2"}]}],
            },
            {"package": {"ecosystem": "npm", "name": PKG}, "ranges": [{"type": "SEMVER", "events": [{"fixed": "9"}]}]},
        ],
    },
    "PYSEC-page-1": {"id": "PYSEC-page-1", "details": "first page", "database_specific": {"severity": "LOW"}},
    "PYSEC-page-2": {"id": "PYSEC-page-2", "details": "second page", "database_specific": {"severity": "CRITICAL"}},
}


@dataclass
class Served:
    url: str
    requests: list[str] = field(default_factory=list)


def osv_vulns(name: str, version: str, token: str | None) -> dict[str, Any]:
    """What /v1/querybatch answers for one query: the planted advisory below 1.4.2, two pages for paged-pkg."""
    if name == PKG and version.startswith(("1.0", "1.4.1")):
        return {"vulns": [{"id": "GHSA-test-0001", "modified": "2099-01-01T00:00:00Z"}]}
    if name == "paged-pkg":
        if token is None:
            return {"vulns": [{"id": "PYSEC-page-1"}], "next_page_token": "p2"}
        return {"vulns": [{"id": "PYSEC-page-2"}]}
    return {}


def build_app(served: Served) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Any:
        served.requests.append(f"{request.method} {request.url.path}")
        return await call_next(request)

    @app.post("/v1/querybatch")
    async def querybatch(request: Request) -> Any:
        body = await request.json()
        results = []
        for query in body["queries"]:
            if query["package"]["ecosystem"] != "PyPI":
                return JSONResponse({"message": "bad ecosystem"}, status_code=400)
            results.append(osv_vulns(query["package"]["name"], query["version"], query.get("page_token")))
        return {"results": results}

    @app.get("/v1/vulns/{osv_id}")
    async def vuln(osv_id: str) -> Any:
        if osv_id not in RECORDS:
            return JSONResponse({"code": 5, "message": "Bug not found."}, status_code=404)
        return RECORDS[osv_id]

    @app.get("/pypi/{name}/{version}/json")
    async def pypi(name: str, version: str) -> Any:
        if name != PKG:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        vulnerabilities = []
        if version == "1.4.1":
            vulnerabilities = [
                {
                    "id": "PYSEC-2099-1",
                    "aliases": ["GHSA-test-0001"],
                    "summary": None,
                    "details": "planted on PyPI",
                    "fixed_in": ["1.4.2"],
                    "link": "https://osv.dev/vulnerability/PYSEC-2099-1",
                    "source": "osv",
                    "withdrawn": None,
                },
                {"id": "PYSEC-2099-2", "aliases": [], "details": "gone", "fixed_in": [], "withdrawn": "2099-02-01"},
            ]
        return {"info": {"name": name, "version": version}, "vulnerabilities": vulnerabilities}

    @app.post("/broken/v1/querybatch")
    async def broken() -> Any:
        return JSONResponse({"message": "internal"}, status_code=500)

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    """A uvicorn server in a thread on a free loopback port, stopped at teardown."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    served = Served(url=f"http://127.0.0.1:{sock.getsockname()[1]}")
    instance = uvicorn.Server(uvicorn.Config(build_app(served), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=instance.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert instance.started, "the test server did not start"
    yield served
    instance.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nothing listens on: the port was free a moment ago and is closed again."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def offline_db(tmp_path: Path) -> Path:
    folder = tmp_path / "osv"
    folder.mkdir()
    (folder / "GHSA-test-0001.json").write_text(json.dumps(RECORDS["GHSA-test-0001"]), encoding="utf-8")
    return folder


# -- OSV API ---------------------------------------------------------------------------------------


def test_osv_finds_the_planted_advisory_for_the_pinned_version_only(server: Served) -> None:
    served = server
    served.requests.clear()
    results = OsvService(base_url=served.url).query([(PKG, "1.4.1"), (PKG, "1.4.2"), ("numpy", "2.0.0")])
    assert [(f.package, f.version, f.id) for f in results.findings] == [(PKG, "1.4.1", "GHSA-test-0001")]
    finding = results.findings[0]
    assert finding.aliases == ("CVE-2099-0001",)
    assert finding.fixed_versions == ("1.4.2",)  # the npm entry's "9" is not a PyPI fix
    assert finding.severity == CVSS_HIGH and severity_of(finding.severity) is Severity.HIGH
    assert served.requests == ["POST /v1/querybatch", "GET /v1/vulns/GHSA-test-0001"]
    assert results.service == f"OSV API {served.url}"
    assert results.by_package() == {(PKG, "1.4.1"): (finding,)}


def test_osv_follows_page_tokens(server: Served) -> None:
    results = OsvService(base_url=server.url).query([("paged-pkg", "1.0")])
    assert [(f.id, severity_of(f.severity)) for f in results.findings] == [
        ("PYSEC-page-1", Severity.LOW),
        ("PYSEC-page-2", Severity.CRITICAL),
    ]
    assert results.findings[0].summary == "first page"


def test_an_unreachable_service_is_an_error_naming_its_url(closed_port_url: str) -> None:
    service = OsvService(base_url=closed_port_url, timeout=2.0)
    with pytest.raises(
        AdvisoryServiceError, match=rf"vulnerability service {closed_port_url}/v1/querybatch is unreachable"
    ):
        service.query([(PKG, "1.4.1")])


def test_a_failing_service_is_an_error_naming_the_status(server: Served) -> None:
    with pytest.raises(AdvisoryServiceError, match=r"/broken/v1/querybatch answered HTTP 500; expected 200"):
        OsvService(base_url=f"{server.url}/broken").query([(PKG, "1.4.1")])


# -- PyPI ------------------------------------------------------------------------------------------


def test_pypi_reports_live_vulnerabilities_and_skips_withdrawn_ones(server: Served) -> None:
    results = PyPIService(base_url=server.url).query([(PKG, "1.4.1"), (PKG, "1.4.2")])
    assert [(f.version, f.id, f.fixed_versions, f.summary) for f in results.findings] == [
        ("1.4.1", "PYSEC-2099-1", ("1.4.2",), "planted on PyPI")
    ]
    assert severity_of(results.findings[0].severity) is Severity.UNKNOWN
    assert results.notices == ()


def test_a_package_pypi_does_not_know_is_a_notice_not_a_crash(server: Served) -> None:
    results = PyPIService(base_url=server.url).query([("no-such-package-xyz", "0.0.1")])
    assert results.findings == ()
    assert results.notices == (
        f"no-such-package-xyz 0.0.1 is not on PyPI JSON API {server.url}; its advisories are unknown",
    )


def test_the_registry_builds_each_service_and_refuses_unknown_names() -> None:
    assert isinstance(online_service("osv"), OsvService)
    assert online_service("pypi", base_url="http://127.0.0.1:1").description == "PyPI JSON API http://127.0.0.1:1"
    with pytest.raises(ConfigError, match=r"unknown vulnerability service 'nvd'; expected one of \['osv', 'pypi'\]"):
        online_service("nvd")
    with pytest.raises(ConfigError, match="timeout > 0 seconds, got 0"):
        online_service("osv", timeout=0)


# -- fallback in run_audit -------------------------------------------------------------------------


def requirements(tmp_path: Path, version: str = "1.4.1") -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text(f"# app\n{PKG}=={version}\n", encoding="utf-8")
    return path


def test_run_audit_online_uses_the_service(server: Served, tmp_path: Path) -> None:
    options = AuditOptions(requirements=(requirements(tmp_path),), service="pypi", service_url=server.url)
    report = run_audit(options)
    assert [(f.id, f.level) for f in report.findings] == [("PYSEC-2099-1", "unknown")]
    assert report.service == f"PyPI JSON API {server.url}" and report.notices == ()
    assert report.findings[0].locations[0].line == 2


def test_unreachable_service_falls_back_to_the_offline_database(
    closed_port_url: str, offline_db: Path, tmp_path: Path
) -> None:
    options = AuditOptions(
        requirements=(requirements(tmp_path),), service_url=closed_port_url, vuln_db=offline_db, timeout=2.0
    )
    report = run_audit(options)
    assert [(f.id, f.level) for f in report.findings] == [("GHSA-test-0001", "high")]
    assert report.service.startswith(f"offline OSV database {offline_db}")
    assert len(report.notices) == 1
    assert report.notices[0].startswith(f"online service unreachable (vulnerability service {closed_port_url}")
    assert report.notices[0].endswith(f"used offline database {offline_db}")


def test_unreachable_service_without_a_database_is_a_clear_error(closed_port_url: str, tmp_path: Path) -> None:
    options = AuditOptions(requirements=(requirements(tmp_path),), service_url=closed_port_url, timeout=2.0)
    with pytest.raises(AdvisoryServiceError, match=rf"{closed_port_url}/v1/querybatch is unreachable.*--vuln-db PATH"):
        run_audit(options)


def test_offline_service_matches_like_the_database(offline_db: Path) -> None:
    service = OfflineService.load(offline_db)
    assert [f.version for f in service.query([(PKG, "1.4.1"), (PKG, "1.4.2")]).findings] == ["1.4.1"]
    assert service.description == f"offline OSV database {offline_db} (1 advisories)"


# -- severity --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vector", "score", "level"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8, Severity.CRITICAL),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0, Severity.CRITICAL),
        (CVSS_HIGH, 7.8, Severity.HIGH),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1, Severity.MEDIUM),
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9, Severity.MEDIUM),
        ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:N/A:N", 5.0, Severity.MEDIUM),
        ("CVSS:3.0/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.6, Severity.LOW),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0, Severity.NONE),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O", 9.8, Severity.CRITICAL),  # temporal metrics ignored
    ],
)
def test_cvss3_base_scores_follow_the_specification(vector: str, score: float, level: Severity) -> None:
    assert cvss3_base_score(vector) == score
    assert severity_of(vector) is level


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        ("CVSS:2.0/AV:N", r"expected a CVSS:3\.0 or CVSS:3\.1 vector, got 'CVSS:2\.0/AV:N'"),
        ("CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", r"metric AV is 'X'; expected one of \['A', 'L', 'N', 'P'\]"),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H", r"metric A is None"),
        ("CVSS:3.1/AV:N/AV:L/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", r"repeats the metric AV"),
    ],
)
def test_malformed_vectors_are_refused(vector: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        cvss3_base_score(vector)
    assert severity_of(vector) is Severity.UNKNOWN


def test_labels_and_unknowns_rank_as_documented() -> None:
    assert [severity_of(label) for label in ("LOW", "MODERATE", "high", "CRITICAL")] == [
        Severity.LOW,
        Severity.MEDIUM,
        Severity.HIGH,
        Severity.CRITICAL,
    ]
    v4 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"
    assert severity_of(None) is severity_of("") is severity_of(v4) is severity_of("weird") is Severity.UNKNOWN
    assert at_or_above(Severity.UNKNOWN, Severity.HIGH) and not at_or_above(Severity.UNKNOWN, Severity.CRITICAL)
    assert at_or_above(Severity.MEDIUM, Severity.LOW) and not at_or_above(Severity.LOW, Severity.MEDIUM)
    assert not at_or_above(Severity.NONE, Severity.LOW)
