"""The audit guard: one audit event per request, with who, what, the outcome and its code; never a secret or a body."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from starlette.responses import Response

from bastion.errors import BastionError, RequestRejectedError
from bastion.gateway.call import Call, Handler
from bastion.gateway.store import AuditEvent

if TYPE_CHECKING:
    from bastion.gateway.service import Gateway

__all__ = ["Audit"]


class Audit:
    """Records the request after it is answered (or fails), and counts it in the metrics."""

    name = "audit"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, call: Call, call_next: Handler) -> Response:
        try:
            response = await call_next(call)
        except RequestRejectedError as error:
            self._record(call, error.status, "rejected", error.code, error.detail)
            raise
        except BastionError as error:
            self._record(call, error.http_status, "error", error.code, str(error))
            raise
        except Exception as error:
            self._record(call, 500, "error", "internal_error", type(error).__name__)
            raise
        code, detail = _error_of(response)
        self._record(call, response.status_code, "ok" if response.status_code < 400 else "rejected", code, detail)
        return response

    def _record(self, call: Call, status: int, outcome: str, code: str | None, detail: str) -> None:
        seconds = time.perf_counter() - call.started
        self.gateway.metrics.observe_request(call.endpoint, status, seconds)
        request = call.request
        event = AuditEvent(
            request_id=call.request_id,
            time=datetime.now(UTC),
            client=call.principal.key_id if call.principal is not None else None,
            role=call.principal.role if call.principal is not None else None,
            endpoint=call.endpoint,
            action=f"{request.method} {request.url.path}",
            outcome=outcome,
            status=status,
            code=code,
            detail=detail[:500],
            duration_ms=seconds * 1000.0,
        )
        self.gateway.recorder.add(event)


def _error_of(response: Response) -> tuple[str | None, str]:
    """The code of a refusal answered by an inner guard (the error boundary may sit inside the audit)."""
    code = response.headers.get("x-bastion-error")
    return code, ""
