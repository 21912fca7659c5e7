"""The OSV API (https://google.github.io/osv.dev/api/): ``POST /v1/querybatch``, then ``GET /v1/vulns/{id}``.

The batch query answers only advisory ids per package (up to 1000 queries a call, paged with
``next_page_token``); each advisory's full OSV record is then read once and turned into one
:class:`~bastion.audit.deps.Finding` per affected pinned package.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from bastion.audit.deps import Finding
from bastion.audit.vulns.httpio import NOT_FOUND, OnlineService, request_json
from bastion.audit.vulns.interface import Package, VulnerabilityResults
from bastion.errors import AdvisoryServiceError

__all__ = ["OSV_URL", "OsvService"]

OSV_URL = "https://api.osv.dev"
_BATCH = 1000  # the API's limit on queries per batch
_MAX_PAGES = 20  # per package; no real package has 20 000 advisories


class OsvService(OnlineService):
    """Query the OSV API at ``base_url``; ``transport`` (an httpx transport) replaces the network."""

    title = "OSV API"
    default_url = OSV_URL

    def query(self, packages: Sequence[Package]) -> VulnerabilityResults:
        with self.client() as http:
            ids = _advisory_ids(http, list(packages))
            records: dict[str, dict[str, Any]] = {}
            notices: list[str] = []
            for osv_id in sorted({i for found in ids.values() for i in found}):
                record = request_json(http, "GET", f"/v1/vulns/{osv_id}")
                if record is NOT_FOUND or not isinstance(record, dict):
                    notices.append(f"{self.description} listed {osv_id} but has no record for it")
                else:
                    records[osv_id] = record
        findings = [_finding(records[i], package) for package, found in ids.items() for i in found if i in records]
        ordered = sorted(set(findings), key=lambda f: (f.package, f.version, f.id))
        return VulnerabilityResults(self.description, tuple(ordered), tuple(notices))


def _advisory_ids(http: httpx.Client, packages: list[Package]) -> dict[Package, list[str]]:
    """Advisory ids per package from ``/v1/querybatch``, following each result's page token."""
    found: dict[Package, list[str]] = {package: [] for package in packages}
    pending: list[tuple[Package, str | None]] = [(package, None) for package in packages]
    for _ in range(_MAX_PAGES):
        if not pending:
            break
        chunk, pending = pending[:_BATCH], pending[_BATCH:]
        answer = request_json(http, "POST", "/v1/querybatch", json={"queries": [_query(*item) for item in chunk]})
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(chunk):
            raise AdvisoryServiceError(
                f"OSV API {http.base_url}: expected 'results' with {len(chunk)} entries from /v1/querybatch"
            )
        for (package, _token), result in zip(chunk, results, strict=True):
            vulns = result.get("vulns", []) if isinstance(result, dict) else []
            found[package].extend(str(v["id"]) for v in vulns if isinstance(v, dict) and "id" in v)
            if isinstance(result, dict) and result.get("next_page_token"):
                pending.append((package, str(result["next_page_token"])))
    return found


def _query(package: Package, token: str | None) -> dict[str, Any]:
    name, version = package
    query: dict[str, Any] = {"package": {"name": name, "ecosystem": "PyPI"}, "version": version}
    if token:
        query["page_token"] = token
    return query


def _finding(record: dict[str, Any], package: Package) -> Finding:
    name, version = package
    aliases = record.get("aliases") or []
    return Finding(
        package=name,
        version=version,
        id=str(record["id"]) if "id" in record else "unknown",
        aliases=tuple(str(alias) for alias in aliases if isinstance(alias, str)),
        fixed_versions=_fixed(record, name),
        summary=str(record.get("summary") or record.get("details") or "").strip(),
        severity=_severity(record),
    )


def _fixed(record: dict[str, Any], name: str) -> tuple[str, ...]:
    """The ``fixed`` events of the record's PyPI ranges for ``name``, sorted by PEP 440."""
    fixed: set[str] = set()
    for entry in record.get("affected") or []:
        package = entry.get("package", {}) if isinstance(entry, dict) else {}
        if str(package.get("ecosystem", "")).lower() != "pypi" or canonicalize_name(str(package.get("name"))) != name:
            continue
        for span in entry.get("ranges") or []:
            fixed.update(str(e["fixed"]) for e in span.get("events", []) if isinstance(e, dict) and "fixed" in e)
    return tuple(sorted(fixed, key=_version_key))


def _severity(record: dict[str, Any]) -> str | None:
    """GitHub's label when given, else a CVSS v3 vector (Bastion scores those), else the first score given."""
    specific = record.get("database_specific")
    if isinstance(specific, dict) and isinstance(specific.get("severity"), str):
        return str(specific["severity"]).upper()
    scores = [s for s in record.get("severity") or [] if isinstance(s, dict) and isinstance(s.get("score"), str)]
    for score in scores:
        if score.get("type") == "CVSS_V3":
            return str(score["score"])
    return str(scores[0]["score"]) if scores else None


def _version_key(raw: str) -> tuple[int, Version | str]:
    try:
        return 0, Version(raw)
    except InvalidVersion:
        return 1, raw
