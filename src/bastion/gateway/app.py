"""The app factory: a FastAPI application whose every endpoint (but ``health``) runs through the configured guards.

Request bodies are read by the guards, not by FastAPI, so that authentication, rate limits and the
size limit come before any parsing; the OpenAPI document still describes every body (see
:mod:`bastion.gateway.openapi`), which is what clients and the schemathesis tests read.

Example::

    gateway = Gateway.build(load_config("bastion.toml"))
    app = create_app(gateway)          # then: uvicorn.run(app, host=..., port=...)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

import bastion
from bastion.errors import RequestRejectedError
from bastion.gateway import openapi
from bastion.gateway.call import Call, Handler, compose
from bastion.gateway.endpoints import handlers
from bastion.gateway.guards import ENDPOINT_ROLES, build_guards, error_response
from bastion.gateway.guards.auth import PUBLIC
from bastion.gateway.keys import Role
from bastion.gateway.review.pages import page_handlers
from bastion.gateway.service import Gateway

__all__ = ["REVIEW_PAGES", "create_app"]

logger = logging.getLogger(__name__)

Route = Callable[..., Awaitable[Response]]

# The review pages (path, methods, endpoint name): served outside the OpenAPI document.
REVIEW_PAGES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("/review/login", ("GET", "POST"), "ui.login"),
    ("/review/logout", ("POST",), "ui.logout"),
    ("/review", ("GET",), "ui.home"),
    ("/review/submissions/{item_id}/image.png", ("GET",), "ui.image"),
    ("/review/{kind}/{item_id}", ("POST",), "ui.decide"),
)


def create_app(gateway: Gateway, *, close_on_shutdown: bool = True) -> FastAPI:
    """The ASGI app serving ``gateway``; its store is closed when the app shuts down."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if close_on_shutdown:
            gateway.close()

    app = FastAPI(
        title="Bastion gateway",
        version=bastion.__version__,
        description="A guarded classifier: authentication, rate limits, validation, monitors, quarantine, audit.",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    guards = build_guards(gateway)
    routes = handlers(gateway)
    routes["openapi"] = _openapi_handler(app)
    routes.update(page_handlers(gateway))
    pipelines = {name: compose(guards, _staff_only(name, handler)) for name, handler in routes.items()}
    _add_routes(app, pipelines)
    _add_error_handlers(app)
    return app


def _staff_only(endpoint: str, handler: Handler) -> Handler:
    """Endpoints for reviewers and admins stay closed without a known key, even with the auth guard switched off."""
    allowed = ENDPOINT_ROLES.get(endpoint, frozenset())
    if endpoint in PUBLIC or Role.CLIENT in allowed:
        return handler

    async def checked(call: Call) -> Response:
        if call.principal is None or call.principal.role not in allowed:
            raise RequestRejectedError("forbidden", f"{endpoint} needs a reviewer's or an admin's key", status=403)
        return await handler(call)

    return checked


def _add_routes(app: FastAPI, pipelines: dict[str, Handler]) -> None:
    def guarded(endpoint: str) -> Route:
        pipeline = pipelines[endpoint]

        async def route(request: Request) -> Response:
            return await pipeline(Call(request=request, endpoint=endpoint))

        return route

    @app.get("/v1/health", tags=["service"], summary="Liveness: answers without a key")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": bastion.__version__}

    _add_pages(app, guarded)
    for spec in openapi.ROUTES:
        app.add_api_route(
            spec.path,
            _with_parameters(guarded(spec.endpoint), spec.parameters),
            methods=[spec.method],
            summary=spec.summary,
            tags=[spec.tag],
            openapi_extra=spec.openapi_extra(),
            responses=spec.responses(),
            response_class=spec.response_class,
        )


def _add_pages(app: FastAPI, guarded: Callable[[str], Route]) -> None:
    """The review pages: outside the OpenAPI document; an unsigned-in visitor is sent to the sign-in page."""

    def page(endpoint: str) -> Route:
        route = guarded(endpoint)

        async def serve(request: Request) -> Response:
            response = await route(request)
            if response.status_code == 401 and endpoint != "ui.login":
                return RedirectResponse("/review/login", status_code=303)
            return response

        return serve

    for path, methods, endpoint in REVIEW_PAGES:
        app.add_api_route(path, page(endpoint), methods=list(methods), include_in_schema=False)


def _with_parameters(route: Route, parameters: tuple[str, ...]) -> Route:
    """The route with declared (all optional, string) parameters, so they appear in the OpenAPI document.

    They are validated by the guards and handlers, never by FastAPI: a wrong query value must not
    be refused before authentication has run.
    """
    if not parameters:
        return route

    async def with_params(request: Request, **_: str | None) -> Response:
        return await route(request)

    with_params.__signature__ = openapi.signature(parameters)  # type: ignore[attr-defined]
    return with_params


def _openapi_handler(app: FastAPI) -> Handler:
    async def serve(call: Call) -> Response:
        return JSONResponse(openapi.document(app))

    return serve


def _add_error_handlers(app: FastAPI) -> None:
    """FastAPI's own refusals (unknown path, wrong method) in the gateway's error shape; never a traceback."""

    async def http_error(request: Request, error: Exception) -> Response:
        status = error.status_code if isinstance(error, HTTPException) else 400
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "bad_request")
        headers = getattr(error, "headers", None)
        return error_response(status, code, str(getattr(error, "detail", "bad request")), "", headers)

    async def validation_error(request: Request, error: Exception) -> Response:
        return error_response(422, "bad_request", "the request does not match the endpoint's parameters", "")

    async def internal_error(request: Request, error: Exception) -> Response:
        logger.error("unhandled error outside the guards", exc_info=error)
        return error_response(500, "internal_error", "internal error", "")

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal_error)
