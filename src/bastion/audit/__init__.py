"""Audits of files, models and dependencies: what a file would do when loaded, found without loading it."""

from bastion.audit.deps import (
    Finding,
    RequirementsPackages,
    audit_dependencies,
    environment_packages,
    requirements_packages,
)
from bastion.audit.integrity import IntegrityCheck, IntegrityReport, sign_config, verify_manifest
from bastion.audit.models import ModelFileReport, Verdict, scan_model_file
from bastion.audit.osv import OsvDatabase
from bastion.audit.outcome import AuditReport
from bastion.audit.pickles import ScanResult, is_safe_global, scan_pickle
from bastion.audit.run import AuditOptions, run_audit
from bastion.audit.surface import SurfaceMap, build_surface_map

__all__ = [
    "AuditOptions",
    "AuditReport",
    "Finding",
    "IntegrityCheck",
    "IntegrityReport",
    "ModelFileReport",
    "OsvDatabase",
    "RequirementsPackages",
    "ScanResult",
    "SurfaceMap",
    "Verdict",
    "audit_dependencies",
    "build_surface_map",
    "environment_packages",
    "is_safe_global",
    "requirements_packages",
    "run_audit",
    "scan_model_file",
    "scan_pickle",
    "sign_config",
    "verify_manifest",
]
