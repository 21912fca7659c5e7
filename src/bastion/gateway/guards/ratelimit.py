"""The rate-limit guard: per-key and global windows, and the penalty box that the monitors' "throttle" action fills.

The key of a window is the authenticated key id. Without authentication it is the peer's
address; the ``X-Forwarded-For`` header is believed only when the peer is one of the configured
``trusted_proxies`` (a client-supplied header would let anyone pick a fresh key per request).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio.to_thread
from starlette.responses import Response

from bastion.errors import RequestRejectedError
from bastion.gateway.call import Call, Handler

if TYPE_CHECKING:
    from bastion.gateway.service import Gateway

__all__ = ["Penalties", "RateLimit", "client_address"]


class Penalties:
    """Clients refused until a time, after a monitor asked to throttle them; bounded, thread-safe."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_clients: int = 100_000) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()
        self.max_clients = max_clients

    def throttle(self, client: str, seconds: float) -> None:
        with self._lock:
            if len(self._until) >= self.max_clients:
                now = self._clock()
                self._until = {c: t for c, t in self._until.items() if t > now}
            self._until[client] = self._clock() + seconds

    def remaining(self, client: str) -> float:
        with self._lock:
            until = self._until.get(client)
        return 0.0 if until is None else max(0.0, until - self._clock())


class RateLimit:
    """Refuses with 429 and ``Retry-After`` when a window is full or the client is in the penalty box."""

    name = "rate_limit"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, call: Call, call_next: Handler) -> Response:
        call.client_address = client_address(call, self.gateway.config.server.trusted_proxies)
        penalty = self.gateway.penalties.remaining(call.client)
        if penalty > 0:
            raise _too_many(
                "throttled", f"this client is throttled for review; retry in {math.ceil(penalty)} s", penalty
            )
        limiter = self.gateway.limiter
        if self.gateway.config.rate_limit.storage.startswith("memory://"):
            decision = limiter.hit(call.client)  # microseconds in memory: a thread hop would cost more than the work
        else:
            decision = await anyio.to_thread.run_sync(limiter.hit, call.client)
        if not decision.allowed:
            raise _too_many("rate_limited", f"rate limit {decision.limit} reached", decision.retry_after)
        return await call_next(call)


def client_address(call: Call, trusted_proxies: tuple[str, ...]) -> str:
    """The peer's address, or the client named by a trusted proxy's ``X-Forwarded-For`` (its last hop)."""
    peer = call.request.client.host if call.request.client is not None else ""
    if peer not in trusted_proxies:
        return peer
    forwarded = [hop.strip() for hop in call.request.headers.get("x-forwarded-for", "").split(",") if hop.strip()]
    # Walk from the nearest hop outwards, skipping our own proxies: the first other address is the client.
    for hop in reversed(forwarded):
        if hop not in trusted_proxies:
            return hop
    return peer


def _too_many(code: str, detail: str, retry_after: float) -> RequestRejectedError:
    seconds = max(1, math.ceil(retry_after))
    return RequestRejectedError(code, detail, status=429, headers={"Retry-After": str(seconds)})
