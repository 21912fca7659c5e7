"""The guards, one module each, and the registry the configuration's ``guards`` list names them from."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bastion.gateway.call import Guard
from bastion.gateway.guards.audit import Audit
from bastion.gateway.guards.auth import ENDPOINT_ROLES, Authentication
from bastion.gateway.guards.errors import ErrorBoundary, error_response
from bastion.gateway.guards.model import ModelGuard
from bastion.gateway.guards.monitors import Monitors, MonitorSlot
from bastion.gateway.guards.output import OutputPolicyGuard
from bastion.gateway.guards.ratelimit import Penalties, RateLimit
from bastion.gateway.guards.size import SizeLimit
from bastion.gateway.guards.validation import Validation

if TYPE_CHECKING:
    from bastion.gateway.service import Gateway

__all__ = [
    "ENDPOINT_ROLES",
    "GUARDS",
    "Audit",
    "Authentication",
    "ErrorBoundary",
    "ModelGuard",
    "MonitorSlot",
    "Monitors",
    "OutputPolicyGuard",
    "Penalties",
    "RateLimit",
    "SizeLimit",
    "Validation",
    "build_guards",
    "error_response",
]

GUARDS: dict[str, Callable[[Gateway], Guard]] = {
    "error_boundary": ErrorBoundary,
    "audit": Audit,
    "auth": Authentication,
    "rate_limit": RateLimit,
    "size_limit": SizeLimit,
    "validation": Validation,
    "model": ModelGuard,
    "monitors": Monitors,
    "output_policy": OutputPolicyGuard,
}


def build_guards(gateway: Gateway) -> list[Guard]:
    """The configured guards, outside-in."""
    return [GUARDS[name](gateway) for name in gateway.config.guards]
