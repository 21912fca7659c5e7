"""The exception tree: every error has an exit code and an HTTP status, and the drawn tree is the real one."""

from __future__ import annotations

import inspect
import re

import pytest

from bastion import errors
from bastion.errors import BastionError

CLASSES = {
    name: cls
    for name, cls in vars(errors).items()
    if inspect.isclass(cls) and issubclass(cls, BastionError) and cls.__module__ == errors.__name__
}
# "    │   ├── ConfigError               exit 2   HTTP 400   an option, ..."
TREE_LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>\w+Error)\s+exit (?P<exit>\d+)\s+HTTP (?P<http>\d+)")


def drawn_tree() -> dict[str, tuple[str | None, int, int]]:
    """Name -> (parent, exit code, HTTP status) as drawn in the module docstring."""
    rows: dict[str, tuple[str | None, int, int]] = {}
    stack: list[tuple[int, str]] = []  # (depth, name) of the open ancestors
    for line in (errors.__doc__ or "").splitlines():
        found = TREE_LINE.match(line.removeprefix("    "))  # the tree is a literal block indented by 4
        if not found:
            continue
        depth = len(found["indent"]) // 4
        while stack and stack[-1][0] >= depth:
            stack.pop()
        rows[found["name"]] = (stack[-1][1] if stack else None, int(found["exit"]), int(found["http"]))
        stack.append((depth, found["name"]))
    return rows


def test_every_error_is_exported() -> None:
    assert sorted(CLASSES) == sorted(errors.__all__)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_every_error_has_an_exit_code_and_http_status(name: str) -> None:
    cls = CLASSES[name]
    assert isinstance(cls.exit_code, int) and 1 <= cls.exit_code <= 125
    assert cls.exit_code != errors.INTERNAL_ERROR_EXIT_CODE
    assert isinstance(cls.http_status, int) and 100 <= cls.http_status <= 599
    assert re.fullmatch(r"[a-z_]+", cls.code)
    assert cls.__doc__ and cls.__doc__.strip()


def test_codes_are_unique() -> None:
    codes = [cls.code for cls in CLASSES.values()]
    assert len(codes) == len(set(codes))


def test_the_drawn_tree_matches_the_classes() -> None:
    tree = drawn_tree()
    assert sorted(tree) == sorted(CLASSES), "the docstring's tree and the classes list different errors"
    for name, (parent, exit_code, http) in tree.items():
        cls = CLASSES[name]
        assert (cls.exit_code, cls.http_status) == (exit_code, http), name
        bases = [b.__name__ for b in cls.__bases__]
        assert bases == [parent or "Exception"], f"{name} derives from {bases}, the tree says {parent}"


def test_errors_carry_their_message() -> None:
    error = errors.DataError("expected eps > 0, got -0.1")
    assert str(error) == "expected eps > 0, got -0.1"
    assert isinstance(error, errors.InvalidInputError) and isinstance(error, BastionError)
    with pytest.raises(BastionError, match=r"got -0\.1"):
        raise error
