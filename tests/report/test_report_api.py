"""The report package's public API: a sorted ``__all__`` whose every name exists."""

from __future__ import annotations

import bastion.report as report


def _isort_key(name: str) -> tuple[int, str]:
    # Constants first, then classes, then functions: the order ruff's RUF022 keeps.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_complete() -> None:
    assert report.__all__ == sorted(report.__all__, key=_isort_key)
    assert all(hasattr(report, name) for name in report.__all__)
    assert {"write_report", "read_json", "render_html", "render_junit", "print_summary"} <= set(report.__all__)


def test_template_ships_with_the_package() -> None:
    from importlib.resources import files

    assert files("bastion.report").joinpath("templates/report.html").is_file()
