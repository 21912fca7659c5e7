"""The Jinja environment every HTML page of Bastion renders in: the package's templates, autoescaped, strict."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jinja2

from bastion.report.views import number, percent

__all__ = ["report_environment"]


def report_environment(**filters: Callable[..., Any]) -> jinja2.Environment:
    """A new environment over ``bastion/report/templates`` with ``percent``, ``number`` and ``filters``.

    Autoescape is on and no template marks a value safe: every value in a report is text, some
    of it chosen by whoever supplied the model, data or request. Undefined names fail loudly.
    """
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("bastion.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(percent=percent, number=number, **filters)
    return environment
