"""The offline service: a local OSV database folder or zip (:class:`~bastion.audit.osv.OsvDatabase`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bastion.audit.deps import audit_dependencies
from bastion.audit.osv import OsvDatabase
from bastion.audit.vulns.interface import Package, VulnerabilityResults

__all__ = ["OfflineService"]


class OfflineService:
    """Match packages against an :class:`OsvDatabase` already in memory; nothing is fetched."""

    def __init__(self, database: OsvDatabase, *, source: str = "memory") -> None:
        self.database = database
        self.source = source

    @classmethod
    def load(cls, path: str | Path) -> OfflineService:
        """Read the database at ``path`` (a folder or zip of OSV JSON records)."""
        return cls(OsvDatabase.load(path), source=str(path))

    @property
    def description(self) -> str:
        return f"offline OSV database {self.source} ({len(self.database)} advisories)"

    def query(self, packages: Sequence[Package]) -> VulnerabilityResults:
        return VulnerabilityResults(self.description, tuple(audit_dependencies(packages, self.database)))
