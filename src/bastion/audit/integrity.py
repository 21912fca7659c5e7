"""Configuration integrity: a manifest of the gateway's configuration, hyper-parameters and files, checked at start.

``bastion config sign`` writes the manifest; the gateway (and ``bastion config verify``) compares it
with what is there now and refuses to run on any difference. The manifest records

- the SHA-256 of the configuration file;
- the *effective* configuration, after ``BASTION__SECTION__KEY`` environment overrides, less the
  deployment settings in :data:`UNRECORDED` (where the gateway listens and stores, and secrets, which
  must never be written into a manifest): an override that changes a hyper-parameter is caught too;
- the SHA-256 and size of every file the configuration names: the model file, the factory module's
  source (found with :class:`importlib.machinery.PathFinder`, which executes nothing), the
  calibration data (a folder is hashed file by file);
- when it was made and by which Bastion version.

An unsigned manifest catches accidental change: an edited threshold, a model file replaced by
another, a forgotten environment variable. Anyone who can write the files can also write a new
manifest, so against an attacker the manifest is signed with HMAC-SHA256 (RFC 2104) over a
canonical JSON of its body (sorted keys, no spaces, RFC 8259 numbers): an attacker who can write the
files but cannot read the key cannot forge it. With a key given, an unsigned manifest fails (no
downgrade). Digests are compared in constant time (:func:`hmac.compare_digest`).

Example::

    manifest = sign_config(Path("bastion.toml"), key=b"...")   # bastion.toml.manifest.json
    report = verify_manifest(Path("bastion.toml"), key=b"...")
    if not report.ok:
        print(report.describe())
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bastion
from bastion.errors import ConfigError, DataError, IntegrityError, NotFoundError

if TYPE_CHECKING:
    from bastion.gateway.config import GatewayConfig

__all__ = [
    "KEY_ENV",
    "SCHEMA_VERSION",
    "UNRECORDED",
    "IntegrityCheck",
    "IntegrityReport",
    "check_config",
    "default_manifest_path",
    "read_key",
    "sign_config",
    "verify_at_start",
    "verify_manifest",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
KEY_ENV = "BASTION_CONFIG_KEY"
# Where the gateway runs, not how it decides; store and Redis URLs may carry passwords, and the
# session secret is one. The configuration file's hash still covers them when they are in the file.
UNRECORDED = frozenset({"server.host", "server.port", "server.session_secret", "store.url", "rate_limit.storage"})
_ALGORITHM = "hmac-sha256"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class IntegrityCheck:
    """One compared item: ``config.sha256``, ``effective.<section.key>``, ``file.<key>``, ``signature``..."""

    name: str
    expected: str
    actual: str
    ok: bool


@dataclass(frozen=True)
class IntegrityReport:
    """What :func:`verify_manifest` found; ``ok`` only when every check passed."""

    ok: bool
    manifest: str
    signed: bool
    checks: tuple[IntegrityCheck, ...]

    @property
    def failures(self) -> tuple[IntegrityCheck, ...]:
        return tuple(check for check in self.checks if not check.ok)

    def describe(self) -> str:
        """The failed checks on one line each: ``name: expected X, got Y``."""
        return "\n".join(f"  {c.name}: expected {c.expected}, got {c.actual}" for c in self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "manifest": self.manifest,
            "signed": self.signed,
            "checks": [asdict(check) for check in self.checks],
        }


def sign_config(config_path: Path, *, out: Path | None = None, key: bytes | None = None) -> Path:
    """Write the manifest of ``config_path`` as it is now (environment included) and return its path.

    ``out`` defaults to the configuration's ``[integrity] manifest``, else ``<config>.manifest.json``.
    """
    from bastion.gateway.config import load_config

    config = load_config(config_path)
    body = _body(config, config_path)
    _refuse_missing_files(body["files"])
    signature = None if key is None else {"algorithm": _ALGORITHM, "value": _sign(body, _checked_key(key))}
    target = out if out is not None else default_manifest_path(config, config_path)
    if not target.parent.is_dir():
        raise NotFoundError(f"cannot write the manifest {target}: folder {target.parent} does not exist")
    text = json.dumps({"body": body, "signature": signature}, indent=2, sort_keys=True, allow_nan=False)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(text + "\n", encoding="utf-8")
    partial.replace(target)  # atomic: a gateway starting now reads the old manifest or the new one
    return target


def _refuse_missing_files(files: dict[str, dict[str, Any]]) -> None:
    """A manifest is made of what exists: a named file that is absent is a mistake to fix before signing."""
    for key, entry in files.items():
        if entry["path"] is None:
            logger.warning(
                "%s %r: its module was not found on sys.path; its source is not recorded", key, entry["module"]
            )
        elif entry["sha256"] is None:
            raise NotFoundError(f"{key} names {entry['path']}, which does not exist; expected an existing file")


def verify_manifest(
    config_path: Path, manifest_path: Path | None = None, *, key: bytes | None = None
) -> IntegrityReport:
    """Compare ``config_path`` (environment included), its files and hyper-parameters with the manifest."""
    from bastion.gateway.config import load_config

    config = load_config(config_path)
    return check_config(config, manifest_path, key=key)


def check_config(
    config: GatewayConfig, manifest_path: Path | None = None, *, key: bytes | None = None
) -> IntegrityReport:
    """Compare an already loaded ``config`` (the one about to run) with its manifest."""
    config_path = config.config_file
    if config_path is None:
        raise ConfigError("a manifest can only be checked for a configuration loaded from a file (load_config(path))")
    path = manifest_path if manifest_path is not None else default_manifest_path(config, config_path)
    manifest = _read_manifest(path)
    body = manifest["body"]
    signed = manifest.get("signature") is not None
    checks = [_schema_check(body)]
    if signed and key is None:
        raise ConfigError(
            f"manifest {path} is signed: give its key (--key-file, [integrity] key_file or {KEY_ENV}) to verify it"
        )
    if key is not None:
        checks.append(_signature_check(manifest, _checked_key(key)))
    actual = _body(config, config_path)
    checks.append(_compare("config.sha256", _get(body, "config", "sha256"), actual["config"]["sha256"]))
    checks.extend(_compare_tree("effective", _get(body, "effective"), actual["effective"]))
    checks.extend(_compare_files(_get(body, "files"), actual["files"]))
    return IntegrityReport(ok=all(c.ok for c in checks), manifest=str(path), signed=signed, checks=tuple(checks))


def verify_at_start(config: GatewayConfig, *, environ: Mapping[str, str] | None = None) -> IntegrityReport | None:
    """The gateway's start-up check: raises :class:`IntegrityError` on any difference; None when not configured."""
    settings = config.integrity
    config_path = config.config_file
    if not settings.enabled:
        if config_path is not None:
            _warn_unsigned_once(config_path)
        return None
    if config_path is None:
        raise ConfigError("[integrity] is set, but the configuration was not loaded from a file (load_config(path))")
    manifest = default_manifest_path(config, config_path)
    if not manifest.is_file():
        if settings.required:
            raise IntegrityError(
                f"manifest {manifest} does not exist and [integrity] required = true; "
                f"write it with: bastion config sign --config {config_path}"
            )
        logger.warning("manifest %s does not exist: starting unverified ([integrity] required = false)", manifest)
        return None
    key_file = None if settings.key_file is None else config_path.parent / settings.key_file
    report = check_config(config, manifest, key=read_key(key_file, environ=environ))
    if not report.ok:
        raise IntegrityError(f"{config_path} does not match its manifest {manifest}; changed:\n{report.describe()}")
    logger.info("configuration verified against %s (%s)", manifest, "signed" if report.signed else "unsigned")
    return report


def default_manifest_path(config: GatewayConfig, config_path: Path) -> Path:
    """``[integrity] manifest`` relative to the configuration file, else ``<config>.manifest.json`` beside it."""
    if config.integrity.manifest is not None:
        return config_path.parent / config.integrity.manifest
    return config_path.with_name(f"{config_path.name}.manifest.json")


def read_key(key_file: Path | None = None, *, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The HMAC key: the file's bytes (surrounding whitespace stripped), else ``$BASTION_CONFIG_KEY``, else None."""
    if key_file is not None:
        if not key_file.is_file():
            raise NotFoundError(f"key file {key_file} does not exist")
        return _checked_key(key_file.read_bytes().strip(), f"key file {key_file}")
    text = (os.environ if environ is None else environ).get(KEY_ENV)
    return None if text is None else _checked_key(text.strip().encode("utf-8"), KEY_ENV)


def _checked_key(key: bytes, where: str = "key") -> bytes:
    if len(key) < 16:
        raise ConfigError(f"{where}: expected a key of at least 16 bytes, got {len(key)}")
    return key


_warned: set[Path] = set()


def _warn_unsigned_once(config_path: Path) -> None:
    if config_path not in _warned:
        _warned.add(config_path)
        logger.warning(
            "%s is not verified at start: sign it (bastion config sign) and add [integrity] required = true",
            config_path,
        )


# ---- the manifest's body -------------------------------------------------------------------------


def _body(config: GatewayConfig, config_path: Path) -> dict[str, Any]:
    sha, size = _digest(config_path)
    return {
        "schema": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "bastion_version": bastion.__version__,
        "config": {"path": str(config_path), "sha256": sha, "size": size},
        "effective": _effective(config),
        "files": _files(config),
    }


def _effective(config: GatewayConfig) -> dict[str, Any]:
    """The resolved settings, as JSON values, less :data:`UNRECORDED`."""
    tree: dict[str, Any] = json.loads(json.dumps(config.model_dump(mode="json", by_alias=True)))
    for dotted in UNRECORDED:
        section, key = dotted.split(".")
        tree.get(section, {}).pop(key, None)
    return tree


def _files(config: GatewayConfig) -> dict[str, dict[str, Any]]:
    """Every file the configuration names, by the key that names it."""
    model = config.model
    files: dict[str, dict[str, Any]] = {}
    if not model.source.startswith("demo:"):  # a demo model is rebuilt from its name, not read from a file
        files["model.source"] = _file_entry(Path(model.source))
    if model.factory is not None:
        files["model.factory"] = _factory_entry(model.factory)
    if model.calibration_data is not None and not model.calibration_data.startswith("demo:"):
        files["model.calibration_data"] = _file_entry(Path(model.calibration_data))
    return files


def _file_entry(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"path": str(path), "sha256": None, "size": None}
    sha, size = _digest(path)
    return {"path": str(path), "sha256": sha, "size": size}


def _factory_entry(factory: str) -> dict[str, Any]:
    """The source file of the factory's module, found without importing (and so running) anything."""
    module = factory.partition(":")[0]
    spec = _find_spec(module)
    origin = None if spec is None or not spec.has_location else spec.origin
    if origin is None:
        return {"path": None, "module": module, "sha256": None, "size": None}
    return {**_file_entry(Path(origin)), "module": module}


def _find_spec(module: str) -> ModuleSpec | None:
    """Find ``a.b.c`` package by package with :class:`PathFinder`; ``importlib.util.find_spec`` would run ``a.b``."""
    search: list[str] | None = None
    spec: ModuleSpec | None = None
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        spec = PathFinder.find_spec(name, search if search is not None else sys.path)
        if spec is None:
            return None
        locations = spec.submodule_search_locations
        if depth < len(parts) and locations is None:
            return None
        search = list(locations) if locations is not None else None
    return spec


def _digest(path: Path) -> tuple[str, int]:
    """SHA-256 and size of a file; of a folder, over each file's relative path and digest, in sorted order."""
    if not path.is_dir():
        return _file_digest(path)
    outer = hashlib.sha256()
    total = 0
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        sha, size = _file_digest(child)
        outer.update(f"{child.relative_to(path).as_posix()}\0{sha}\n".encode())
        total += size
    return outer.hexdigest(), total


def _file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


# ---- reading and comparing -----------------------------------------------------------------------


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise NotFoundError(f"manifest {path} does not exist; write it with: bastion config sign")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"manifest {path} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("body"), dict):
        raise DataError(f"manifest {path}: expected an object with a 'body' object, got {type(manifest).__name__}")
    signature = manifest.get("signature")
    if signature is not None and not (isinstance(signature, dict) and isinstance(signature.get("value"), str)):
        raise DataError(f"manifest {path}: expected 'signature' to be null or {{algorithm, value}}, got {signature!r}")
    return manifest


def _get(body: dict[str, Any], *keys: str) -> Any:
    node: Any = body
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _sign(body: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()


def _schema_check(body: dict[str, Any]) -> IntegrityCheck:
    return IntegrityCheck("schema", str(SCHEMA_VERSION), str(body.get("schema")), body.get("schema") == SCHEMA_VERSION)


def _signature_check(manifest: dict[str, Any], key: bytes) -> IntegrityCheck:
    signature = manifest.get("signature")
    if signature is None:
        return IntegrityCheck("signature", f"signed ({_ALGORITHM})", "unsigned", False)
    if signature.get("algorithm") != _ALGORITHM:
        return IntegrityCheck("signature", _ALGORITHM, str(signature.get("algorithm")), False)
    good = hmac.compare_digest(_sign(manifest["body"], key), signature["value"])
    return IntegrityCheck("signature", "valid for this key", "valid" if good else "invalid for this key", good)


def _compare(name: str, expected: Any, actual: Any) -> IntegrityCheck:
    if isinstance(expected, str) and isinstance(actual, str):
        ok = hmac.compare_digest(expected.encode(), actual.encode())
    else:
        ok = expected == actual and type(expected) is type(actual)
    return IntegrityCheck(name, _show(expected), _show(actual), ok)


def _compare_tree(prefix: str, expected: Any, actual: Any) -> Iterator[IntegrityCheck]:
    """One check per leaf setting (``effective.monitors.boundary.quantile``), including added or removed ones."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            yield from _compare_tree(f"{prefix}.{key}", expected.get(key, _ABSENT), actual.get(key, _ABSENT))
    else:
        yield _compare(prefix, expected, actual)


def _compare_files(expected: Any, actual: dict[str, dict[str, Any]]) -> Iterator[IntegrityCheck]:
    recorded: dict[str, Any] = expected if isinstance(expected, dict) else {}
    for key in sorted(set(recorded) | set(actual)):
        entry = recorded.get(key)
        before: dict[str, Any] = entry if isinstance(entry, dict) else {}
        now = actual.get(key, {})
        yield _compare(f"file.{key}.path", before.get("path", _ABSENT), now.get("path", _ABSENT))
        yield _compare(f"file.{key}.sha256", before.get("sha256", _ABSENT), now.get("sha256", _ABSENT))
        yield _compare(f"file.{key}.size", before.get("size", _ABSENT), now.get("size", _ABSENT))


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT = _Absent()


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    if value is None:
        return "(missing)"
    return json.dumps(value)
