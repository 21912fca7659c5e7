"""``run_audit``: dependencies, model files, configuration integrity and the attack surface, in one report.

The four parts are independent: dependencies from the environment or requirements / lock files
are matched by a :class:`~bastion.audit.vulns.VulnerabilityService` (online by default, falling
back to the offline ``vuln_db`` when the service cannot be reached); model files are scanned
statically (never loaded); a gateway config is checked against its signed manifest
(:mod:`bastion.audit.integrity`) and mapped (:mod:`bastion.audit.surface`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.audit.deps import Finding, environment_packages
from bastion.audit.lockfiles import locate_package, lock_format, packages_from_file
from bastion.audit.models import scan_model_file
from bastion.audit.outcome import (
    FAIL_ON_CHOICES,
    AuditReport,
    DependencyFinding,
    DependencySource,
    IntegritySection,
    Location,
    ModelFileEntry,
    SurfaceSection,
)
from bastion.audit.severity import severity_of
from bastion.audit.vulns import (
    DEFAULT_TIMEOUT,
    ONLINE_SERVICES,
    OfflineService,
    Package,
    VulnerabilityResults,
    VulnerabilityService,
    online_service,
)
from bastion.errors import AdvisoryServiceError, ConfigError, NotFoundError

__all__ = ["MODEL_EXTENSIONS", "AuditOptions", "run_audit"]

logger = logging.getLogger(__name__)

# Model file extensions collected from folders given to ``models`` (a file named directly is always scanned).
MODEL_EXTENSIONS = (
    *(".pkl", ".pickle", ".joblib", ".npy", ".npz"),  # pickle-based, or may hold pickles
    *(".pt", ".pth", ".ckpt", ".bin"),  # PyTorch checkpoints and TorchScript
    *(".safetensors", ".onnx", ".skops"),  # formats that load without running code
)


@dataclass(frozen=True)
class AuditOptions:
    """What to audit and how; stored verbatim, checked when :func:`run_audit` starts."""

    requirements: tuple[Path, ...] = ()  # requirements or lock files
    environment: bool = False  # audit the running interpreter's packages (also when no file is given)
    vuln_db: Path | None = None  # an offline OSV database folder or zip
    online: bool = True  # ask an online service first; offline needs vuln_db
    service: str = "osv"  # a key of ONLINE_SERVICES
    service_url: str | None = None  # the service's base URL (a mirror); None: its public URL
    timeout: float = DEFAULT_TIMEOUT  # seconds per HTTP request
    models: tuple[Path, ...] = ()  # model files or folders (searched recursively by MODEL_EXTENSIONS)
    config: Path | None = None  # a gateway config (bastion.toml): integrity and attack surface
    manifest: Path | None = None  # its signed manifest; None: the integrity module's default place
    manifest_key: bytes | None = None  # the manifest's signing key, when it is signed with one
    fail_on: str = "high"  # one of FAIL_ON_CHOICES


def run_audit(options: AuditOptions, *, service: VulnerabilityService | None = None) -> AuditReport:
    """Run every part ``options`` asks for; ``service`` replaces the online service (tests, mirrors)."""
    _validate(options)
    sources, packages = _collect_packages(options)
    pinned = sorted(packages)
    results, notices = _query(options, service, pinned)
    raw = list(results.findings)
    return AuditReport(
        service=results.service,
        sources=tuple(sources),
        packages=tuple(pinned),
        findings=tuple(_dependency_finding(f, packages[(f.package, f.version)]) for f in raw),
        notices=tuple(notices) + results.notices,
        models=tuple(_scan_models(options.models)),
        integrity=_integrity(options),
        surface=_surface(options, raw, audited=any(s.kind == "environment" for s in sources)),
        fail_on=options.fail_on,
    )


def _validate(options: AuditOptions) -> None:
    if options.fail_on not in FAIL_ON_CHOICES:
        raise ConfigError(f"--fail-on: expected one of {', '.join(FAIL_ON_CHOICES)}, got {options.fail_on!r}")
    if options.service not in ONLINE_SERVICES:
        raise ConfigError(f"--service: expected one of {', '.join(sorted(ONLINE_SERVICES))}, got {options.service!r}")
    if not options.online and options.vuln_db is None:
        raise ConfigError("--offline needs --vuln-db PATH (an OSV database folder or zip)")
    if options.timeout <= 0:
        raise ConfigError(f"--timeout: expected seconds > 0, got {options.timeout}")
    for path in (options.vuln_db, options.config, *options.models):
        if path is not None and not Path(path).exists():
            raise NotFoundError(f"{path} does not exist")


def _collect_packages(options: AuditOptions) -> tuple[list[DependencySource], dict[Package, list[Location]]]:
    """Every source's pins, and each pinned ``(name, version)`` with where it is pinned."""
    sources: list[DependencySource] = []
    packages: dict[Package, list[Location]] = {}
    for path in options.requirements:
        found = packages_from_file(path)
        sources.append(
            DependencySource(lock_format(Path(path)) or "requirements", str(path), len(found.pinned), found.unpinned)
        )
        for name, version in found.pinned:
            packages.setdefault((name, version), []).append(Location(str(path), locate_package(path, name)))
    if options.environment or not options.requirements:
        installed = environment_packages()
        sources.append(DependencySource("environment", None, len(installed), ()))
        for package in installed:
            packages.setdefault(package, []).append(Location(None))
    return sources, packages


def _query(
    options: AuditOptions, service: VulnerabilityService | None, packages: Sequence[Package]
) -> tuple[VulnerabilityResults, list[str]]:
    """The service's answer, falling back to the offline database when the online one is unreachable."""
    if not packages:
        return VulnerabilityResults("none (no pinned packages)", ()), []
    if not options.online:
        if options.vuln_db is None:  # _validate refused this already; kept for the type checker
            raise ConfigError("--offline needs --vuln-db PATH (an OSV database folder or zip)")
        return OfflineService.load(options.vuln_db).query(packages), []
    online = service or online_service(options.service, base_url=options.service_url, timeout=options.timeout)
    try:
        return online.query(packages), []
    except AdvisoryServiceError as exc:
        if options.vuln_db is None:
            raise AdvisoryServiceError(f"{exc}; give --vuln-db PATH to fall back to an offline OSV database") from exc
        logger.warning("%s; falling back to the offline database %s", exc, options.vuln_db)
        notice = f"online service unreachable ({exc}), used offline database {options.vuln_db}"
        return OfflineService.load(options.vuln_db).query(packages), [notice]


def _dependency_finding(finding: Finding, locations: list[Location]) -> DependencyFinding:
    return DependencyFinding(
        package=finding.package,
        version=finding.version,
        id=finding.id,
        aliases=finding.aliases,
        fixed_versions=finding.fixed_versions,
        summary=finding.summary,
        severity=finding.severity,
        level=severity_of(finding.severity).value,
        locations=tuple(locations),
    )


def _scan_models(paths: Sequence[Path]) -> list[ModelFileEntry]:
    entries = []
    for file in _model_files(paths):
        scanned = scan_model_file(file)
        entries.append(
            ModelFileEntry(
                str(scanned.path),
                scanned.claimed_format,
                scanned.detected_format,
                scanned.verdict.value,
                scanned.findings,
            )
        )
    return entries


def _model_files(paths: Sequence[Path]) -> list[Path]:
    """Files named directly, and files with a model extension anywhere under the folders named."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in MODEL_EXTENSIONS)
        else:
            files.append(path)
    return list(dict.fromkeys(files))


def _integrity(options: AuditOptions) -> IntegritySection:
    """The manifest check; a missing manifest is "not signed"."""
    if options.config is None:
        return IntegritySection("not checked", "no gateway config given (--config)")
    # Imported here: the integrity check and the map read the gateway's config, which imports the
    # model loaders, which import bastion.audit.
    from bastion.audit.integrity import check_config, read_key
    from bastion.gateway.config import load_config

    config = load_config(Path(options.config))
    key = options.manifest_key
    if key is None:  # the gateway's own way: [integrity] key_file beside the config, else $BASTION_CONFIG_KEY
        key_file = config.integrity.key_file
        key = read_key(None if key_file is None else Path(options.config).parent / key_file)
    try:
        result = check_config(config, options.manifest, key=key)
    except NotFoundError as exc:
        return IntegritySection("not signed", str(exc))
    checked: dict[str, Any] = result.to_dict()
    if result.ok:
        return IntegritySection("verified", f"{options.config} matches its manifest", checked)
    return IntegritySection("mismatch", f"{options.config} differs from its manifest", checked)


def _surface(options: AuditOptions, findings: Sequence[Finding], *, audited: bool) -> SurfaceSection:
    """The map of the gateway config; its libraries read "audited" only when this environment was."""
    if options.config is None:
        return SurfaceSection("not checked", "no gateway config given (--config)")
    from bastion.audit.surface import build_surface_map  # here for the reason given in _integrity

    surface: dict[str, Any] = build_surface_map(Path(options.config), findings=findings, audited=audited).to_dict()
    return SurfaceSection("mapped", f"from {options.config}", surface)
