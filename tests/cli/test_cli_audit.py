"""``bastion audit`` end to end: offline and fallback audits, --fail-on exit codes, formats, config, bad input."""

from __future__ import annotations

import json
import os
import pickle
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from bastion.audit import sign_config
from bastion.cli.common import err_console, out_console
from bastion.cli.main import main
from bastion.models.zoo import DigitsCNN

PKG = "bastion-test-pkg"
PLANTED = {
    "id": "GHSA-test-0001",
    "summary": "planted advisory",
    "aliases": ["CVE-2099-0001"],
    "database_specific": {"severity": "HIGH"},
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": PKG},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"fixed": "1.4.2"}]}],
        }
    ],
}


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    folder = tmp_path / "osv"
    folder.mkdir()
    (folder / "planted.json").write_text(json.dumps(PLANTED), encoding="utf-8")
    return folder


def requirements(tmp_path: Path, version: str) -> Path:
    path = tmp_path / f"requirements-{version}.txt"
    path.write_text(f"{PKG}=={version}\n", encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps at the terminal width, even inside a word; the messages are checked whole."""
    monkeypatch.setattr(out_console, "width", 1000)
    monkeypatch.setattr(err_console, "width", 1000)


def errors(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err


def offline(tmp_path: Path, db: Path, *extra: str) -> list[str]:
    return ["audit", "--offline", "--vuln-db", str(db), "--out", str(tmp_path / "out"), *extra]


def test_findings_at_or_above_fail_on_exit_12_and_every_format_is_written(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = offline(tmp_path, db, "-r", str(requirements(tmp_path, "1.4.1")), "--format", "sarif,cyclonedx")
    assert main([*args, "--fail-on", "high"]) == 12
    captured = capsys.readouterr()
    assert "GHSA-test-0001" in captured.out and "Vulnerable dependencies" in captured.out
    assert "1 finding(s) at or above --fail-on high: bastion-test-pkg 1.4.1: GHSA-test-0001 (high)" in captured.err
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["report.cdx.json", "report.html", "report.json", "report.sarif"]
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == "1.0" and report["fail_on"] == "high"
    assert [f["id"] for f in report["findings"]] == ["GHSA-test-0001"]
    sarif = json.loads((out / "report.sarif").read_text())
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"][0]["ruleId"] == "GHSA-test-0001"
    bom = json.loads((out / "report.cdx.json").read_text())
    assert bom["specVersion"] == "1.5" and bom["vulnerabilities"][0]["affects"] == [{"ref": f"pkg:pypi/{PKG}@1.4.1"}]
    assert main([*args, "--fail-on", "critical"]) == 0
    assert main([*args, "--fail-on", "none"]) == 0


def test_the_fixed_version_passes(tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(offline(tmp_path, db, "-r", str(requirements(tmp_path, "1.4.2")), "--fail-on", "low")) == 0
    assert json.loads((tmp_path / "out" / "report.json").read_text())["findings"] == []


def test_an_unsafe_model_file_always_counts_as_critical(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    (models / "nested").mkdir(parents=True)
    marker = tmp_path / "marker"
    (models / "nested" / "model.joblib").write_bytes(pickle.dumps(Payload(marker)))
    args = offline(tmp_path, db, "-r", str(requirements(tmp_path, "1.4.2")), "--models", str(models))
    assert main([*args, "--fail-on", "critical"]) == 12
    assert "model file" in errors(capsys) and not marker.exists()
    entry = json.loads((tmp_path / "out" / "report.json").read_text())["models"][0]
    assert entry["verdict"] == "unsafe" and entry["path"].endswith("model.joblib")
    assert any("system" in item for item in entry["findings"])


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_an_unreachable_service_falls_back_to_vuln_db_or_fails_clearly(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = closed_port_url()
    base = ["audit", "-r", str(requirements(tmp_path, "1.4.1")), "--service-url", url, "--timeout", "2"]
    base += ["--out", str(tmp_path / "out")]
    assert main([*base, "--vuln-db", str(db)]) == 12
    printed = capsys.readouterr().out
    assert f"online service unreachable (vulnerability service {url}/v1/querybatch is unreachable" in printed
    assert f"used offline database {db}" in printed
    assert main(base) == 7
    assert f"{url}/v1/querybatch is unreachable" in errors(capsys)


def write_gateway(folder: Path) -> Path:
    """A gateway config naming a model file and its factory module (as tests/audit/test_integrity.py does)."""
    torch.manual_seed(0)
    save_file(DigitsCNN().state_dict(), str(folder / "model.safetensors"))
    (folder / "audit_cli_net.py").write_text(
        "from bastion.models.zoo import DigitsCNN\n\n\ndef make():\n    return DigitsCNN()\n", encoding="utf-8"
    )
    config = folder / "bastion.toml"
    config.write_text(
        f'[model]\nsource = "{folder / "model.safetensors"}"\nfactory = "audit_cli_net:make"\n'
        "input_shape = [1, 8, 8]\n[monitors.boundary]\nquantile = 0.05\n",
        encoding="utf-8",
    )
    return config


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [name for name in os.environ if name.startswith("BASTION__") or name == "BASTION_CONFIG_KEY"]:
        monkeypatch.delenv(name)
    return write_gateway(tmp_path)


def test_a_gateway_config_adds_integrity_and_the_attack_surface(
    tmp_path: Path, db: Path, gateway: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = offline(tmp_path, db, "-r", str(requirements(tmp_path, "1.4.2")), "--config", str(gateway))
    assert main([*args, "--fail-on", "critical"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["integrity"]["status"] == "not signed"
    assert report["surface"]["status"] == "mapped"
    assert {row["key"] for row in report["surface"]["surface"]["threats"]} >= {"perturbation", "poisoning"}
    html = (tmp_path / "out" / "report.html").read_text()
    assert 'id="attack-surface"' in html and "not signed" in html

    sign_config(gateway)
    assert main([*args, "--fail-on", "critical"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["integrity"]["status"] == "verified" and report["integrity"]["result"]["ok"] is True

    gateway.write_text(gateway.read_text().replace("quantile = 0.05", "quantile = 0.1"), encoding="utf-8")
    capsys.readouterr()
    assert main([*args, "--fail-on", "critical"]) == 12
    assert "configuration integrity" in errors(capsys)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    failed = [c["name"] for c in report["integrity"]["result"]["checks"] if not c["ok"]]
    assert report["integrity"]["status"] == "mismatch" and "config.sha256" in failed
    assert "effective.monitors.boundary.quantile" in failed


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        ("bad-requirements", [], r"requirements\.txt:2: cannot parse requirement 'flask ==='"),
        ("bad-lock", [], r"poetry\.lock: not valid TOML"),
        ("missing", [], r"requirements or lock file .*absent\.txt does not exist"),
        (
            "good",
            ["--fail-on", "severe"],
            r"--fail-on: expected one of none, low, medium, high, critical, got 'severe'",
        ),
        ("good", ["--format", "xml"], r"--format: expected one of cyclonedx, json, sarif, got xml"),
        ("good", ["--service", "nvd"], r"--service: expected one of osv, pypi, got 'nvd'"),
        ("good", ["--models", "/nonexistent/models"], r"/nonexistent/models does not exist"),
    ],
)
def test_bad_input_is_a_clear_error_with_exit_2(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str], setup: str, extra: list[str], message: str
) -> None:
    files = {
        "bad-requirements": ("requirements.txt", "flask==1.0\nflask ===\n"),
        "bad-lock": ("poetry.lock", "[[package]\n"),
        "good": ("requirements.txt", "flask==1.0\n"),
    }
    path = tmp_path / "absent.txt"
    if setup in files:
        name, text = files[setup]
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
    assert main(offline(tmp_path, db, "-r", str(path), *extra)) == 2
    assert re.search(message, errors(capsys))


def test_offline_without_a_database_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--offline", "-r", str(requirements(tmp_path, "1.0"))]) == 2
    assert "--offline needs --vuln-db PATH" in errors(capsys)


def test_the_environment_is_audited_when_no_file_is_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    folder = tmp_path / "env-db"
    folder.mkdir()
    record = {
        "id": "GHSA-env-0001",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "httpx"}, "versions": [version("httpx")]}],
    }
    (folder / "env.json").write_text(json.dumps(record), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["audit", "--offline", "--vuln-db", str(folder), "--out", str(out), "--format", "sarif"]) == 12
    report = json.loads((out / "report.json").read_text())
    assert [s["kind"] for s in report["sources"]] == ["environment"] and len(report["packages"]) > 10
    (finding,) = report["findings"]
    assert (finding["package"], finding["level"], finding["locations"]) == (
        "httpx",
        "unknown",
        [{"path": None, "line": None}],
    )
    (result,) = json.loads((out / "report.sarif").read_text())["runs"][0]["results"]
    assert result["locations"][0]["logicalLocations"][0]["name"] == "environment"
