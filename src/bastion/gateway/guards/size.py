"""The size guard: a body over the limit is refused from its ``Content-Length``, or as soon as it grows past it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from bastion.errors import RequestRejectedError
from bastion.gateway.call import Call, Handler

if TYPE_CHECKING:
    from bastion.gateway.service import Gateway

__all__ = ["SizeLimit"]


class SizeLimit:
    """Refuses before parsing: 413 ``body_too_large``; a malformed ``Content-Length`` is a 400."""

    name = "size_limit"

    def __init__(self, gateway: Gateway) -> None:
        self.limit = gateway.config.server.max_body_bytes

    async def __call__(self, call: Call, call_next: Handler) -> Response:
        declared = call.request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise RequestRejectedError(
                    "bad_content_length", f"Content-Length must be a number, got {declared[:40]!r}"
                )
            if int(declared) > self.limit:
                raise RequestRejectedError(
                    "body_too_large", f"request body of {declared} bytes exceeds the limit of {self.limit}", status=413
                )
        # A chunked body has no Content-Length: the reader stops it once it passes the limit.
        call.max_body = self.limit
        return await call_next(call)
