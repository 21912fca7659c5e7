"""Audits of files and models: what a file would do when loaded, found without loading it."""

from bastion.audit.pickles import ScanResult, is_safe_global, scan_pickle

__all__ = ["ScanResult", "is_safe_global", "scan_pickle"]
