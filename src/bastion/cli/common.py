"""Shared CLI plumbing: the consoles and the conversion of option strings."""

from __future__ import annotations

from rich.console import Console

from bastion.errors import ConfigError

__all__ = ["err_console", "out_console", "split_list", "to_floats"]

out_console = Console()
err_console = Console(stderr=True)


def split_list(values: list[str] | None) -> list[str]:
    """Accept repeated options and comma-separated lists alike."""
    items: list[str] = []
    for value in values or []:
        items.extend(v.strip() for v in value.split(",") if v.strip())
    return items


def to_floats(values: list[str] | None, option: str) -> list[float]:
    out = []
    for text in split_list(values):
        try:
            out.append(float(text))
        except ValueError:
            raise ConfigError(f"{option}: expected a number, got {text!r}") from None
    return out
