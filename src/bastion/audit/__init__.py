"""Audits of files, models and dependencies: what a file would do when loaded, found without loading it."""

from bastion.audit.deps import (
    Finding,
    RequirementsPackages,
    audit_dependencies,
    environment_packages,
    requirements_packages,
)
from bastion.audit.models import ModelFileReport, Verdict, scan_model_file
from bastion.audit.osv import OsvDatabase
from bastion.audit.pickles import ScanResult, is_safe_global, scan_pickle

__all__ = [
    "Finding",
    "ModelFileReport",
    "OsvDatabase",
    "RequirementsPackages",
    "ScanResult",
    "Verdict",
    "audit_dependencies",
    "environment_packages",
    "is_safe_global",
    "requirements_packages",
    "scan_model_file",
    "scan_pickle",
]
