"""The audit's result: value types for each section, the ``--fail-on`` rule, and the JSON round trip.

``report.json`` (own schema, :data:`AUDIT_SCHEMA_VERSION`) is :func:`audit_to_dict` of an
:class:`AuditReport`; the HTML page and the SARIF / CycloneDX files are all made from it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from bastion.audit.severity import Severity, at_or_above
from bastion.errors import DataError

__all__ = [
    "AUDIT_SCHEMA_VERSION",
    "FAIL_ON_CHOICES",
    "AuditReport",
    "DependencyFinding",
    "DependencySource",
    "IntegritySection",
    "Location",
    "ModelFileEntry",
    "SurfaceSection",
    "audit_from_dict",
    "audit_to_dict",
]

AUDIT_SCHEMA_VERSION = "1.0"
# --fail-on choices; "none" never fails.
FAIL_ON_CHOICES = ("none", "low", "medium", "high", "critical")


@dataclass(frozen=True)
class Location:
    """Where a package came from: a requirements or lock file line, or the running environment (path None)."""

    path: str | None
    line: int | None = None


@dataclass(frozen=True)
class DependencyFinding:
    """One advisory affecting one pinned package version, with its severity level and where it is pinned."""

    package: str
    version: str
    id: str
    aliases: tuple[str, ...]
    fixed_versions: tuple[str, ...]
    summary: str
    severity: str | None  # as the advisory gives it: a label or a CVSS vector
    level: str  # a Severity value
    locations: tuple[Location, ...]


@dataclass(frozen=True)
class DependencySource:
    """One place packages were read from, and what it left unpinned."""

    kind: str  # "environment", "requirements", or a lock format such as "poetry.lock"
    path: str | None
    pinned: int
    unpinned: tuple[str, ...]


@dataclass(frozen=True)
class ModelFileEntry:
    """One model file's static scan (see :func:`~bastion.audit.models.scan_model_file`)."""

    path: str
    claimed_format: str
    detected_format: str
    verdict: str  # "safe", "unsafe" or "error"
    findings: tuple[str, ...]


@dataclass(frozen=True)
class IntegritySection:
    """The configuration manifest check: verified, mismatch, not signed, not checked or unavailable."""

    status: str
    detail: str
    result: dict[str, Any] | None = None  # the IntegrityReport's own dictionary


@dataclass(frozen=True)
class SurfaceSection:
    """The attack-surface map of the gateway config, or why there is none."""

    status: str  # "mapped", "not checked" or "unavailable"
    detail: str
    surface: dict[str, Any] | None = None


@dataclass(frozen=True)
class AuditReport:
    """Every part of one ``bastion audit`` run."""

    service: str  # the vulnerability service that answered
    sources: tuple[DependencySource, ...]
    packages: tuple[tuple[str, str], ...]  # every pinned (name, version) audited, sorted
    findings: tuple[DependencyFinding, ...]
    notices: tuple[str, ...]
    models: tuple[ModelFileEntry, ...]
    integrity: IntegritySection
    surface: SurfaceSection
    fail_on: str
    schema_version: str = AUDIT_SCHEMA_VERSION

    def blocking(self) -> tuple[str, ...]:
        """Why ``--fail-on`` fails this audit (empty when it passes).

        Dependency findings count at their level (unknown as high); an unsafe model file and an
        integrity mismatch count as critical; a model file that could not be checked as unknown.
        """
        if self.fail_on == "none":
            return ()
        threshold = Severity(self.fail_on)
        reasons = [
            f"{f.package} {f.version}: {f.id} ({f.level})"
            for f in self.findings
            if at_or_above(Severity(f.level), threshold)
        ]
        for entry in self.models:
            level = {"unsafe": Severity.CRITICAL, "error": Severity.UNKNOWN}.get(entry.verdict)
            if level is not None and at_or_above(level, threshold):
                reasons.append(f"model file {entry.path}: {entry.verdict}")
        if self.integrity.status == "mismatch":
            reasons.append(f"configuration integrity: {self.integrity.detail}")
        return tuple(reasons)

    def level_counts(self) -> dict[str, int]:
        """How many dependency findings there are at each level, every level listed."""
        counts = {level.value: 0 for level in Severity}
        for finding in self.findings:
            counts[finding.level] += 1
        return counts


def audit_to_dict(report: AuditReport) -> dict[str, Any]:
    """The report as plain JSON values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(report)))  # type: ignore[no-any-return]


def audit_from_dict(data: Any) -> AuditReport:
    """Rebuild a report from :func:`audit_to_dict`'s output; DataError for another major schema or a bad shape."""
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON object for the audit report, got {type(data).__name__}")
    version = data.get("schema_version")
    if not isinstance(version, str) or version.split(".")[0] != AUDIT_SCHEMA_VERSION.split(".")[0]:
        raise DataError(f"audit report schema version {version!r} is not readable; expected {AUDIT_SCHEMA_VERSION}")
    try:
        return AuditReport(
            service=data["service"],
            sources=tuple(DependencySource(**{**s, "unpinned": tuple(s["unpinned"])}) for s in data["sources"]),
            packages=tuple((str(name), str(version)) for name, version in data["packages"]),
            findings=tuple(_finding(item) for item in data["findings"]),
            notices=tuple(data["notices"]),
            models=tuple(ModelFileEntry(**{**m, "findings": tuple(m["findings"])}) for m in data["models"]),
            integrity=IntegritySection(**data["integrity"]),
            surface=SurfaceSection(**data["surface"]),
            fail_on=data["fail_on"],
            schema_version=version,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(f"not an audit report: {type(error).__name__}: {error}") from None


def _finding(item: dict[str, Any]) -> DependencyFinding:
    return DependencyFinding(
        **{
            **item,
            "aliases": tuple(item["aliases"]),
            "fixed_versions": tuple(item["fixed_versions"]),
            "locations": tuple(Location(**where) for where in item["locations"]),
        }
    )
