"""PyPI's JSON API (https://docs.pypi.org/api/json/): ``GET /pypi/{name}/{version}/json``, its ``vulnerabilities``.

PyPI attaches the OSV advisories of a release to its JSON (``id``, ``aliases``, ``summary``,
``details``, ``fixed_in``, ``withdrawn``), without a severity, so its findings are ``unknown``
unless another source rates them. A release PyPI does not know (404) is a notice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bastion.audit.deps import Finding
from bastion.audit.vulns.httpio import NOT_FOUND, OnlineService, request_json
from bastion.audit.vulns.interface import Package, VulnerabilityResults
from bastion.errors import AdvisoryServiceError

__all__ = ["PYPI_URL", "PyPIService"]

PYPI_URL = "https://pypi.org"


class PyPIService(OnlineService):
    """Query PyPI's JSON API at ``base_url``, one request per package; ``transport`` replaces the network."""

    title = "PyPI JSON API"
    default_url = PYPI_URL

    def query(self, packages: Sequence[Package]) -> VulnerabilityResults:
        findings: list[Finding] = []
        notices: list[str] = []
        with self.client() as http:
            for name, version in packages:
                answer = request_json(http, "GET", f"/pypi/{name}/{version}/json")
                if answer is NOT_FOUND:
                    notices.append(f"{name} {version} is not on {self.description}; its advisories are unknown")
                    continue
                if not isinstance(answer, dict) or not isinstance(answer.get("vulnerabilities", []), list):
                    raise AdvisoryServiceError(
                        f"{self.description}: /pypi/{name}/{version}/json has no 'vulnerabilities' list"
                    )
                items = answer.get("vulnerabilities", [])
                findings.extend(_finding(i, name, version) for i in items if not _withdrawn(i))
        ordered = sorted(set(findings), key=lambda f: (f.package, f.version, f.id))
        return VulnerabilityResults(self.description, tuple(ordered), tuple(notices))


def _finding(item: Any, name: str, version: str) -> Finding:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise AdvisoryServiceError(f"PyPI: a vulnerability of {name} {version} has no string 'id': {item!r}")
    return Finding(
        package=name,
        version=version,
        id=item["id"],
        aliases=tuple(str(alias) for alias in item.get("aliases") or ()),
        fixed_versions=tuple(str(fixed) for fixed in item.get("fixed_in") or ()),
        summary=str(item.get("summary") or item.get("details") or "").strip(),
        severity=None,
    )


def _withdrawn(item: Any) -> bool:
    return isinstance(item, dict) and bool(item.get("withdrawn"))
