"""The public API: every module's ``__all__`` is sorted (isort-style, as ruff's RUF022) and names real things."""

from __future__ import annotations

import importlib
import pkgutil
import re
from types import ModuleType

import pytest

import bastion

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(bastion.__path__, prefix="bastion.")
    if not info.name.endswith("__main__")
)
PACKAGES = sorted(info.name for info in pkgutil.walk_packages(bastion.__path__, prefix="bastion.") if info.ispkg)
# The foundations re-export their API; packages still being written may not have one yet.
MUST_EXPORT = ["bastion.attacks", "bastion.data", "bastion.errors", "bastion.models", "bastion.norms"]


def isort_key(name: str) -> tuple[int, list[int | str]]:
    """SCREAMING_CASE, then CamelCase, then the rest; natural order within each group."""
    group = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    return group, [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def public_names(module: ModuleType) -> list[str] | None:
    names = getattr(module, "__all__", None)
    return None if names is None else list(names)


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_unique_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    names = public_names(module)
    if names is None:
        pytest.skip(f"{name} has no __all__")
    assert names == sorted(names, key=isort_key), f"{name}.__all__ is not sorted"
    assert len(names) == len(set(names)), f"{name}.__all__ repeats a name"
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"


@pytest.mark.parametrize("name", MUST_EXPORT)
def test_foundations_declare_their_api(name: str) -> None:
    assert public_names(importlib.import_module(name)), f"{name} has no __all__"


@pytest.mark.parametrize("name", PACKAGES)
def test_package_exports_its_submodules_api(name: str) -> None:
    """What a package re-exports is the same object as in the module that defines it."""
    package = importlib.import_module(name)
    for export in public_names(package) or []:
        obj = getattr(package, export)
        home = getattr(obj, "__module__", None)
        if home and home.startswith(name + "."):
            assert getattr(importlib.import_module(home), export, obj) is obj


def test_isort_key_orders_like_ruff() -> None:
    # The expected order is what `ruff check --select RUF022 --fix` writes for these names.
    names = ["load", "Attack", "ATTACKS", "PGD", "FGSM", "make_attack", "L2", "L1", "Linf", "item10", "item2", "A"]
    assert sorted(names, key=isort_key) == [
        "ATTACKS", "FGSM", "L1", "L2", "PGD", "A", "Attack", "Linf", "item2", "item10", "load", "make_attack",
    ]  # fmt: skip
