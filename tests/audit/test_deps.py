"""The offline dependency audit: an OSV database built in the test, pinned versions and requirements files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from bastion.audit.deps import Finding, audit_dependencies, environment_packages, requirements_packages
from bastion.audit.osv import OsvDatabase
from bastion.errors import DataError, NotFoundError

PKG = "bastion-test-pkg"


def _record(osv_id: str, affected: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": osv_id, "summary": f"{osv_id} summary", "affected": [affected], **extra}


def _ranged(name: str = PKG, **events: str) -> dict[str, Any]:
    return {
        "package": {"ecosystem": "PyPI", "name": name},
        "ranges": [{"type": "ECOSYSTEM", "events": [{k: v} for k, v in events.items()]}],
    }


PLANTED = _record(
    "GHSA-test-0001",
    _ranged(introduced="1.0", fixed="1.4.2"),
    aliases=["CVE-2099-0001"],
    database_specific={"severity": "HIGH"},
)


def _write_folder(root: Path, records: list[dict[str, Any]]) -> Path:
    root.mkdir()
    for record in records:
        (root / f"{record['id']}.json").write_text(json.dumps(record), encoding="utf-8")
    return root


def _write_zip(path: Path, records: list[dict[str, Any]]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for record in records:
            archive.writestr(f"{record['id']}.json", json.dumps(record))
    return path


@pytest.fixture(params=["folder", "zip"])
def planted_db(request: pytest.FixtureRequest, tmp_path: Path) -> OsvDatabase:
    other = _record("PYSEC-other", _ranged(name="numpy", introduced="0", fixed="1.0"))
    npm = _record("NPM-1", {"package": {"ecosystem": "npm", "name": PKG}, "versions": ["1.2.0"]})
    records = [PLANTED, other, npm]
    if request.param == "folder":
        return OsvDatabase.load(_write_folder(tmp_path / "db", records))
    return OsvDatabase.load(_write_zip(tmp_path / "db.zip", records))


@pytest.mark.parametrize("version", ["1.0", "1.2.0", "1.4.1", "1.4.2rc1"])
def test_planted_advisory_found_for_affected_versions(planted_db: OsvDatabase, version: str) -> None:
    findings = audit_dependencies([(PKG, version)], planted_db)
    assert findings == [
        Finding(
            package=PKG,
            version=version,
            id="GHSA-test-0001",
            aliases=("CVE-2099-0001",),
            fixed_versions=("1.4.2",),
            summary="GHSA-test-0001 summary",
            severity="HIGH",
        )
    ]


@pytest.mark.parametrize("version", ["1.4.2", "1.10", "0.9", "1.0a1"])
def test_fixed_and_earlier_versions_are_clean(planted_db: OsvDatabase, version: str) -> None:
    assert audit_dependencies([(PKG, version)], planted_db) == []


def test_other_ecosystems_are_ignored_and_names_are_normalised(planted_db: OsvDatabase) -> None:
    # The npm record lists 1.2.0 explicitly; only the PyPI advisory may match.
    findings = audit_dependencies([("Bastion_Test.Pkg", "1.2.0"), ("NumPy", "0.5"), ("numpy", "2.0")], planted_db)
    assert [(f.package, f.version, f.id) for f in findings] == [
        (PKG, "1.2.0", "GHSA-test-0001"),
        ("numpy", "0.5", "PYSEC-other"),
    ]


def test_last_affected_is_inclusive(tmp_path: Path) -> None:
    record = _record("OSV-last", _ranged(introduced="0", last_affected="2.0.0"))
    db = OsvDatabase.load(_write_folder(tmp_path / "db", [record]))
    assert [f.version for f in audit_dependencies([(PKG, v) for v in ("0.1", "2.0", "2.0.1")], db)] == ["0.1", "2.0"]
    assert audit_dependencies([(PKG, "2.0")], db)[0].fixed_versions == ()


def test_explicit_versions_list(tmp_path: Path) -> None:
    affected = {"package": {"ecosystem": "PyPI", "name": "Bastion_Test.Pkg"}, "versions": ["3.1", "3.3"]}
    db = OsvDatabase.load(_write_folder(tmp_path / "db", [_record("OSV-list", affected)]))
    hits = audit_dependencies([(PKG, v) for v in ("3.1.0", "3.2", "3.3")], db)
    assert [f.version for f in hits] == ["3.1.0", "3.3"]


def test_reintroduced_range_and_cvss_severity(tmp_path: Path) -> None:
    events = [{"introduced": "1.0"}, {"fixed": "1.1"}, {"introduced": "2.0"}, {"fixed": "2.2"}]
    affected = {"package": {"ecosystem": "PyPI", "name": PKG}, "ranges": [{"type": "ECOSYSTEM", "events": events}]}
    cvss = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
    record = _record("OSV-two", affected, severity=[{"type": "CVSS_V3", "score": cvss}])
    db = OsvDatabase.load(_write_folder(tmp_path / "db", [record]))
    hits = audit_dependencies([(PKG, v) for v in ("1.0.5", "1.5", "2.1", "2.2")], db)
    assert [f.version for f in hits] == ["1.0.5", "2.1"]
    assert hits[0].fixed_versions == ("1.1", "2.2")
    assert hits[0].severity == cvss


def test_withdrawn_record_is_skipped(tmp_path: Path) -> None:
    db = OsvDatabase.load(_write_folder(tmp_path / "db", [{**PLANTED, "withdrawn": "2099-01-01T00:00:00Z"}]))
    assert audit_dependencies([(PKG, "1.2.0")], db) == []


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps({"summary": "no id"}),
        json.dumps(_record("OSV-bad", {"package": {"name": PKG}})),  # no ecosystem
        json.dumps(_record("OSV-bad", _ranged(introduced="1.0", fixed="not a version!"))),
        json.dumps(_record("OSV-bad", _ranged(introduced="1.0", unknown="2.0"))),
    ],
)
def test_malformed_record_is_refused_naming_the_file(tmp_path: Path, content: str) -> None:
    root = _write_folder(tmp_path / "db", [PLANTED])
    (root / "broken-record.json").write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=r"broken-record\.json"):
        OsvDatabase.load(root)


def test_malformed_record_in_zip_is_refused_naming_the_member(tmp_path: Path) -> None:
    path = tmp_path / "db.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("osv/broken.json", "[]")
    with pytest.raises(DataError, match=r"db\.zip:osv/broken\.json"):
        OsvDatabase.load(path)


def test_missing_or_unusable_database(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="nowhere"):
        OsvDatabase.load(tmp_path / "nowhere")
    (tmp_path / "db.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(DataError, match="neither a folder nor a zip"):
        OsvDatabase.load(tmp_path / "db.txt")


def test_requirements_file_pins_unpinned_and_includes(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("NumPy==1.26.4\n", encoding="utf-8")
    (tmp_path / "requirements.txt").write_text(
        "# pinned\n"
        "-r base.txt\n"
        "--index-url https://example.invalid/simple\n"
        "Bastion_Test.Pkg==1.2.0 \\\n"
        "    --hash=sha256:0123456789abcdef\n"
        "requests>=2.31  # a range is not a pin\n"
        "torch==2.*\n"
        "old-only==0.1; python_version < '3.0'\n"
        "-e ./local-package\n",
        encoding="utf-8",
    )
    result = requirements_packages(tmp_path / "requirements.txt")
    assert result.pinned == (("numpy", "1.26.4"), (PKG, "1.2.0"))
    assert result.unpinned == ("requests>=2.31", "torch==2.*", "-e ./local-package")


def test_requirements_pins_feed_the_audit(tmp_path: Path) -> None:
    db = OsvDatabase.load(_write_folder(tmp_path / "db", [PLANTED]))
    (tmp_path / "req.txt").write_text(f"{PKG}==1.4.1\nother==1.0\n", encoding="utf-8")
    (tmp_path / "fixed.txt").write_text(f"{PKG}==1.4.2\n", encoding="utf-8")
    assert [f.id for f in audit_dependencies(requirements_packages(tmp_path / "req.txt").pinned, db)] == [
        "GHSA-test-0001"
    ]
    assert audit_dependencies(requirements_packages(tmp_path / "fixed.txt").pinned, db) == []


def test_broken_requirement_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("numpy==1.26.4\n\nthis is ==not a requirement\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"requirements\.txt:3: cannot parse requirement 'this is ==not"):
        requirements_packages(path)


def test_missing_requirements_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"absent\.txt"):
        requirements_packages(tmp_path / "absent.txt")


def test_environment_packages_reads_this_interpreter() -> None:
    packages = dict(environment_packages())
    assert "packaging" in packages
    assert "pytest" in packages
    assert packages["pytest"] == pytest.__version__


def test_requirements_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_bytes(b"requests==2.0\n\xff\n")
    with pytest.raises(DataError, match=r"requirements.txt: expected UTF-8 text, got undecodable bytes at offset 14"):
        requirements_packages(path)


def test_osv_record_whose_package_has_no_name_is_malformed(tmp_path: Path) -> None:
    (tmp_path / "PYSEC-0.json").write_text(
        json.dumps({"id": "PYSEC-0", "affected": [{"package": {"ecosystem": "PyPI", "name": None}}]})
    )
    with pytest.raises(DataError, match=r"PYSEC-0.*'package.name' must be a non-empty string, got None"):
        OsvDatabase.load(tmp_path)
