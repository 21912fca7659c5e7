"""What a gateway decodes and with which libraries: its model file, the request formats, their advisory status.

Part of the attack-surface map (:mod:`bastion.audit.surface`). The formats come from each route's
OpenAPI request body (:data:`bastion.gateway.openapi.ROUTES`); library versions from
:mod:`importlib.metadata` of the running interpreter; a library is "vulnerable" when one of the
dependency findings (issue 8, part 1) names its package. The model file is sniffed by its bytes
(:func:`bastion.models.files.sniff_format`), never loaded.
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from packaging.utils import canonicalize_name

from bastion.audit.deps import Finding
from bastion.errors import ModelError, NotFoundError

if TYPE_CHECKING:  # imported where used: the model loaders import bastion.audit, and the gateway imports them
    from bastion.gateway.config import GatewayConfig

__all__ = [
    "InputFormat",
    "Library",
    "LibraryStatus",
    "ModelSurface",
    "body_formats",
    "format_table",
    "library_table",
    "model_surface",
]

logger = logging.getLogger(__name__)

LibraryStatus = Literal["vulnerable", "no known advisories", "not audited", "not installed", "not covered"]
# From worst to best: a format is as bad as its worst decoder.
_SEVERITY: tuple[LibraryStatus, ...] = (
    "vulnerable",
    "not installed",
    "not audited",
    "not covered",
    "no known advisories",
)

# The JSON decoder is the standard library's; the PyPI advisory database does not cover CPython itself.
CPYTHON = "cpython"
_MANIFEST = "manifest.json"  # a hardened model's manifest, beside its weights (bastion.harden.save)
_MANIFEST_MAX_BYTES = 1_000_000

# The HTTP stack: (distribution, what it does here, listed even when not installed).
_HTTP_LIBRARIES = (
    ("uvicorn", "HTTP server", True),
    ("h11", "HTTP/1.1 parser (uvicorn's pure-Python one)", True),
    ("httptools", "HTTP/1.1 parser (uvicorn's C one, used when installed)", False),
    ("starlette", "routing, cookies, request bodies", True),
    ("fastapi", "the application and its error handlers", True),
)
# Which libraries read each model format (bastion.models.open).
_LOADERS = {
    "demo": ("torch", "safetensors"),
    "safetensors": ("torch", "safetensors"),
    "torchscript": ("torch",),
    "torch.export": ("torch",),
    "pytorch pickle checkpoint": ("torch",),
    "onnx": ("onnxruntime",),
    "skops": ("skops", "scikit-learn"),
    "pickle": ("joblib", "scikit-learn"),
}


@dataclass(frozen=True)
class Library:
    """A library on the request path or behind the model, with its advisory status."""

    package: str  # PEP 503 normalised distribution name
    version: str | None
    used_for: str
    status: LibraryStatus
    advisories: tuple[str, ...]


@dataclass(frozen=True)
class InputFormat:
    """One accepted format: where, within what limits, decoded by which libraries."""

    key: str
    name: str
    accepted: bool
    endpoints: tuple[str, ...]
    limits: tuple[str, ...]
    decoders: tuple[str, ...]  # Library.package values
    status: LibraryStatus  # the worst status among the decoders


@dataclass(frozen=True)
class ModelSurface:
    """The deployed model as the map sees it (the file sniffed, never loaded)."""

    source: str
    format: str  # "demo", a ModelFormat value, "missing" or "damaged"
    loaders: tuple[str, ...]
    input_shape: tuple[int, ...] | None
    images_accepted: bool
    hardening: str | None  # the adversarial-training method named by the model's manifest
    trust_pickle: bool
    trust_model_file: bool


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


def model_surface(config: GatewayConfig) -> ModelSurface:
    """The configured model: its format from its bytes, its input shape, and whether a manifest says it is hardened."""
    settings = config.model
    if settings.source.startswith("demo:"):
        fmt, hardening = "demo", None
        shape = settings.input_shape or _demo_input_shape(settings.source[5:])
    else:
        fmt, hardening = _sniff(Path(settings.source)), _hardening(Path(settings.source))
        shape = settings.input_shape
    return ModelSurface(
        source=settings.source,
        format=fmt,
        loaders=_LOADERS.get(fmt, ()),
        input_shape=shape,
        images_accepted=shape is not None and len(shape) == 3 and shape[0] in (1, 3),
        hardening=hardening,
        trust_pickle=settings.trust_pickle,
        trust_model_file=settings.trust_model_file,
    )


def _demo_input_shape(name: str) -> tuple[int, ...] | None:
    from bastion.data.demo import DEMO_DATASETS, load_demo

    return load_demo(name, "test").input_shape if name in DEMO_DATASETS else None


def _sniff(path: Path) -> str:
    from bastion.models.files import sniff_format

    try:
        return sniff_format(path).value
    except NotFoundError:
        return "missing"
    except ModelError:
        return "damaged"


def _hardening(model_file: Path) -> str | None:
    """The method a hardened model's manifest names (``bastion harden`` writes it beside the weights)."""
    manifest = model_file.parent / _MANIFEST
    try:
        if not manifest.is_file() or manifest.stat().st_size > _MANIFEST_MAX_BYTES:
            return None
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        logger.warning("ignoring an unreadable model manifest %s", manifest)
        return None
    if not isinstance(data, dict) or data.get("weights", model_file.name) != model_file.name:
        return None  # a manifest of other weights says nothing about this file
    method = data.get("method")
    return method if isinstance(method, str) and method else None


# ---------------------------------------------------------------------------------------------
# Libraries
# ---------------------------------------------------------------------------------------------


def library_table(
    config: GatewayConfig, model: ModelSurface, findings: Sequence[Finding], *, audited: bool
) -> tuple[Library, ...]:
    """The libraries this configuration puts on the request path and behind the model, each with its status."""
    wanted: list[tuple[str, str, bool]] = list(_HTTP_LIBRARIES)
    wanted += [
        (CPYTHON, "JSON bodies (the standard library's json)", True),
        ("numpy", "model inputs as arrays", True),
        ("python-multipart", "multipart uploads and the review pages' forms", True),
        ("pillow", "image uploads" if model.images_accepted else "review images (PNG encoding only)", True),
        ("jinja2", "the review pages", True),
        ("sqlalchemy", "the store", True),
    ]
    if config.store.url.startswith("postgresql"):
        wanted.append(("psycopg", "the store's PostgreSQL driver", True))
    wanted.append(("limits", "rate-limit windows", True))
    if config.rate_limit.storage.startswith("redis"):
        wanted.append(("redis", "rate-limit counts in Redis", True))
    wanted += [(package, f"loading the model ({model.format})", True) for package in model.loaders]
    rows: dict[str, Library] = {}
    for package, used_for, required in wanted:
        row = _library(package, used_for, findings, audited=audited)
        if row.package not in rows and (required or row.status != "not installed"):
            rows[row.package] = row
    return tuple(rows.values())


def _library(package: str, used_for: str, findings: Sequence[Finding], *, audited: bool) -> Library:
    """One library's version and status; a finding counts by package name, whatever version it was found in."""
    name = canonicalize_name(package)
    if name == CPYTHON:
        return Library(name, platform.python_version(), used_for, "not covered", ())
    version = _installed(name)
    matching = sorted((f for f in findings if canonicalize_name(f.package) == name), key=lambda f: f.id)
    status: LibraryStatus
    if version is None:
        status = "not installed"
    elif matching:
        status = "vulnerable"
    else:
        status = "no known advisories" if audited else "not audited"
    return Library(name, version, used_for, status, tuple(_advisory(f) for f in matching))


def _installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _advisory(finding: Finding) -> str:
    fixed = ", ".join(finding.fixed_versions) or "no fixed release"
    return f"{finding.id} ({finding.package} {finding.version}; fixed in {fixed})"


# ---------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------


def body_formats(openapi_extra: Mapping[str, Any]) -> tuple[str, ...]:
    """The format keys a route's documented request body admits ("json", "inputs", "image")."""
    content: Mapping[str, Any] = openapi_extra.get("requestBody", {}).get("content", {})
    accepts: list[str] = []
    if "application/json" in content:
        accepts.append("json")
        if "inputs" in content["application/json"]["schema"].get("properties", {}):
            accepts.append("inputs")
    if "file" in content.get("multipart/form-data", {}).get("schema", {}).get("properties", {}):
        accepts.append("image")  # the validation guard also takes the image as the raw body
    return tuple(accepts)


def format_table(config: GatewayConfig, model: ModelSurface, libraries: tuple[Library, ...]) -> tuple[InputFormat, ...]:
    """Every format the gateway decodes, in the order a request meets them, then the model file."""
    from bastion.gateway.openapi import ROUTES

    where: dict[str, list[str]] = {}
    for spec in ROUTES:
        for key in body_formats(spec.openapi_extra()):
            where.setdefault(key, []).append(f"{spec.method} {spec.path}")
    status = {library.package: library.status for library in libraries}
    rows = (
        _http(config, status),
        _json(config, where),
        _inputs(config, model, where),
        _image(config, model, where),
        _form(),
        _model_file(model),
    )
    return tuple(
        InputFormat(
            key=key,
            name=name,
            accepted=accepted,
            endpoints=endpoints,
            limits=limits,
            decoders=decoders,
            status=min((status.get(d, "not installed") for d in decoders), key=_SEVERITY.index, default="not covered"),
        )
        for key, name, accepted, endpoints, limits, decoders in rows
    )


_Row = tuple[str, str, bool, tuple[str, ...], tuple[str, ...], tuple[str, ...]]


def _body_limit(config: GatewayConfig) -> str:
    if "size_limit" not in config.guards:
        return "no body-size limit before parsing: the size_limit guard is off"
    return f"body at most {config.server.max_body_bytes} bytes (size_limit guard)"


def _http(config: GatewayConfig, status: Mapping[str, LibraryStatus]) -> _Row:
    decoders = tuple(name for name, _, _ in _HTTP_LIBRARIES if name in status)
    return (
        "http",
        "HTTP requests: request line, headers, cookies",
        True,
        ("every route",),
        (_body_limit(config),),
        decoders,
    )


def _json(config: GatewayConfig, where: Mapping[str, list[str]]) -> _Row:
    limits = (
        _body_limit(config),
        "UTF-8 only",
        f"nesting at most {config.validation.max_json_depth} deep",
        "duplicate keys and unknown fields refused",
    )
    return ("json", "JSON object bodies", True, tuple(where.get("json", ())), limits, (CPYTHON,))


def _inputs(config: GatewayConfig, model: ModelSurface, where: Mapping[str, list[str]]) -> _Row:
    low, high = config.model.bounds
    shape = list(model.input_shape) if model.input_shape else "the model's input shape"
    limits = (
        f"shape {shape} per example",
        f"at most {config.validation.max_batch} examples",
        f"finite numbers within [{low:g}, {high:g}]",
    )
    endpoints = tuple(where.get("inputs", ()))
    return ("inputs", "model inputs as nested JSON arrays", True, endpoints, limits, (CPYTHON, "numpy"))


def _image(config: GatewayConfig, model: ModelSurface, where: Mapping[str, list[str]]) -> _Row:
    validation = config.validation
    if model.images_accepted:
        limits: tuple[str, ...] = (
            f"formats {', '.join(validation.image_formats)}, recognised from the bytes",
            f"at most {validation.max_pixels} pixels, read from the header before decoding",
            f"at most {validation.max_image_bytes} bytes",
            "resized to the model's input size",
        )
    else:
        limits = (f"refused (415 images_not_accepted): the model's input {model.input_shape} is not an image",)
    name = "image uploads: multipart field 'file', or the raw body"
    decoders = ("python-multipart", "pillow", "numpy")
    return ("image", name, model.images_accepted, tuple(where.get("image", ())), limits, decoders)


def _form() -> _Row:
    limits = ("at most 8 fields, no files", "CSRF token checked against the session (except on the sign-in form)")
    name = "review pages' HTML forms (application/x-www-form-urlencoded)"
    return ("form", name, True, ("POST /review/...",), limits, ("python-multipart", "starlette"))


def _model_file(model: ModelSurface) -> _Row:
    if model.format == "pickle":
        limits: tuple[str, ...] = ("refused unless trust_pickle; then scanned against an allowlist first",)
    elif model.format in ("missing", "damaged", "unknown"):
        limits = (f"the model file is {model.format}: the gateway would not start",)
    else:
        limits = ("recognised from its content, not its name",)
    return ("model", f"the model file, read once at start ({model.format})", True, (), limits, model.loaders)
