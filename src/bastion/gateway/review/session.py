"""Signed session cookies for the review pages: ``key_id.expiry.signature``, HMAC-SHA256 under a per-gateway secret.

The cookie names a key, never holds its secret; it is HttpOnly and SameSite=Strict, and every form
also carries a CSRF token derived from the session, so that another site can neither read nor
forge a reviewer's decision.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

__all__ = ["COOKIE", "Sessions"]

COOKIE = "bastion_session"


class Sessions:
    """Issues and checks session tokens; ``clock`` is injectable for tests."""

    def __init__(
        self, secret: str = "", *, ttl_seconds: float = 8 * 3600, clock: Callable[[], float] = time.time
    ) -> None:
        # Without a configured secret each process makes its own: sessions then end when it restarts.
        self._secret = secret.encode("utf-8") if secret else secrets.token_bytes(32)
        self.ttl_seconds = ttl_seconds
        self._clock = clock

    def issue(self, key_id: str) -> str:
        payload = f"{key_id}.{int(self._clock() + self.ttl_seconds)}"
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: str | None) -> str | None:
        """The key id of a valid, unexpired token; None for anything else."""
        if not token or token.count(".") != 2:
            return None
        key_id, expiry, signature = token.split(".")
        if not hmac.compare_digest(signature, self._sign(f"{key_id}.{expiry}")):
            return None
        if not expiry.isdigit() or int(expiry) < self._clock():
            return None
        return key_id

    def csrf_token(self, token: str) -> str:
        return self._sign(f"csrf:{token}")

    def check_csrf(self, token: str, presented: str) -> bool:
        return hmac.compare_digest(self.csrf_token(token), presented)

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode("utf-8"), hashlib.sha256).hexdigest()
