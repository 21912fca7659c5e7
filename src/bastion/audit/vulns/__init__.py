"""Vulnerability services: an offline OSV database, the OSV API and PyPI's JSON API behind one protocol."""

from __future__ import annotations

import httpx

from bastion.audit.vulns.httpio import OnlineService
from bastion.audit.vulns.interface import DEFAULT_TIMEOUT, Package, VulnerabilityResults, VulnerabilityService
from bastion.audit.vulns.offline import OfflineService
from bastion.audit.vulns.osv_api import OSV_URL, OsvService
from bastion.audit.vulns.pypi import PYPI_URL, PyPIService
from bastion.errors import ConfigError

__all__ = [
    "DEFAULT_TIMEOUT",
    "ONLINE_SERVICES",
    "OSV_URL",
    "PYPI_URL",
    "OfflineService",
    "OsvService",
    "Package",
    "PyPIService",
    "VulnerabilityResults",
    "VulnerabilityService",
    "online_service",
]

# --service name -> implementation; read by the CLI, run_audit and docs/audit.md.
ONLINE_SERVICES: dict[str, type[OnlineService]] = {"osv": OsvService, "pypi": PyPIService}


def online_service(
    name: str,
    *,
    base_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    transport: httpx.BaseTransport | None = None,
) -> VulnerabilityService:
    """The online service called ``name`` (a key of :data:`ONLINE_SERVICES`), at its public URL unless told."""
    if name not in ONLINE_SERVICES:
        raise ConfigError(f"unknown vulnerability service {name!r}; expected one of {sorted(ONLINE_SERVICES)}")
    if timeout <= 0:
        raise ConfigError(f"expected a service timeout > 0 seconds, got {timeout}")
    return ONLINE_SERVICES[name](base_url=base_url, timeout=timeout, transport=transport)
