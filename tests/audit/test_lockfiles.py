"""Lock files of each kind, built in the test, read into pins; broken ones refused with the file and place named."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from bastion.audit.lockfiles import LOCK_FORMATS, locate_package, lock_format, packages_from_file
from bastion.errors import DataError, NotFoundError

POETRY = """
[[package]]
name = "Requests"
version = "2.31.0"
description = "HTTP"

[[package]]
name = "my_local"
version = "0.1.0"

[package.source]
type = "directory"
url = "../my_local"

[metadata]
lock-version = "2.0"
"""
UV = """
version = 1
requires-python = ">=3.11"

[[package]]
name = "app"
version = "0.1.0"
source = { editable = "." }

[[package]]
name = "jinja2"
version = "3.1.2"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "dynamic-thing"
source = { git = "https://example.invalid/x.git" }
"""
PYLOCK = """
lock-version = "1.0"
created-by = "test"

[[packages]]
name = "urllib3"
version = "1.26.5"

[[packages.wheels]]
url = "https://files.example.invalid/urllib3-1.26.5-py2.py3-none-any.whl"

[[packages]]
name = "local-pkg"
directory = { path = "./local" }
"""
PDM = """
[metadata]
lock_version = "4.4"

[[package]]
name = "pyyaml"
version = "5.3"
summary = "YAML"
"""
PIPFILE = {
    "_meta": {"hash": {"sha256": "0"}},
    "default": {"flask": {"version": "==0.12", "hashes": []}, "vcs-thing": {"git": "https://example.invalid/x"}},
    "develop": {"Pytest_Cov": {"version": "==4.0.0"}},
}


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "text", "pinned", "unpinned"),
    [
        ("poetry.lock", POETRY, [("requests", "2.31.0")], ["my-local 0.1.0 (local)"]),
        ("uv.lock", UV, [("jinja2", "3.1.2")], ["app 0.1.0 (local)", "dynamic-thing"]),
        ("pylock.toml", PYLOCK, [("urllib3", "1.26.5")], ["local-pkg"]),
        ("pylock.dev.toml", PYLOCK, [("urllib3", "1.26.5")], ["local-pkg"]),
        ("pdm.lock", PDM, [("pyyaml", "5.3")], []),
        ("Pipfile.lock", json.dumps(PIPFILE), [("flask", "0.12"), ("pytest-cov", "4.0.0")], ["vcs-thing"]),
    ],
)
def test_each_lock_format_gives_its_pins(
    tmp_path: Path, name: str, text: str, pinned: list[tuple[str, str]], unpinned: list[str]
) -> None:
    found = packages_from_file(write(tmp_path, name, text))
    assert list(found.pinned) == pinned
    assert list(found.unpinned) == unpinned


def test_the_format_follows_the_file_name() -> None:
    assert {lock_format(Path(f"x/{name}")) for name in LOCK_FORMATS} == set(LOCK_FORMATS)
    assert lock_format(Path("pylock.prod.toml")) == "pylock.toml"
    assert lock_format(Path("requirements-dev.txt")) is None
    assert lock_format(Path("pylock.a.b.toml")) is None


def test_a_requirements_file_still_goes_to_the_requirements_reader(tmp_path: Path) -> None:
    found = packages_from_file(write(tmp_path, "requirements.txt", "flask==0.12\nrequests>=2\n"))
    assert found.pinned == (("flask", "0.12"),)
    assert found.unpinned == ("requests>=2",)


def test_broken_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "poetry.lock", '[[package]]\nname = "a"\nversion = 1.0.0\n')
    with pytest.raises(DataError, match=r"poetry\.lock: not valid TOML: .*line 3"):
        packages_from_file(path)


def test_broken_json_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "Pipfile.lock", '{"default": {\n  "flask": }\n}')
    with pytest.raises(DataError, match=r"Pipfile\.lock: not valid JSON: .*line 2"):
        packages_from_file(path)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("poetry.lock", '[metadata]\nlock-version = "2.0"\n', r"poetry\.lock: the poetry\.lock file lists no packages"),
        ("uv.lock", '[[package]]\nversion = "1.0"\n', r"uv\.lock: package\[0\] has no 'name'"),
        ("pdm.lock", '[[package]]\nname = "a"\nversion = 3\n', r"pdm\.lock: package\[0\]\.version must be a string"),
        ("pylock.toml", '[[packages]]\nname = "a"\nversion = "1"\n', r"no 'lock-version' field; expected a PEP 751"),
        ("poetry.lock", 'package = "oops"\n', r"field 'package' must be an array of tables, got str"),
        ("Pipfile.lock", "[1, 2]", r"expected a JSON object with 'default' and 'develop', got list"),
        ("Pipfile.lock", '{"default": {"flask": "==1.0"}}', r"default\.flask must be an object"),
    ],
)
def test_lock_files_off_their_format_are_refused_by_field(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        packages_from_file(write(tmp_path, name, text))


def test_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"uv\.lock does not exist"):
        packages_from_file(tmp_path / "uv.lock")


def test_packages_are_located_at_their_line(tmp_path: Path) -> None:
    lock = write(tmp_path, "poetry.lock", POETRY)
    assert locate_package(lock, "requests") == 3  # the dedented text starts with an empty line
    assert locate_package(lock, "my-local") == 8
    assert locate_package(lock, "absent") is None
    requirements = write(tmp_path, "requirements.txt", "# pins\nFlask==0.12  # old\nrequests>=2\n")
    assert locate_package(requirements, "flask") == 2
    assert locate_package(requirements, "requests") == 3
