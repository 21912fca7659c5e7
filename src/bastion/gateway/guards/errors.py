"""The error boundary: every failure becomes a JSON answer with a stable code; no traceback leaves the gateway."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse, Response

from bastion.errors import BastionError, RequestRejectedError
from bastion.gateway.call import Call, Handler

if TYPE_CHECKING:
    from bastion.gateway.service import Gateway

__all__ = ["ErrorBoundary", "error_response"]

logger = logging.getLogger(__name__)


def error_response(
    status: int, code: str, detail: str, request_id: str, headers: dict[str, str] | None = None
) -> Response:
    """The one shape every refusal and failure takes: ``{"error": {"code", "detail", "request_id"}}``."""
    body = {"error": {"code": code, "detail": detail, "request_id": request_id}}
    return JSONResponse(body, status_code=status, headers={**(headers or {}), "x-bastion-error": code})


class ErrorBoundary:
    """Outermost guard: rejections keep their 4xx and code; Bastion errors their status; anything else is a 500."""

    name = "error_boundary"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, call: Call, call_next: Handler) -> Response:
        try:
            return await call_next(call)
        except RequestRejectedError as error:
            self.gateway.metrics.observe_rejection(error.code)
            return error_response(error.status, error.code, error.detail, call.request_id, error.headers)
        except BastionError as error:
            logger.warning("request %s failed: %s", call.request_id, error)
            return error_response(error.http_status, error.code, str(error), call.request_id)
        except Exception:
            logger.exception("request %s failed", call.request_id)
            detail = "internal error; the request id is in the gateway's log"
            return error_response(500, "internal_error", detail, call.request_id)
