"""The authentication guard: an API key on every request (``Authorization: Bearer`` or ``X-API-Key``), and roles.

Keys are looked up by their hash (see :mod:`bastion.gateway.keys`); a lookup is remembered for
``cache_seconds`` so that a burst of predictions does not hit the store once each, which also
means a revoked key keeps working for at most that long in each process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio.to_thread
from starlette.responses import Response

from bastion.errors import RequestRejectedError
from bastion.gateway.call import Call, Handler
from bastion.gateway.keys import ApiKey, Role, hash_secret
from bastion.gateway.review.session import COOKIE

if TYPE_CHECKING:
    from bastion.gateway.service import Gateway

__all__ = ["ENDPOINT_ROLES", "PUBLIC", "Authentication"]

_ALL = frozenset(Role)
_REVIEW = frozenset({Role.REVIEWER, Role.ADMIN})
# Who may call what; an endpoint missing here is refused to everyone (deny by default).
ENDPOINT_ROLES: dict[str, frozenset[Role]] = {
    "predict": _ALL,
    "feedback": _ALL,
    "submissions": _ALL,
    "openapi": _ALL,
    "review.list": _REVIEW,
    "review.item": _REVIEW,
    "review.decide": _REVIEW,
    "review.image": _REVIEW,
    "audit": frozenset({Role.ADMIN}),
    "metrics": frozenset({Role.ADMIN}),
    "ui.home": _REVIEW,
    "ui.decide": _REVIEW,
    "ui.image": _REVIEW,
    "ui.logout": _REVIEW,
}
# Endpoints anyone may reach (still audited and rate limited by address): the review sign-in page.
PUBLIC = frozenset({"ui.login"})


class Authentication:
    """Refuses a missing or unknown key (401) and a role the endpoint does not admit (403)."""

    name = "auth"

    def __init__(self, gateway: Gateway, *, cache_seconds: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.gateway = gateway
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()

    async def __call__(self, call: Call, call_next: Handler) -> Response:
        if call.endpoint in PUBLIC:
            return await call_next(call)
        key = await self._session_key(call) if call.endpoint.startswith("ui.") else await self._api_key(call)
        call.principal = key
        allowed = ENDPOINT_ROLES.get(call.endpoint, frozenset())
        if key.role not in allowed:
            roles = ", ".join(sorted(r.value for r in allowed)) or "no role"
            raise RequestRejectedError(
                "forbidden", f"role {key.role.value!r} may not call {call.endpoint}; allowed: {roles}", status=403
            )
        return await call_next(call)

    async def _api_key(self, call: Call) -> ApiKey:
        secret = _presented_secret(call)
        if secret is None:
            raise _unauthorised("missing_api_key", "an API key is required: send 'Authorization: Bearer <key>'")
        key = self._cached(secret)
        if key is None:
            key = await anyio.to_thread.run_sync(self.gateway.store.authenticate, secret)
            self._remember(secret, key)
        if key is None:
            raise _unauthorised("invalid_api_key", "the API key is unknown or revoked")
        return key

    async def _session_key(self, call: Call) -> ApiKey:
        """The review pages' signed session cookie (see :mod:`bastion.gateway.review.session`)."""
        key_id = self.gateway.sessions.verify(call.request.cookies.get(COOKIE))
        key = await anyio.to_thread.run_sync(self.gateway.store.get_key, key_id) if key_id is not None else None
        if key is None or key.revoked:
            raise _unauthorised("login_required", "sign in at /review/login")
        return key

    def _cached(self, secret: str) -> ApiKey | None:
        digest = hash_secret(secret)
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and self._clock() - hit[0] < self.cache_seconds:
            return hit[1]
        return None

    def _remember(self, secret: str, key: ApiKey | None) -> None:
        if key is None:
            return  # never cache a miss: a key created a moment ago must work at once
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[hash_secret(secret)] = (self._clock(), key)


def _presented_secret(call: Call) -> str | None:
    headers = call.request.headers
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    key = headers.get("x-api-key")
    return key.strip() if key else None


def _unauthorised(code: str, detail: str) -> RequestRejectedError:
    return RequestRejectedError(code, detail, status=401, headers={"WWW-Authenticate": 'Bearer realm="bastion"'})
