"""The vulnerability service protocol and its answer: findings per pinned package, and notices.

A service takes ``(name, version)`` pairs and answers which advisories apply to each; one module
per implementation (:mod:`.offline` over a local OSV database, :mod:`.osv_api` over the OSV API,
:mod:`.pypi` over PyPI's JSON API). A service that cannot be reached raises
:class:`~bastion.errors.AdvisoryServiceError` naming its URL; a package the service does not know
is a notice in the answer, not an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bastion.audit.deps import Finding

__all__ = ["DEFAULT_TIMEOUT", "Package", "VulnerabilityResults", "VulnerabilityService"]

Package = tuple[str, str]  # (PEP 503 normalised name, version)
DEFAULT_TIMEOUT = 30.0  # seconds per HTTP request


@dataclass(frozen=True)
class VulnerabilityResults:
    """What a service answered: the findings, what it could not tell (notices), and who answered."""

    service: str  # e.g. "OSV API https://api.osv.dev" or "offline OSV database db.zip"
    findings: tuple[Finding, ...]
    notices: tuple[str, ...] = ()

    def by_package(self) -> dict[Package, tuple[Finding, ...]]:
        """The findings grouped by ``(name, version)``."""
        grouped: dict[Package, list[Finding]] = {}
        for finding in self.findings:
            grouped.setdefault((finding.package, finding.version), []).append(finding)
        return {key: tuple(items) for key, items in grouped.items()}


class VulnerabilityService(Protocol):
    """Anything that can say which advisories apply to pinned packages."""

    @property
    def description(self) -> str:
        """The service and where it reads from, for the report."""
        ...

    def query(self, packages: Sequence[Package]) -> VulnerabilityResults:
        """The advisories for each of ``packages``; AdvisoryServiceError when the service cannot answer."""
        ...
