"""The attack-surface map of one gateway, generated from its configuration and the running environment.

Issue 8, part 4: which entry points exist and who may reach them, what formats each accepts and
which libraries decode them (with their advisory status from the dependency audit, part 1), what
each role sees of an answer, the limits and rate limits, what the store keeps, how retraining
data travels and what guards it, the monitors, and each threat of Microsoft's AI/ML threat model
(:mod:`bastion.audit.threats`) with its status here.

Everything comes from the code's own tables, not from a copy: the routes from
:data:`bastion.gateway.openapi.ROUTES` and :data:`bastion.gateway.app.REVIEW_PAGES`, the roles
from :data:`bastion.gateway.guards.auth.ENDPOINT_ROLES` and ``PUBLIC``, the request bodies from
each route's OpenAPI description, library versions from :mod:`importlib.metadata`. Nothing is
started: the model file is only sniffed, the store is not opened, nothing goes to the network.

Example::

    surface = build_surface_map(Path("bastion.toml"), findings=audit_dependencies(packages, db))
    surface.threat("stealing").status      # "mitigated", "partial" or "open"
    json.dumps(surface.to_dict())
"""

from __future__ import annotations

import dataclasses
import platform
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name

import bastion
from bastion.audit.decoders import (
    InputFormat,
    Library,
    LibraryStatus,
    ModelSurface,
    body_formats,
    format_table,
    library_table,
    model_surface,
)
from bastion.audit.deps import Finding
from bastion.audit.threats import THREATS, Posture, Status, assess_threat
from bastion.errors import DataError
from bastion.urls import mask_url

if TYPE_CHECKING:  # imported where used: the model loaders import bastion.audit, and the gateway imports them
    from bastion.gate.policy import GatePolicy
    from bastion.gateway.config import GatewayConfig, OutputPolicy

__all__ = [
    "EntryPoint",
    "InputFormat",
    "Library",
    "LibraryStatus",
    "Limits",
    "ModelSurface",
    "MonitorSurface",
    "OutputSurface",
    "RateLimitSurface",
    "RetrainingSurface",
    "StorageSurface",
    "SurfaceMap",
    "ThreatRow",
    "build_surface_map",
    "mask_url",
]

_SHOWS: dict[OutputPolicy, str] = {
    "scores": "labels and the full probability vector",
    "rounded": "labels and probabilities rounded to {decimals} decimals",
    "top_k": "labels and the top {top_k} classes with probabilities rounded to {decimals} decimals",
    "label": "labels only",
}


@dataclass(frozen=True)
class EntryPoint:
    """One route: who may reach it, with what credentials, and what it accepts."""

    method: str
    path: str
    endpoint: str  # the name the auth guard's role table uses
    roles: tuple[str, ...]  # the key roles admitted; () for a public route
    public: bool
    reachable_by: str
    credentials: str
    guarded: bool  # runs through the configured guard stack
    accepts: tuple[str, ...]  # keys of InputFormat
    parameters: tuple[str, ...]  # path and query parameters
    documented: bool  # described in the OpenAPI document


@dataclass(frozen=True)
class Limits:
    """The size limits, checked before decoding."""

    max_body_bytes: int | None  # None: the size_limit guard is off
    max_batch: int
    max_json_depth: int
    image_formats: tuple[str, ...]
    max_pixels: int
    max_image_bytes: int


@dataclass(frozen=True)
class OutputSurface:
    """What one role sees of a prediction."""

    role: str
    policy: str
    shows: str


@dataclass(frozen=True)
class RateLimitSurface:
    """The rate limits: windows, what a window counts, where the counts live."""

    enabled: bool
    per_key: tuple[str, ...]
    global_windows: tuple[str, ...]
    storage: str  # URL, password masked
    shared_across_processes: bool
    keyed_by: str
    trusted_proxies: tuple[str, ...]
    throttle_seconds: float


@dataclass(frozen=True)
class StorageSurface:
    """Where the gateway's records live and what they hold."""

    backend: str
    url: str  # password masked
    keeps_inputs: bool
    keeps: tuple[str, ...]
    readers: tuple[str, ...]


@dataclass(frozen=True)
class RetrainingSurface:
    """How offered data becomes a model, and what guards each step."""

    command: str
    steps: tuple[str, ...]
    guards: tuple[str, ...]
    gate_checks: tuple[str, ...]
    feedback_trainable: bool  # feedback needs the prediction's stored input


@dataclass(frozen=True)
class MonitorSurface:
    """One monitor: on or off, and what its verdict does."""

    name: str
    enabled: bool
    action: str
    detail: str


@dataclass(frozen=True)
class ThreatRow:
    """One threat of the catalogue with its status here."""

    key: str
    name: str
    description: str
    status: Status
    layers: tuple[str, ...]
    gaps: tuple[str, ...]


@dataclass(frozen=True)
class SurfaceMap:
    """The whole map; :meth:`to_dict` and :meth:`from_dict` are its JSON round trip."""

    config: str
    bastion: str
    python: str
    listen: str
    exposure: str
    guards: tuple[str, ...]  # the configured stack, outside-in
    guards_off: tuple[str, ...]
    dependencies_audited: bool
    model: ModelSurface
    entry_points: tuple[EntryPoint, ...]
    formats: tuple[InputFormat, ...]
    libraries: tuple[Library, ...]
    limits: Limits
    outputs: tuple[OutputSurface, ...]
    rate_limits: RateLimitSurface
    storage: StorageSurface
    retraining: RetrainingSurface
    monitors: tuple[MonitorSurface, ...]
    threats: tuple[ThreatRow, ...]

    def threat(self, key: str) -> ThreatRow:
        """The row of threat ``key`` (one of :data:`bastion.audit.threats.THREATS`)."""
        for row in self.threats:
            if row.key == key:
                return row
        raise KeyError(f"unknown threat {key!r}; expected one of {[row.key for row in self.threats]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON values only (tuples as lists)."""
        result = _jsonable(dataclasses.asdict(self))
        if not isinstance(result, dict):  # asdict always gives a dict; here for the type checker
            raise TypeError("a surface map serialises to an object")
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SurfaceMap:
        """The map :meth:`to_dict` wrote; a DataError names what does not fit."""
        try:
            built = _rebuild(cls, data)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise DataError(f"not a surface map: {type(error).__name__}: {error}") from None
        if not isinstance(built, SurfaceMap):
            raise DataError("not a surface map")
        return built


def build_surface_map(
    config_path: Path,
    *,
    findings: Sequence[Finding] = (),
    audited: bool | None = None,
    gate_policy: GatePolicy | None = None,
    environ: Mapping[str, str] | None = None,
) -> SurfaceMap:
    """The attack-surface map of the gateway ``config_path`` configures, in this environment.

    ``findings`` are dependency advisories (part 1: :func:`~bastion.audit.deps.audit_dependencies`),
    matched to libraries by package name; ``audited`` says an audit ran (default: when findings are
    given), so that an audit with no findings reads "no known advisories" rather than "not
    audited". ``gate_policy`` is the retraining gate's policy (``bastion retrain --policy``; the
    defaults otherwise); ``environ`` replaces ``os.environ`` for the ``BASTION__`` overrides.
    """
    from bastion.gate.policy import GatePolicy
    from bastion.gateway.config import GUARD_ORDER, load_config

    config = load_config(config_path, environ=environ)
    was_audited = bool(findings) if audited is None else audited
    policy = gate_policy if gate_policy is not None else GatePolicy()
    model = model_surface(config)
    libraries = library_table(config, model, findings, audited=was_audited)
    posture = _posture(config, policy, model, libraries, findings, audited=was_audited)
    return SurfaceMap(
        config=str(config_path),
        bastion=bastion.__version__,
        python=platform.python_version(),
        listen=f"{config.server.host}:{config.server.port}",
        exposure=_exposure(config.server.host),
        guards=config.guards,
        guards_off=tuple(g for g in GUARD_ORDER if g not in config.guards),
        dependencies_audited=was_audited,
        model=model,
        entry_points=_entry_points(config),
        formats=format_table(config, model, libraries),
        libraries=libraries,
        limits=_limits(config),
        outputs=_outputs(config),
        rate_limits=_rate_limits(config),
        storage=_storage(config),
        retraining=_retraining(config, config_path, policy),
        monitors=_monitors(config),
        threats=tuple(_threat_row(key, posture) for key in THREATS),
    )


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def _entry_points(config: GatewayConfig) -> tuple[EntryPoint, ...]:
    """Every route of the app :func:`~bastion.gateway.app.create_app` builds, from the same tables it reads."""
    from bastion.gateway.app import REVIEW_PAGES
    from bastion.gateway.openapi import ROUTES

    # /v1/health is answered by app.py itself, outside the guards (the test compares with the built app).
    rows = [
        EntryPoint(
            method="GET",
            path="/v1/health",
            endpoint="health",
            roles=(),
            public=True,
            reachable_by="anyone: answered before every guard",
            credentials="none",
            guarded=False,
            accepts=(),
            parameters=(),
            documented=True,
        )
    ]
    for spec in ROUTES:
        accepts = body_formats(spec.openapi_extra())
        rows.append(_entry(config, spec.method, spec.path, spec.endpoint, accepts, spec.parameters, documented=True))
    for path, methods, endpoint in REVIEW_PAGES:
        for method in methods:
            accepts = ("form",) if method == "POST" else ()
            parameters = tuple(re.findall(r"{(\w+)}", path))
            rows.append(_entry(config, method, path, endpoint, accepts, parameters, documented=False))
    return tuple(rows)


def _entry(
    config: GatewayConfig,
    method: str,
    path: str,
    endpoint: str,
    accepts: tuple[str, ...],
    parameters: tuple[str, ...],
    *,
    documented: bool,
) -> EntryPoint:
    from bastion.gateway.guards.auth import ENDPOINT_ROLES, PUBLIC
    from bastion.gateway.keys import Role

    public = endpoint in PUBLIC
    allowed = ENDPOINT_ROLES.get(endpoint, frozenset())
    roles = tuple(role.value for role in Role if role in allowed)
    return EntryPoint(
        method=method,
        path=path,
        endpoint=endpoint,
        roles=() if public else roles,
        public=public,
        reachable_by=_reachable_by(config, endpoint, roles, public=public, client=Role.CLIENT in allowed),
        credentials=_credentials(endpoint, method, public=public),
        guarded=True,
        accepts=accepts,
        parameters=parameters,
        documented=documented,
    )


def _reachable_by(config: GatewayConfig, endpoint: str, roles: tuple[str, ...], *, public: bool, client: bool) -> str:
    """Who gets through: the auth guard's role table, and app.py's staff-only check when that guard is off."""
    if public:
        return "anyone (still audited and rate limited by address)"
    if not roles:
        return "nobody: the endpoint is in no role's table (deny by default)"
    if "auth" in config.guards:
        return "keys with role " + ", ".join(roles)
    if client:
        return "anyone: the auth guard is off"
    return "nobody: the auth guard is off, and staff endpoints stay closed without a known key"


def _credentials(endpoint: str, method: str, *, public: bool) -> str:
    if public:
        return "none (the sign-in form takes an API key)" if method == "POST" else "none"
    if endpoint.startswith("ui."):
        return "signed session cookie" + (" and CSRF token" if method == "POST" else "")
    return "API key (Authorization: Bearer, or X-API-Key)"


# ---------------------------------------------------------------------------------------------
# Outputs, limits, storage, retraining, monitors
# ---------------------------------------------------------------------------------------------


def _outputs(config: GatewayConfig) -> tuple[OutputSurface, ...]:
    output = config.output
    rows = []
    for role in ("client", "reviewer", "admin"):
        policy: OutputPolicy = getattr(output, role) if "output_policy" in config.guards else "label"
        shows = _SHOWS[policy].format(decimals=output.decimals, top_k=output.top_k)
        rows.append(OutputSurface(role=role, policy=policy, shows=shows))
    return tuple(rows)


def _limits(config: GatewayConfig) -> Limits:
    validation = config.validation
    return Limits(
        max_body_bytes=config.server.max_body_bytes if "size_limit" in config.guards else None,
        max_batch=validation.max_batch,
        max_json_depth=validation.max_json_depth,
        image_formats=validation.image_formats,
        max_pixels=validation.max_pixels,
        max_image_bytes=validation.max_image_bytes,
    )


def _rate_limits(config: GatewayConfig) -> RateLimitSurface:
    settings = config.rate_limit
    enabled = "rate_limit" in config.guards
    proxies = config.server.trusted_proxies
    address = "the peer's address" + (" (X-Forwarded-For believed from trusted proxies)" if proxies else "")
    return RateLimitSurface(
        enabled=enabled,
        per_key=settings.per_key if enabled else (),
        global_windows=settings.global_ if enabled else (),
        storage=mask_url(settings.storage),
        shared_across_processes=not settings.storage.startswith("memory://"),
        keyed_by=("the API key id; " if "auth" in config.guards else "") + address + " without a key",
        trusted_proxies=proxies,
        throttle_seconds=config.server.throttle_seconds,
    )


def _storage(config: GatewayConfig) -> StorageSurface:
    store = config.store
    keeps = ["API keys as SHA-256 hashes of their secrets, with their roles"]
    if "audit" in config.guards:
        keeps.append("an audit event per request: who, endpoint, outcome, code (never a body or a secret)")
    prediction = "predictions: client, label, scores, the input's SHA-256"
    keeps.append(prediction + (", and the input itself" if store.keep_inputs else ""))
    keeps += [
        "feedback and submissions (with their inputs), quarantined",
        "monitor flags and review decisions",
    ]
    return StorageSurface(
        backend="sqlite" if store.url.startswith("sqlite") else "postgresql",
        url=mask_url(store.url),
        keeps_inputs=store.keep_inputs,
        keeps=tuple(keeps),
        readers=(
            "admins: the audit log (GET /v1/audit) and metrics",
            "reviewers and admins: the queues and submitted inputs",
        ),
    )


def _retraining(config: GatewayConfig, config_path: Path, policy: GatePolicy) -> RetrainingSurface:
    feedback = "feedback (on the caller's own predictions)" if config.store.keep_inputs else "no feedback"
    steps = (
        f"clients offer submissions and {feedback}: each item is quarantined in the store",
        "reviewers approve or reject items (/v1/review, the /review pages)",
        "`bastion retrain` takes the approved items (with --include all, quarantined ones too; never rejected "
        "ones, nor the data of clients a monitor set aside)",
        "RONI judges each client's items as a whole against a trusted quiz set",
        "the recipe trains a candidate on the trusted base plus what RONI kept",
        "the gate compares the candidate with the registry's current model",
        "the registry promotes the candidate only on a pass; earlier versions stay for rollback",
    )
    guards = ["quarantine", "human review (roles reviewer, admin)", "RONI per client", "the retraining gate"]
    if "auth" in config.guards:
        guards.insert(0, "authentication: every offer names its key")
    guards += [f"monitor action 'omit' ({m.name})" for m in _monitors(config) if m.enabled and m.action == "omit"]
    return RetrainingSurface(
        command=f"bastion retrain --config {config_path} --registry DIR --recipe R "
        "--trusted DATA --quiz DATA --test DATA",
        steps=steps,
        guards=tuple(guards),
        gate_checks=_gate_checks(policy),
        feedback_trainable=config.store.keep_inputs,
    )


def _gate_checks(policy: GatePolicy) -> tuple[str, ...]:
    checks = [
        f"accuracy drop at most {policy.max_accuracy_drop:g}",
        f"any class's accuracy drop at most {policy.max_class_drop:g}",
    ]
    if policy.min_accuracy > 0:
        checks.append(f"accuracy at least {policy.min_accuracy:g}")
    if policy.robust is not None:
        robust = policy.robust
        checks.append(
            f"robust accuracy drop at most {robust.max_drop:g} under {robust.attack} {robust.norm} eps={robust.eps:g}"
        )
    if policy.scan is not None and policy.scan.method != "none":
        checks.append(f"poison scan of the training data ({policy.scan.method})")
    return tuple(checks)


def _monitors(config: GatewayConfig) -> tuple[MonitorSurface, ...]:
    on = "monitors" in config.guards
    boundary, query = config.monitors.boundary, config.monitors.query
    return (
        MonitorSurface(
            name="boundary",
            enabled=on and boundary.enabled,
            action=boundary.action,
            detail=f"clients whose inputs sit near the decision boundary (SPRT, alpha={boundary.alpha:g})",
        ),
        MonitorSurface(
            name="query",
            enabled=on and query.enabled,
            action=query.action,
            detail=f"near-duplicate query streams per key, linked across keys (target FPR {query.target_fpr:g})",
        ),
    )


def _exposure(host: str) -> str:
    if host in ("127.0.0.1", "::1", "localhost"):
        return "loopback only"
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 (a comparison: nothing binds here)
        return "every network interface"
    return f"the interface {host}"


# ---------------------------------------------------------------------------------------------
# Threats
# ---------------------------------------------------------------------------------------------


def _posture(
    config: GatewayConfig,
    policy: GatePolicy,
    model: ModelSurface,
    libraries: tuple[Library, ...],
    findings: Sequence[Finding],
    *,
    audited: bool,
) -> Posture:
    on_path = tuple(lib.package for lib in libraries if lib.status == "vulnerable")
    elsewhere = sorted({canonicalize_name(f.package) for f in findings} - set(on_path))
    return Posture(
        config=config,
        gate_policy=policy,
        model_format=model.format,
        hardening=model.hardening,
        dependencies_audited=audited,
        vulnerable_on_path=on_path,
        vulnerable_elsewhere=tuple(elsewhere),
    )


def _threat_row(key: str, posture: Posture) -> ThreatRow:
    threat = THREATS[key]
    verdict = assess_threat(threat, posture)
    return ThreatRow(
        key=threat.key,
        name=threat.name,
        description=threat.description,
        status=verdict.status,
        layers=verdict.layers,
        gaps=verdict.gaps,
    )


# ---------------------------------------------------------------------------------------------
# The JSON round trip
# ---------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


def _rebuild(kind: Any, value: Any) -> Any:
    """``value`` (JSON) as ``kind``: dataclasses field by field, tuples item by item, optionals when present."""
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        hints = typing.get_type_hints(kind)
        return kind(**{f.name: _rebuild(hints[f.name], value[f.name]) for f in dataclasses.fields(kind)})
    origin = typing.get_origin(kind)
    if origin is tuple:
        (item, *_) = typing.get_args(kind)
        return tuple(_rebuild(item, entry) for entry in value)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        return _rebuild(inner, value)
    return value
