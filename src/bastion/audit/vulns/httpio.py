"""The HTTP plumbing the online services share: one ``httpx`` client, errors mapped to AdvisoryServiceError."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import httpx

from bastion.audit.vulns.interface import DEFAULT_TIMEOUT, Package, VulnerabilityResults
from bastion.errors import AdvisoryServiceError

__all__ = ["NOT_FOUND", "OnlineService", "client", "request_json"]

NOT_FOUND = object()  # request_json's answer to a 404


class OnlineService:
    """Where an online advisory service answers, and how long to wait; ``transport`` replaces the network.

    Each service sets ``title`` (for the report) and ``default_url`` (its public address).
    """

    title: ClassVar[str]
    default_url: ClassVar[str]

    def __init__(
        self,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url or self.default_url
        self.timeout = timeout
        self.transport = transport

    @property
    def description(self) -> str:
        return f"{self.title} {self.base_url}"

    def client(self) -> httpx.Client:
        return client(self.base_url, timeout=self.timeout, transport=self.transport)

    def query(self, packages: Sequence[Package]) -> VulnerabilityResults:
        """The advisories of each ``(name, version)``, as :class:`~bastion.audit.vulns.VulnerabilityService` says."""
        raise NotImplementedError(f"{type(self).__name__} must implement query()")


def client(base_url: str, *, timeout: float, transport: httpx.BaseTransport | None) -> httpx.Client:
    """A client for ``base_url``; ``transport`` replaces the network (tests, proxies)."""
    return httpx.Client(
        base_url=base_url,
        timeout=timeout,
        transport=transport,
        headers={"User-Agent": "bastion-audit"},
        follow_redirects=True,
    )


def request_json(http: httpx.Client, method: str, path: str, *, json: Any = None) -> Any:
    """The JSON body of a request, :data:`NOT_FOUND` on 404; AdvisoryServiceError naming the URL otherwise."""
    request = http.build_request(method, path, json=json)
    url = str(request.url)
    try:
        response = http.send(request)
    except httpx.TransportError as exc:
        raise AdvisoryServiceError(f"vulnerability service {url} is unreachable: {exc or type(exc).__name__}") from exc
    if response.status_code == 404:
        return NOT_FOUND
    if response.status_code != 200:
        raise AdvisoryServiceError(f"vulnerability service {url} answered HTTP {response.status_code}; expected 200")
    try:
        return response.json()
    except ValueError as exc:
        raise AdvisoryServiceError(f"vulnerability service {url} answered something that is not JSON: {exc}") from exc
