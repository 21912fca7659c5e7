"""The gateway's configuration: a TOML file plus ``BASTION__SECTION__KEY`` environment overrides, validated strictly.

Every section refuses unknown keys and impossible values, naming them, so that a typo in a
security setting stops the gateway from starting instead of silently falling back to a default.

Example (``bastion.toml``)::

    guards = ["error_boundary", "audit", "auth", "rate_limit", "size_limit",
              "validation", "model", "monitors", "output_policy"]

    [model]
    source = "demo:mnist"

    [store]
    url = "sqlite:///var/bastion/gateway.db"

    [rate_limit]
    storage = "redis://127.0.0.1:6379/0"
    per_key = ["10/second", "2000/day"]

    [output]
    client = "label"

Environment overrides use a double underscore between the section and the key, for example
``BASTION__STORE__URL=postgresql://gateway@db/bastion`` or ``BASTION__RATE_LIMIT__PER_KEY='["5/second"]'``;
a value is read as TOML when it parses as a TOML value, as a plain string otherwise. The
``[integrity]`` section is the exception: it cannot be set from the environment, since it says how
the rest is checked (see :mod:`bastion.audit.integrity`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from bastion.errors import ConfigError, NotFoundError

__all__ = [
    "GUARD_ORDER",
    "BoundaryMonitorConfig",
    "GatewayConfig",
    "IntegrityConfig",
    "ModelConfig",
    "MonitorsConfig",
    "OutputConfig",
    "QueryMonitorConfig",
    "RateLimitConfig",
    "ServerConfig",
    "StoreConfig",
    "ValidationConfig",
    "load_config",
]

ENV_PREFIX = "BASTION__"

# The default stack, outside-in: a request meets them in this order, a response leaves in reverse.
GUARD_ORDER = (
    "error_boundary",
    "audit",
    "auth",
    "rate_limit",
    "size_limit",
    "validation",
    "model",
    "monitors",
    "output_policy",
)
# Guards the gateway cannot work without: the model answers predictions, validation decodes their inputs.
_REQUIRED_GUARDS = ("validation", "model")

OutputPolicy = Literal["scores", "rounded", "top_k", "label"]
MonitorAction = Literal["flag", "omit", "throttle"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Section):
    """The deployed model: a bundled demo (``demo:mnist``) or a model file of any supported kind."""

    source: str = "demo:mnist"
    input_shape: tuple[int, ...] | None = None  # required for a model file; one input, no batch axis
    bounds: tuple[float, float] = (0.0, 1.0)
    factory: str | None = None  # "module:function" building the nn.Module for a safetensors file
    class_names: tuple[str, ...] | None = None
    trust_pickle: bool = False
    trust_model_file: bool = False
    # Benign inputs the monitors are calibrated on at start: a dataset spec as `bastion assess --data` takes.
    calibration_data: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.bounds[0] >= self.bounds[1]:
            raise ValueError(f"bounds must be (low, high) with low < high, got {list(self.bounds)}")
        if not self.source.startswith("demo:") and self.input_shape is None:
            raise ValueError(f"input_shape is required for the model file {self.source!r}")
        if self.input_shape is not None and any(d < 1 for d in self.input_shape):
            raise ValueError(f"input_shape must hold positive sizes, got {list(self.input_shape)}")
        return self


class ServerConfig(_Section):
    """Where the gateway listens and how it reads the client's address."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Requests larger than this are refused before their body is read (bytes).
    max_body_bytes: int = Field(default=2_000_000, ge=1024, le=1_000_000_000)
    # The X-Forwarded-For header is believed only from these proxy addresses; never by default.
    trusted_proxies: tuple[str, ...] = ()
    # Seconds a throttled client is refused after a monitor's "throttle" action.
    throttle_seconds: float = Field(default=600.0, gt=0)
    # Signs the review pages' session cookies; generated per process when empty (sessions end on restart).
    session_secret: str = Field(default="", repr=False)


class StoreConfig(_Section):
    """Where the audit log, predictions, feedback, submissions, flags and decisions are kept."""

    url: str = "sqlite:///bastion-gateway.db"
    # Keep each prediction's input, so that feedback on it can become training data (bastion retrain).
    keep_inputs: bool = True

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        if not url.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError(f"expected a sqlite:/// or postgresql:// URL, got {url.split('://')[0]!r}")
        return url


class RateLimitConfig(_Section):
    """Per-key and global windows, on the ``limits`` library; shared across processes through Redis."""

    storage: str = "memory://"
    per_key: tuple[str, ...] = ("10/second", "2000/day")
    global_: tuple[str, ...] = Field(default=(), alias="global")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("storage")
    @classmethod
    def _scheme(cls, url: str) -> str:
        if not url.startswith(("memory://", "redis://", "rediss://", "redis+unix://")):
            raise ValueError(f"expected memory:// or a redis:// URL, got {url.split('://')[0]!r}")
        return url


class ValidationConfig(_Section):
    """What inputs are accepted, checked before anything is decoded."""

    max_batch: int = Field(default=64, ge=1, le=4096)
    image_formats: tuple[str, ...] = ("PNG", "JPEG")
    max_pixels: int = Field(default=4_000_000, ge=1)
    max_image_bytes: int = Field(default=10_000_000, ge=1)
    max_json_depth: int = Field(default=32, ge=2, le=256)

    @field_validator("image_formats")
    @classmethod
    def _formats(cls, formats: tuple[str, ...]) -> tuple[str, ...]:
        allowed = {"PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"}
        unknown = sorted(set(formats) - allowed)
        if unknown:
            raise ValueError(f"unknown image formats {unknown}; expected some of {sorted(allowed)}")
        return formats


class BoundaryMonitorConfig(_Section):
    """Boundary proximity: clients whose inputs are consistently closer to the decision boundary than benign traffic."""

    enabled: bool = True
    action: MonitorAction = "flag"
    quantile: float = Field(default=0.05, gt=0, lt=0.5)  # benign share below the calibrated margin threshold
    alpha: float = Field(default=1e-4, gt=0, lt=0.5)  # false-flag probability per client
    beta: float = Field(default=0.01, gt=0, lt=0.5)
    max_clients: int = Field(default=100_000, ge=1)


class QueryMonitorConfig(_Section):
    """Query-attack detection: near-duplicate query streams, per key and linked across keys."""

    enabled: bool = True
    action: MonitorAction = "flag"
    target_fpr: float = Field(default=0.001, gt=0, lt=0.5)
    k: int = Field(default=20, ge=1)
    buffer_size: int = Field(default=1000, ge=2)
    dim: int = Field(default=128, ge=2)
    # Memory is about max_clients x buffer_size x dim x 4 bytes at worst (1000 x 1000 x 128: ~0.5 GB).
    max_clients: int = Field(default=1000, ge=1)
    global_buffer_size: int = Field(default=20_000, ge=1)
    seed: int = 0


class MonitorsConfig(_Section):
    boundary: BoundaryMonitorConfig = BoundaryMonitorConfig()
    query: QueryMonitorConfig = QueryMonitorConfig()


class OutputConfig(_Section):
    """How much of the model's answer each role sees: the less an attacker sees, the harder the attack."""

    client: OutputPolicy = "label"
    reviewer: OutputPolicy = "scores"
    admin: OutputPolicy = "scores"
    decimals: int = Field(default=2, ge=0, le=8)  # for "rounded"
    top_k: int = Field(default=3, ge=1)  # for "top_k"


class IntegrityConfig(_Section):
    """The signed manifest checked at start (``bastion config sign``); see :mod:`bastion.audit.integrity`."""

    # Relative to the configuration file; default "<config file>.manifest.json".
    manifest: str | None = None
    # Refuse to start when the manifest is missing (otherwise a missing manifest is logged and skipped).
    required: bool = False
    # The HMAC key, relative to the configuration file; or the BASTION_CONFIG_KEY environment variable.
    key_file: str | None = None

    @property
    def enabled(self) -> bool:
        """Whether the gateway checks a manifest at start: the section names one, a key, or requires it."""
        return self.manifest is not None or self.key_file is not None or self.required


class GatewayConfig(_Section):
    """The whole gateway configuration; see the module docstring for the file format."""

    guards: tuple[str, ...] = GUARD_ORDER
    model: ModelConfig = ModelConfig()
    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    rate_limit: RateLimitConfig = RateLimitConfig()
    validation: ValidationConfig = ValidationConfig()
    monitors: MonitorsConfig = MonitorsConfig()
    output: OutputConfig = OutputConfig()
    integrity: IntegrityConfig = IntegrityConfig()

    _config_file: Path | None = PrivateAttr(default=None)

    @property
    def config_file(self) -> Path | None:
        """The TOML file this configuration was loaded from (None when built without one)."""
        return self._config_file

    @field_validator("guards")
    @classmethod
    def _guards(cls, guards: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [g for g in guards if g not in GUARD_ORDER]
        if unknown:
            raise ValueError(f"unknown guards {unknown}; expected some of {list(GUARD_ORDER)}")
        duplicated = sorted({g for g in guards if guards.count(g) > 1})
        if duplicated:
            raise ValueError(f"guards listed twice: {duplicated}")
        missing = [g for g in _REQUIRED_GUARDS if g not in guards]
        if missing:
            raise ValueError(f"guards {missing} cannot be switched off: the gateway needs them to answer")
        if guards.index("validation") > guards.index("model"):
            raise ValueError("guard 'validation' must come before 'model'")
        return guards


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> GatewayConfig:
    """The configuration in ``path`` (defaults when None), with environment and explicit overrides applied."""
    raw: dict[str, Any] = _read_toml(Path(path)) if path is not None else {}
    where = str(path) if path is not None else "configuration"
    for dotted, value in _env_overrides(os.environ if environ is None else environ).items():
        if dotted.split(".")[0] == "integrity":  # the check must not be switched off by what it checks
            raise ConfigError(f"[integrity] cannot be set from the environment, got an override of {dotted}")
        _set_dotted(raw, dotted, value)
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    try:
        config = GatewayConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{where}: {_describe(error)}") from None
    config._config_file = Path(path) if path is not None else None
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise NotFoundError(f"configuration file {path} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``BASTION__RATE_LIMIT__PER_KEY`` becomes ``rate_limit.per_key``; values parse as TOML when they can."""
    found: dict[str, Any] = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        dotted = ".".join(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        found[dotted] = _parse_env_value(text)
    return found


def _parse_env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *sections, key = dotted.split(".")
    node = raw
    for section in sections:
        child = node.setdefault(section, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot override {dotted}: {section!r} is not a section")
        node = child
    node[key] = value


def _describe(error: ValidationError) -> str:
    """One line per problem, naming the key (``[rate_limit] per_kye``) and the reason."""
    lines = []
    for problem in error.errors():
        location = [str(part) for part in problem["loc"]]
        key = ".".join(location) or "(top level)"
        if problem["type"] == "extra_forbidden":
            lines.append(f"unknown key {key!r}")
        else:
            value = problem.get("input")
            shown = "" if isinstance(value, dict) else f" (got {value!r})"
            lines.append(f"{key}: {problem['msg']}{shown}")
    return "; ".join(lines)
