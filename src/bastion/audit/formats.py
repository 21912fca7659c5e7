"""The audit in exchange formats: SARIF 2.1.0 for code scanning, CycloneDX 1.5 JSON as an SBOM with vulnerabilities.

- SARIF 2.1.0 (OASIS, https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html): one run,
  one rule per advisory id (plus one for unsafe model files and one for an integrity mismatch),
  one result per finding and place, ``level`` from the severity (critical, high and unknown are
  ``error``, medium ``warning``, low ``note``), located at the requirements or lock file line, or
  logically at the environment.
- CycloneDX 1.5 (https://cyclonedx.org/docs/1.5/json/): every pinned package as a ``library``
  component with purl ``pkg:pypi/<name>@<version>`` (purl spec, PEP 503 names); each advisory once in
  ``vulnerabilities`` with its source, ratings, the components it ``affects`` and the fixed versions
  as its ``recommendation``.

The JSON report itself is :func:`~bastion.audit.outcome.audit_to_dict`.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import bastion
from bastion.audit.outcome import AuditReport, DependencyFinding, Location, audit_to_dict
from bastion.audit.severity import cvss3_base_score
from bastion.errors import ConfigError, DataError
from bastion.report.jsonio import write_strict_json

__all__ = ["AUDIT_FORMATS", "purl", "to_cyclonedx", "to_json", "to_sarif", "write_format"]

logger = logging.getLogger(__name__)

_INFO_URI = "https://github.com/bastion-ml/bastion"
_SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
_SARIF_LEVELS = {"critical": "error", "high": "error", "unknown": "error", "medium": "warning", "low": "note"}
_UNSAFE_RULE = "bastion/unsafe-model-file"
_INTEGRITY_RULE = "bastion/integrity-mismatch"
_CVSS_METHODS = {"CVSS:3.0": "CVSSv3", "CVSS:3.1": "CVSSv31", "CVSS:4.0": "CVSSv4"}


def to_json(report: AuditReport) -> dict[str, Any]:
    """Bastion's own schema (``schema_version``), the source of every other format."""
    return audit_to_dict(report)


def purl(name: str, version: str) -> str:
    """The package URL of a PyPI release: ``pkg:pypi/<name>@<version>`` (lower case, ``_`` as ``-``)."""
    return f"pkg:pypi/{quote(name.lower().replace('_', '-'), safe='.-')}@{quote(version, safe='.-_~!')}"


# -- SARIF -----------------------------------------------------------------------------------------


def to_sarif(report: AuditReport) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run of ``bastion audit``."""
    rules: dict[str, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    for finding in report.findings:
        rules.setdefault(finding.id, _advisory_rule(finding))
        for where in finding.locations:
            results.append(_result(finding.id, _SARIF_LEVELS.get(finding.level, "none"), _message(finding), where))
    for entry in report.models:
        if entry.verdict != "safe":
            rules.setdefault(_UNSAFE_RULE, _rule(_UNSAFE_RULE, "A model file that could run code when loaded"))
            text = f"model file {entry.path} is {entry.verdict}: " + "; ".join(entry.findings)
            results.append(_result(_UNSAFE_RULE, "error", text, Location(entry.path)))
    if report.integrity.status == "mismatch" and report.integrity.result is not None:
        rules.setdefault(_INTEGRITY_RULE, _rule(_INTEGRITY_RULE, "A configuration that differs from its manifest"))
        manifest = str(report.integrity.result.get("manifest", ""))
        results.append(_result(_INTEGRITY_RULE, "error", report.integrity.detail, Location(manifest or None)))
    order = list(rules)
    for result in results:
        result["ruleIndex"] = order.index(result["ruleId"])
    driver = {
        "name": "bastion",
        "version": bastion.__version__,
        "informationUri": _INFO_URI,
        "rules": list(rules.values()),
    }
    return {"$schema": _SARIF_SCHEMA, "version": "2.1.0", "runs": [{"tool": {"driver": driver}, "results": results}]}


def _rule(rule_id: str, text: str) -> dict[str, Any]:
    return {"id": rule_id, "shortDescription": {"text": text}}


def _advisory_rule(finding: DependencyFinding) -> dict[str, Any]:
    rule = _rule(finding.id, finding.summary or finding.id)
    rule["helpUri"] = f"https://osv.dev/vulnerability/{quote(finding.id)}"
    rule["properties"] = {
        "tags": ["security", "dependency"],
        "severity": finding.level,
        "aliases": list(finding.aliases),
    }
    return rule


def _message(finding: DependencyFinding) -> str:
    fixed = f"; fixed in {', '.join(finding.fixed_versions)}" if finding.fixed_versions else "; no fixed version known"
    return f"{finding.package} {finding.version} is affected by {finding.id} ({finding.level}){fixed}"


def _result(rule_id: str, level: str, text: str, where: Location) -> dict[str, Any]:
    result: dict[str, Any] = {"ruleId": rule_id, "level": level, "message": {"text": text}}
    if where.path is None:
        result["locations"] = [{"logicalLocations": [{"name": "environment", "kind": "module"}]}]
        return result
    physical: dict[str, Any] = {"artifactLocation": {"uri": _uri(where.path)}}
    if where.line is not None:
        physical["region"] = {"startLine": where.line}
    result["locations"] = [{"physicalLocation": physical}]
    return result


def _uri(path: str) -> str:
    """A relative path as a URI reference (forward slashes, escaped); an absolute one as a file URI."""
    as_path = Path(path)
    return as_path.as_uri() if as_path.is_absolute() else quote(as_path.as_posix())


# -- CycloneDX -------------------------------------------------------------------------------------


def to_cyclonedx(report: AuditReport) -> dict[str, Any]:
    """A CycloneDX 1.5 BOM: the pinned packages as components and the advisories that affect them."""
    components = [
        {"type": "library", "bom-ref": purl(n, v), "name": n, "version": v, "purl": purl(n, v)}
        for n, v in report.packages
    ]
    vulnerabilities: dict[str, dict[str, Any]] = {}
    for finding in report.findings:
        entry = vulnerabilities.setdefault(finding.id, _vulnerability(finding))
        ref = {"ref": purl(finding.package, finding.version)}
        if ref not in entry["affects"]:
            entry["affects"].append(ref)
    body = json.dumps([components, list(vulnerabilities.values())], sort_keys=True)
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        # Derived from the content so the same audit writes the same file.
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, body)}",
        "version": 1,
        "metadata": {
            "tools": {"components": [{"type": "application", "name": "bastion", "version": bastion.__version__}]}
        },
        "components": components,
        "vulnerabilities": list(vulnerabilities.values()),
    }


def _vulnerability(finding: DependencyFinding) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "bom-ref": f"vulnerability:{finding.id}",
        "id": finding.id,
        "source": {"name": "OSV", "url": f"https://osv.dev/vulnerability/{quote(finding.id)}"},
        "ratings": [_rating(finding)],
        "description": finding.summary,
        "affects": [],
    }
    if finding.aliases:
        entry["references"] = [{"id": alias, "source": {"name": _alias_source(alias)}} for alias in finding.aliases]
    if finding.fixed_versions:
        entry["recommendation"] = f"Upgrade {finding.package} to {' or '.join(finding.fixed_versions)} or later."
    return entry


def _rating(finding: DependencyFinding) -> dict[str, Any]:
    """CycloneDX's rating: the level, and the CVSS vector with its method when the advisory gave one."""
    rating: dict[str, Any] = {"severity": finding.level}
    severity = finding.severity or ""
    method = _CVSS_METHODS.get(severity.split("/")[0])
    if method is not None:
        rating["method"] = method
        rating["vector"] = severity
        if method != "CVSSv4":
            try:
                rating["score"] = cvss3_base_score(severity)
            except DataError:
                logger.debug("%s: CVSS vector %r does not parse; rated without a score", finding.id, severity)
    elif severity:
        rating["method"] = "other"
    return rating


def _alias_source(alias: str) -> str:
    return {"CVE": "NVD", "GHSA": "GitHub Advisories", "PYSEC": "PyPA"}.get(alias.split("-")[0], "OSV")


# -- files -----------------------------------------------------------------------------------------

# --format name -> (file name, converter); read by the CLI and docs/audit.md.
AUDIT_FORMATS = {
    "cyclonedx": ("report.cdx.json", to_cyclonedx),
    "json": ("report.json", to_json),
    "sarif": ("report.sarif", to_sarif),
}


def write_format(report: AuditReport, name: str, out_dir: str | Path) -> Path:
    """Write the report in format ``name`` (a key of :data:`AUDIT_FORMATS`) into ``out_dir``; the path."""
    if name not in AUDIT_FORMATS:
        raise ConfigError(f"--format: expected one of {', '.join(AUDIT_FORMATS)}, got {name!r}")
    file_name, convert = AUDIT_FORMATS[name]
    return write_strict_json(convert(report), Path(out_dir) / file_name, what=f"{name} audit report")
