"""``bastion audit``: known-vulnerable dependencies, unsafe model files, configuration integrity, attack surface."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from bastion.audit.formats import AUDIT_FORMATS
from bastion.audit.lockfiles import LOCK_FORMATS
from bastion.audit.outcome import FAIL_ON_CHOICES, AuditReport
from bastion.audit.run import AuditOptions, run_audit
from bastion.audit.vulns import DEFAULT_TIMEOUT, ONLINE_SERVICES
from bastion.cli.common import out_console, split_list
from bastion.errors import AuditFindingsError, ConfigError
from bastion.report.audit import write_audit_report

__all__ = ["audit_command"]


def audit_command(
    requirements: Annotated[
        Optional[list[Path]],  # noqa: UP045 -- typer reads the annotation at run time
        typer.Option(
            "--requirements",
            "-r",
            help=f"A requirements file or lock file ({', '.join(LOCK_FORMATS)}); repeat for more.",
        ),
    ] = None,
    environment: Annotated[
        bool, typer.Option("--environment", help="Audit the running environment's packages (default with no -r).")
    ] = False,
    vuln_db: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--vuln-db", help="An offline OSV database (folder or zip of OSV JSON); the fallback online."),
    ] = None,
    online: Annotated[
        bool, typer.Option("--online/--offline", help="Ask an online service first (falls back to --vuln-db).")
    ] = True,
    service: Annotated[str, typer.Option(help=f"Online service: {', '.join(sorted(ONLINE_SERVICES))}.")] = "osv",
    service_url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--service-url", help="The service's base URL (a mirror); default: its public URL."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per request to the online service.")] = DEFAULT_TIMEOUT,
    models: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option("--models", help="Model files or folders to scan statically (repeat); folders recursively."),
    ] = None,
    config: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--config", help="A gateway config (bastion.toml): integrity and attack surface."),
    ] = None,
    manifest: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--manifest", help="The config's manifest; default: beside the config."),
    ] = None,
    key_file: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--key-file",
            help="The manifest's HMAC key (default: the config's [integrity] key_file, else $BASTION_CONFIG_KEY).",
        ),
    ] = None,
    formats: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--format", help=f"Extra outputs (repeat or comma-separate): {', '.join(AUDIT_FORMATS)}."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for report.json, report.html and --format files.")
    ] = (Path("reports/audit")),
    fail_on: Annotated[
        str,
        typer.Option(
            "--fail-on",
            help=f"Exit {AuditFindingsError.exit_code} on a finding at or above: {', '.join(FAIL_ON_CHOICES)}. "
            "Unrated advisories count as high; unsafe model files and integrity mismatches as critical.",
        ),
    ] = "high",
) -> None:
    """Audit dependencies (OSV / PyPI advisories), model files, and a gateway config's integrity and attack surface."""
    chosen = split_list(formats)
    unknown = [name for name in chosen if name not in AUDIT_FORMATS]
    if unknown:
        raise ConfigError(f"--format: expected one of {', '.join(AUDIT_FORMATS)}, got {', '.join(unknown)}")
    options = AuditOptions(
        requirements=tuple(requirements or ()),
        environment=environment,
        vuln_db=vuln_db,
        online=online,
        service=service,
        service_url=service_url,
        timeout=timeout,
        models=tuple(models or ()),
        config=config,
        manifest=manifest,
        manifest_key=_key(key_file) if config is not None else None,
        fail_on=fail_on,
    )
    report = run_audit(options)
    paths = write_audit_report(report, out, formats=chosen)
    _print(report)
    out_console.print(f"Wrote {', '.join(str(path) for path in paths.values())}", soft_wrap=True)
    blocking = report.blocking()
    if blocking:
        raise AuditFindingsError(f"{len(blocking)} finding(s) at or above --fail-on {fail_on}: " + "; ".join(blocking))


def _key(key_file: Path | None) -> bytes | None:
    """The key from ``--key-file``; else run_audit reads the gateway's ([integrity] key_file, $BASTION_CONFIG_KEY)."""
    from bastion.audit.integrity import read_key

    return None if key_file is None else read_key(key_file)


def _print(report: AuditReport) -> None:
    out_console.print(
        f"Vulnerability service: {report.service}; {len(report.packages)} pinned packages", soft_wrap=True
    )
    for notice in report.notices:
        out_console.print(f"note: {notice}", soft_wrap=True, highlight=False)
    if report.findings:
        table = Table("package", "version", "advisory", "severity", "fixed in", title="Vulnerable dependencies")
        for f in report.findings:
            table.add_row(f.package, f.version, f.id, f.level, ", ".join(f.fixed_versions) or "–")
        out_console.print(table)
    if report.models:
        table = Table("model file", "detected", "verdict", title="Model files")
        for m in report.models:
            table.add_row(m.path, m.detected_format, m.verdict)
        out_console.print(table)
    out_console.print(f"Configuration integrity: {report.integrity.status} ({report.integrity.detail})", soft_wrap=True)
    out_console.print(f"Attack surface: {report.surface.status} ({report.surface.detail})", soft_wrap=True)
    threats = (report.surface.surface or {}).get("threats", [])
    if threats:
        colour = {"mitigated": "green", "partial": "yellow", "open": "red"}
        table = Table("threat", "status", "layers", title="Threats (Microsoft, Threat Modeling AI/ML Systems)")
        for threat in threats:
            status = threat["status"]
            table.add_row(threat["name"], f"[{colour.get(status, 'white')}]{status}[/]", str(len(threat["layers"])))
        out_console.print(table)
