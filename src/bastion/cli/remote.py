"""Turns ``--target URL`` and its companion options into a :class:`~bastion.models.remote.RemoteClassifier`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bastion.errors import ConfigError
from bastion.models.remote import RemoteClassifier, RemoteConfig

__all__ = ["RemoteOptions", "parse_bounds", "parse_headers", "parse_shape", "remote_classifier"]


@dataclass(frozen=True)
class RemoteOptions:
    """The CLI's remote-model options, as typed (strings still to be parsed)."""

    target: str
    knowledge: str = "scores"
    input_shape: str | None = None
    num_classes: int | None = None
    bounds: str = "0,1"
    query_budget: int | None = None
    headers: Sequence[str] = ()
    request_field: str = "inputs"
    response_field: str = "outputs"
    request_mode: str = "json"


def remote_classifier(options: RemoteOptions) -> RemoteClassifier:
    """A remote classifier from the CLI options, refusing missing or malformed ones by name."""
    if options.input_shape is None or options.num_classes is None:
        raise ConfigError("--target needs --input-shape (e.g. 1,28,28) and --num-classes")
    config = RemoteConfig(
        url=options.target,
        knowledge=options.knowledge,
        num_classes=options.num_classes,
        input_shape=parse_shape(options.input_shape),
        bounds=parse_bounds(options.bounds),
        request_mode=options.request_mode,
        request_field=options.request_field,
        response_field=options.response_field,
        headers=parse_headers(options.headers),
        query_budget=options.query_budget,
    )
    return RemoteClassifier(config)


def parse_shape(text: str) -> tuple[int, ...]:
    """``1,28,28`` -> ``(1, 28, 28)``."""
    try:
        return tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--input-shape: expected sizes such as 1,28,28, got {text!r}") from None


def parse_bounds(text: str) -> tuple[float, float]:
    """``0,1`` -> ``(0.0, 1.0)``."""
    parts = text.split(",")
    try:
        low, high = (float(part) for part in parts)
    except ValueError:
        raise ConfigError(f"--bounds: expected LOW,HIGH such as 0,1, got {text!r}") from None
    return low, high


def parse_headers(lines: Sequence[str]) -> dict[str, str]:
    """``Name: value`` lines -> a dict; the values are never echoed back (they may be credentials)."""
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name.strip():  # the text itself is not shown: it may be a credential
            raise ConfigError("--header: expected 'Name: value' such as 'Authorization: Bearer ...', got no name")
        headers[name.strip()] = value.strip()
    return headers
