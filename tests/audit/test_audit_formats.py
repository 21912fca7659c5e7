"""The audit report in its formats: own JSON (round trip), SARIF 2.1.0, CycloneDX 1.5 and the HTML page."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from bastion.audit import AuditOptions, AuditReport, run_audit
from bastion.audit.formats import AUDIT_FORMATS, purl, to_cyclonedx, to_json, to_sarif, write_format
from bastion.audit.outcome import Location, audit_from_dict
from bastion.errors import ConfigError, DataError, NotFoundError
from bastion.report.audit import read_audit_json, render_audit_html, write_audit_report

PKG = "bastion-test-pkg"
RECORDS: list[dict[str, Any]] = [
    {
        "id": "GHSA-test-0001",
        "summary": "planted <script>alert(1)</script>",
        "aliases": ["CVE-2099-0001", "PYSEC-2099-1"],
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"}],
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": PKG},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"fixed": "1.4.2"}]}],
            }
        ],
    },
    {
        "id": "GHSA-test-0002",
        "summary": "moderate one",
        "database_specific": {"severity": "MODERATE"},
        "affected": [{"package": {"ecosystem": "PyPI", "name": "other_pkg"}, "versions": ["0.9"]}],
    },
]
SARIF_LEVELS = {"none", "note", "warning", "error"}
CDX_SEVERITIES = {"critical", "high", "medium", "low", "info", "none", "unknown"}
CDX_METHODS = {"CVSSv2", "CVSSv3", "CVSSv31", "CVSSv4", "OWASP", "SSVC", "other"}


class Payload:
    """Pickled, this calls os.system when loaded; the audit must never load it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def audit_inputs(tmp_path: Path) -> dict[str, Path]:
    db = tmp_path / "osv"
    db.mkdir()
    for record in RECORDS:
        (db / f"{record['id']}.json").write_text(json.dumps(record), encoding="utf-8")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"# pins\n{PKG}==1.4.1\nother-pkg==0.9\nsafe-pkg==2.0\nloose>=1\n", encoding="utf-8")
    lock = tmp_path / "poetry.lock"
    lock.write_text(f'[[package]]\nname = "{PKG}"\nversion = "1.4.1"\n', encoding="utf-8")
    models = tmp_path / "models"
    models.mkdir()
    save_file({"w": np.zeros(3, dtype=np.float32)}, str(models / "clean.safetensors"))
    (models / "evil.pkl").write_bytes(pickle.dumps(Payload(tmp_path / "marker")))
    (models / "notes.txt").write_text("not a model", encoding="utf-8")
    return {"db": db, "requirements": requirements, "lock": lock, "models": models, "marker": tmp_path / "marker"}


@pytest.fixture
def report(audit_inputs: dict[str, Path]) -> AuditReport:
    options = AuditOptions(
        requirements=(audit_inputs["requirements"], audit_inputs["lock"]),
        vuln_db=audit_inputs["db"],
        online=False,
        models=(audit_inputs["models"],),
    )
    return run_audit(options)


def test_run_audit_collects_every_part(report: AuditReport, audit_inputs: dict[str, Path]) -> None:
    assert [(f.package, f.id, f.level) for f in report.findings] == [
        (PKG, "GHSA-test-0001", "high"),
        ("other-pkg", "GHSA-test-0002", "medium"),
    ]
    assert [(w.path, w.line) for w in report.findings[0].locations] == [
        (str(audit_inputs["requirements"]), 2),
        (str(audit_inputs["lock"]), 2),
    ]
    assert report.packages == ((PKG, "1.4.1"), ("other-pkg", "0.9"), ("safe-pkg", "2.0"))
    assert [(s.kind, s.pinned, s.unpinned) for s in report.sources] == [
        ("requirements", 3, ("loose>=1",)),
        ("poetry.lock", 1, ()),
    ]
    assert [(Path(m.path).name, m.verdict) for m in report.models] == [
        ("clean.safetensors", "safe"),
        ("evil.pkl", "unsafe"),
    ]
    assert not audit_inputs["marker"].exists()
    assert report.integrity.status == report.surface.status == "not checked"
    assert report.level_counts()["high"] == 1 and report.level_counts()["medium"] == 1


def test_fail_on_counts_levels_unsafe_models_and_integrity(report: AuditReport) -> None:
    def blocking(fail_on: str, **changes: Any) -> int:
        return len(dataclasses.replace(report, fail_on=fail_on, **changes).blocking())

    assert blocking("none") == 0
    assert blocking("critical") == 1  # only the unsafe model file
    assert blocking("high") == 2
    assert blocking("medium") == blocking("low") == 3
    assert blocking("critical", models=()) == 0
    mismatch = dataclasses.replace(report.integrity, status="mismatch", detail="bastion.toml differs")
    assert blocking("critical", models=(), integrity=mismatch) == 1


def test_json_round_trips_and_refuses_another_major_version(report: AuditReport, tmp_path: Path) -> None:
    data = to_json(report)
    assert data["schema_version"] == "1.0"
    assert audit_from_dict(json.loads(json.dumps(data))) == report
    with pytest.raises(DataError, match=r"schema version '2\.0' is not readable; expected 1\.0"):
        audit_from_dict({**data, "schema_version": "2.0"})
    with pytest.raises(DataError, match="not an audit report: KeyError"):
        audit_from_dict({"schema_version": "1.0"})
    with pytest.raises(NotFoundError, match="no audit report at"):
        read_audit_json(tmp_path / "absent.json")


def test_sarif_has_one_rule_per_advisory_and_located_results(
    report: AuditReport, audit_inputs: dict[str, Path]
) -> None:
    log = to_sarif(report)
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-schema-2.1.0.json")
    (run,) = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert run["tool"]["driver"]["name"] == "bastion"
    ids = [rule["id"] for rule in rules]
    assert ids == ["GHSA-test-0001", "GHSA-test-0002", "bastion/unsafe-model-file"]
    assert all(rule["shortDescription"]["text"] for rule in rules)
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in SARIF_LEVELS and result["message"]["text"]
        assert len(result["locations"]) == 1
    located = {
        (r["ruleId"], r["level"], loc["artifactLocation"]["uri"], loc.get("region", {}).get("startLine"))
        for r in run["results"]
        for loc in [r["locations"][0]["physicalLocation"]]
    }
    assert located == {
        ("GHSA-test-0001", "error", audit_inputs["requirements"].as_uri(), 2),
        ("GHSA-test-0001", "error", audit_inputs["lock"].as_uri(), 2),
        ("GHSA-test-0002", "warning", audit_inputs["requirements"].as_uri(), 3),
        ("bastion/unsafe-model-file", "error", (audit_inputs["models"] / "evil.pkl").as_uri(), None),
    }


def test_sarif_locates_environment_packages_logically(report: AuditReport) -> None:
    finding = dataclasses.replace(report.findings[0], locations=(Location(None),))
    log = to_sarif(dataclasses.replace(report, findings=(finding,), models=()))
    (result,) = log["runs"][0]["results"]
    assert result["locations"] == [{"logicalLocations": [{"name": "environment", "kind": "module"}]}]


def test_cyclonedx_lists_components_and_the_vulnerabilities_affecting_them(report: AuditReport) -> None:
    bom = to_cyclonedx(report)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.5" and bom["version"] == 1
    assert re.fullmatch(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", bom["serialNumber"])
    assert to_cyclonedx(report)["serialNumber"] == bom["serialNumber"]  # same audit, same file
    refs = [component["bom-ref"] for component in bom["components"]]
    assert refs == ["pkg:pypi/bastion-test-pkg@1.4.1", "pkg:pypi/other-pkg@0.9", "pkg:pypi/safe-pkg@2.0"]
    for component in bom["components"]:
        assert component["type"] == "library" and component["purl"] == component["bom-ref"] and component["name"]
    first, second = bom["vulnerabilities"]
    assert first["id"] == "GHSA-test-0001" and first["source"]["name"] == "OSV"
    assert first["ratings"] == [
        {"severity": "high", "method": "CVSSv31", "vector": RECORDS[0]["severity"][0]["score"], "score": 7.8}
    ]
    assert first["affects"] == [{"ref": "pkg:pypi/bastion-test-pkg@1.4.1"}]
    assert "1.4.2" in first["recommendation"]
    assert [ref["id"] for ref in first["references"]] == ["CVE-2099-0001", "PYSEC-2099-1"]
    assert second["ratings"] == [{"severity": "medium", "method": "other"}] and "recommendation" not in second
    for vulnerability in bom["vulnerabilities"]:
        assert {r["severity"] for r in vulnerability["ratings"]} <= CDX_SEVERITIES
        assert {r["method"] for r in vulnerability["ratings"]} <= CDX_METHODS
        assert {a["ref"] for a in vulnerability["affects"]} <= set(refs)


def test_purl_normalises_names_and_escapes_versions() -> None:
    assert purl("Foo_Bar", "1.0+local") == "pkg:pypi/foo-bar@1.0%2Blocal"


def test_the_report_folder_holds_every_format_and_a_safe_page(report: AuditReport, tmp_path: Path) -> None:
    paths = write_audit_report(report, tmp_path / "out", formats=["sarif", "cyclonedx", "json"])
    assert sorted(p.name for p in paths.values()) == ["report.cdx.json", "report.html", "report.json", "report.sarif"]
    assert read_audit_json(paths["json"]) == report
    assert json.loads(paths["sarif"].read_text())["version"] == "2.1.0"
    html = paths["html"].read_text()
    for heading in ("Dependencies", "Model files", "Configuration integrity", "Attack surface"):
        assert f"<h2>{heading}</h2>" in html
    assert "GHSA-test-0001" in html and "evil.pkl" in html and "loose&gt;=1" in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    with pytest.raises(ConfigError, match=r"--format: expected one of cyclonedx, json, sarif, got 'xml'"):
        write_format(report, "xml", tmp_path)
    assert sorted(AUDIT_FORMATS) == ["cyclonedx", "json", "sarif"]


def test_the_page_shows_the_integrity_checks(report: AuditReport) -> None:
    integrity = dataclasses.replace(
        report.integrity,
        status="mismatch",
        detail="bastion.toml differs from its manifest",
        result={"ok": False, "manifest": "m.json", "signed": True, "checks": [
            {"name": "effective.monitors.boundary.quantile", "expected": "0.05", "actual": "0.5", "ok": False},
        ]},
    )  # fmt: skip
    html = render_audit_html(dataclasses.replace(report, integrity=integrity))
    assert '<span class="mismatch">mismatch</span>: bastion.toml differs from its manifest' in html
    assert "<td>effective.monitors.boundary.quantile</td><td>0.05</td><td>0.5</td>" in html
    assert "manifest m.json, signed" in html
    assert "not checked: no gateway config given (--config)" in html  # the attack-surface section without a config
