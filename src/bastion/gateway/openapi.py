"""The gateway's routes and the OpenAPI description of their bodies, which the guards (not FastAPI) read and check."""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

__all__ = ["ROUTES", "RouteSpec", "document", "signature"]

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "detail": {"type": "string"}, "request_id": {"type": "string"}},
            "required": ["code", "detail"],
        }
    },
    "required": ["error"],
}
_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
_LABEL = {"type": "integer", "minimum": 0}
_INPUTS = {"type": "array", "description": "one input (the model's input shape) or a batch of them", "items": {}}
_PREDICT = {
    "type": "object",
    "properties": {
        "prediction_ids": {"type": "array", "items": _ID},
        "labels": {"type": "array", "items": _LABEL},
        "scores": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        "top_k": {"type": "array", "items": {"type": "array", "items": {"type": "object"}}},
    },
    "required": ["prediction_ids", "labels"],
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


_UPLOAD = {"type": "string", "format": "binary"}
_BODIES: dict[str, dict[str, Any]] = {
    "predict": {
        **_json(_object({"inputs": _INPUTS}, ["inputs"])),
        "multipart/form-data": {"schema": _object({"file": _UPLOAD}, ["file"])},
    },
    "feedback": _json(
        _object(
            {"prediction_id": _ID, "correct": {"type": "boolean"}, "label": {**_LABEL, "nullable": True}},
            ["prediction_id", "correct"],
        )
    ),
    "submissions": {
        **_json(_object({"inputs": _INPUTS, "label": _LABEL}, ["inputs", "label"])),
        "multipart/form-data": {"schema": _object({"file": _UPLOAD, "label": _LABEL}, ["file", "label"])},
    },
    "review.decide": _json(
        _object(
            {
                "decision": {"type": "string", "enum": ["approve", "reject", "dismiss", "confirm"]},
                "reason": {"type": "string", "maxLength": 2000},
            },
            ["decision"],
        )
    ),
}
_RESPONSES: dict[str, tuple[int, dict[str, Any]]] = {
    "predict": (200, _PREDICT),
    "feedback": (202, _object({"feedback_id": _ID, "status": {"type": "string"}}, ["feedback_id", "status"])),
    "submissions": (202, _object({"submission_id": _ID, "status": {"type": "string"}}, ["submission_id", "status"])),
}


@dataclass(frozen=True)
class RouteSpec:
    """One guarded route: its path, method, endpoint name (which the auth guard's roles refer to) and docs."""

    path: str
    method: str
    endpoint: str
    summary: str
    tag: str
    parameters: tuple[str, ...] = ()

    @property
    def response_class(self) -> type[Response]:
        return PlainTextResponse if self.endpoint == "metrics" else JSONResponse

    def openapi_extra(self) -> dict[str, Any]:
        body = _BODIES.get(self.endpoint)
        return {"requestBody": {"required": True, "content": body}} if body else {}

    def responses(self) -> dict[int | str, dict[str, Any]]:
        status, schema = _RESPONSES.get(self.endpoint, (200, {"type": "object"}))
        out: dict[int | str, dict[str, Any]] = {status: {"description": "OK", "content": _json(schema)}}
        if self.endpoint == "metrics":
            out = {
                200: {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            }
        elif self.endpoint == "review.image":
            out = {200: {"description": "the input as PNG", "content": {"image/png": {"schema": _UPLOAD}}}}
        for code, why in self._refusals():
            out[code] = {"description": why, "content": _json(_ERROR)}
        return out

    def _refusals(self) -> list[tuple[int, str]]:
        """The 4xx answers this route can give (the size guard reads every request's Content-Length)."""
        refusals = [
            (400, "malformed request: JSON or Content-Length"),
            (401, "no or unknown API key"),
            (403, "role not allowed"),
            (413, "request body too large"),
            (422, "invalid request"),
            (429, "rate limited"),
        ]
        if self.endpoint in _BODIES:
            refusals.append((415, "unsupported media type or image format"))
        if _PATH_PARAMETERS & set(self.parameters) or self.endpoint == "feedback":
            refusals.append((404, "no such item, queue or prediction"))
        return sorted(refusals)


ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("/v1/predict", "POST", "predict", "Classify a batch (JSON) or one uploaded image", "model"),
    RouteSpec(
        "/v1/feedback", "POST", "feedback", "Say an earlier prediction was right or wrong (quarantined)", "model"
    ),
    RouteSpec("/v1/submissions", "POST", "submissions", "Offer a labelled training example (quarantined)", "model"),
    RouteSpec(
        "/v1/review/{kind}",
        "GET",
        "review.list",
        "List feedback, submissions or flags",
        "review",
        ("kind", "status", "limit"),
    ),
    RouteSpec("/v1/review/submissions/{item_id}", "GET", "review.item", "One submission", "review", ("item_id",)),
    RouteSpec(
        "/v1/review/submissions/{item_id}/image.png",
        "GET",
        "review.image",
        "A submission's input as PNG",
        "review",
        ("item_id",),
    ),
    RouteSpec(
        "/v1/review/{kind}/{item_id}",
        "POST",
        "review.decide",
        "Approve or reject an item",
        "review",
        ("kind", "item_id"),
    ),
    RouteSpec("/v1/audit", "GET", "audit", "The audit log, newest first", "admin", ("client", "limit")),
    RouteSpec("/metrics", "GET", "metrics", "Prometheus metrics", "admin"),
    RouteSpec("/v1/openapi.json", "GET", "openapi", "This document", "service"),
)

_PATH_PARAMETERS = {"kind", "item_id"}
_PUBLIC_PATHS = ("/v1/health",)


def signature(parameters: tuple[str, ...]) -> inspect.Signature:
    """A route signature declaring ``parameters`` as optional strings (path ones required), after the request."""
    from fastapi import Path, Query

    declared = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)]
    for name in parameters:
        default: Any = Path() if name in _PATH_PARAMETERS else Query(default=None)
        annotation: Any = str if name in _PATH_PARAMETERS else (str | None)
        declared.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
    return inspect.Signature(declared)


def document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document with the API-key scheme every endpoint but health needs."""
    doc = copy.deepcopy(app.openapi())  # FastAPI caches its document: never change that one
    components = dict(doc.get("components", {}))
    components["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
    doc["components"] = components
    doc["security"] = [{"apiKey": []}]
    for path in _PUBLIC_PATHS:  # answered without a key
        for operation in doc["paths"].get(path, {}).values():
            operation["security"] = []
    return doc
