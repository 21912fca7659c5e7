"""Service URLs as Bastion shows them in messages, logs and reports: never with a password."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["mask_url"]

_QUERY_PASSWORD = re.compile(r"(?i)(^|&)(password=)[^&]*")


def mask_url(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` query parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # e.g. an unclosed IPv6 bracket or a non-numeric port
        return "<unparseable URL>"
    query = _QUERY_PASSWORD.sub(r"\1\2***", parts.query)
    if password is None and query == parts.query:
        return url  # unchanged, and unsplit would turn "memory://" into "memory:"
    netloc = parts.netloc
    if password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rsplit('@', 1)[1]}"
    return urlunsplit(parts._replace(netloc=netloc, query=query))
