"""API keys of the gateway: roles, the key value type, and how secrets are made, parsed and hashed.

A secret reads ``bst_<key id: 12 hex>_<43 url-safe characters>``. The key id is public (it names
the client in the audit log); the 43 characters carry 256 random bits from :mod:`secrets`. The
store keeps only :func:`hash_secret` of a secret, never the secret itself.

Example::

    secret = new_secret()              # shown to the operator once
    key_id_of(secret)                  # "3f9a0c1b2d4e"
    hash_secret(secret)                # what the store keeps
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

__all__ = ["KEY_ID_LENGTH", "PREFIX", "ApiKey", "Role", "hash_secret", "key_id_of", "new_secret"]

PREFIX = "bst_"
KEY_ID_LENGTH = 12  # hex characters: 48 bits, enough to name keys, not a secret
_RANDOM_BYTES = 32  # 256 bits; secrets.token_urlsafe(32) is 43 characters
_SECRET = re.compile(rf"{PREFIX}(?P<key_id>[0-9a-f]{{{KEY_ID_LENGTH}}})_[A-Za-z0-9_-]{{43}}")


class Role(str, enum.Enum):
    """What a key may do: clients query and offer data, reviewers decide, admins manage keys."""

    CLIENT = "client"
    REVIEWER = "reviewer"
    ADMIN = "admin"


@dataclass(frozen=True)
class ApiKey:
    """An API key as the store knows it: everything but the secret."""

    key_id: str
    name: str
    role: Role
    created_at: datetime  # timezone-aware UTC
    revoked: bool


def new_secret() -> str:
    """A fresh secret: ``bst_`` + a 12-hex key id + ``_`` + 43 url-safe random characters."""
    return f"{PREFIX}{secrets.token_hex(KEY_ID_LENGTH // 2)}_{secrets.token_urlsafe(_RANDOM_BYTES)}"


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest of ``secret``: what the store keeps instead of the secret."""
    # A fast, unsalted hash is right here, unlike for passwords: a secret carries 256 random bits,
    # so neither brute force nor precomputed tables can invert its digest, and a slow KDF would
    # only make every authenticated request slower. "surrogatepass" keeps any str hashable.
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def key_id_of(secret: str) -> str | None:
    """The key id inside ``secret``, or None when it is not shaped like a Bastion secret."""
    match = _SECRET.fullmatch(secret) if isinstance(secret, str) else None
    return match.group("key_id") if match else None
