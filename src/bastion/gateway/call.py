"""One request on its way through the guards: the :class:`Call` they share, and the :class:`Guard` protocol.

A guard is an object with ``async __call__(call, call_next) -> Response``: it may refuse the call
(raise :class:`~bastion.errors.RequestRejectedError`), add to it (the authenticated key, the decoded
inputs, the model's scores) and pass it on, and look at or change the response on the way back.
The stack is read outside-in, like Starlette's middleware list: the first guard sees the request
first and the response last.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from bastion.errors import RequestRejectedError
from bastion.gateway.keys import ApiKey

__all__ = ["Call", "Guard", "Handler", "compose"]

Handler = Callable[["Call"], Awaitable[Response]]
# Read beyond any configured limit only when the size guard is switched off; still never unbounded.
_HARD_BODY_CAP = 256 * 1024 * 1024


@dataclass(eq=False)
class Call:
    """What the guards know about one request, filled in as it goes inwards."""

    request: Request
    endpoint: str  # a stable name: "predict", "feedback", "review.decide", ...
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.perf_counter)
    principal: ApiKey | None = None  # set by the auth guard
    client_address: str = ""  # set by the rate-limit guard (the peer, or the trusted proxy's client)
    max_body: int = _HARD_BODY_CAP  # lowered by the size guard
    payload: dict[str, Any] | None = None  # the decoded JSON body or form fields
    inputs: np.ndarray | None = None  # decoded model inputs, (n, *input_shape) float32
    probs: np.ndarray | None = None  # the model's probabilities, (n, num_classes)
    prediction_ids: list[str] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)  # the response body being built
    status: int = 200
    _body: bytes | None = None

    @property
    def client(self) -> str:
        """Who is calling: the key id when authenticated, else the network address."""
        if self.principal is not None:
            return self.principal.key_id
        return f"addr:{self.client_address or 'unknown'}"

    @property
    def role(self) -> str:
        return self.principal.role.value if self.principal is not None else "anonymous"

    async def body(self) -> bytes:
        """The request body, read once, refused as soon as it grows past ``max_body``."""
        if self._body is None:
            chunks: list[bytes] = []
            size = 0
            async for chunk in self.request.stream():
                size += len(chunk)
                if size > self.max_body:
                    raise RequestRejectedError(
                        "body_too_large", f"request body exceeds {self.max_body} bytes", status=413
                    )
                chunks.append(chunk)
            self._body = b"".join(chunks)
        return self._body


class Guard(Protocol):
    """One layer of protection; see the module docstring."""

    name: str

    async def __call__(self, call: Call, call_next: Handler) -> Response: ...


def compose(guards: Sequence[Guard], handler: Handler) -> Handler:
    """The handler wrapped in ``guards``, the first one outermost."""
    wrapped = handler
    for guard in reversed(guards):
        wrapped = _bind(guard, wrapped)
    return wrapped


def _bind(guard: Guard, inner: Handler) -> Handler:
    async def run(call: Call) -> Response:
        return await guard(call, inner)

    return run
