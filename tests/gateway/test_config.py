"""The gateway configuration: strict TOML, environment overrides, and refusals that name the bad key or value."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import ConfigError, NotFoundError
from bastion.gateway.config import GUARD_ORDER, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bastion.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_full_guard_stack_with_label_only_clients() -> None:
    config = load_config(None, environ={})
    assert config.guards == GUARD_ORDER
    assert config.output.client == "label"
    assert config.store.url.startswith("sqlite:///")


def test_a_file_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
guards = ["error_boundary", "auth", "validation", "model", "output_policy"]
[rate_limit]
per_key = ["5/second", "100/day"]
global = ["50/second"]
[output]
client = "top_k"
top_k = 2
""",
    )
    config = load_config(path, environ={})
    assert config.guards == ("error_boundary", "auth", "validation", "model", "output_policy")
    assert config.rate_limit.per_key == ("5/second", "100/day")
    assert config.rate_limit.global_ == ("50/second",)
    assert (config.output.client, config.output.top_k) == ("top_k", 2)


def test_an_unknown_key_is_refused_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, '[rate_limit]\nper_kye = ["5/second"]\n')
    with pytest.raises(ConfigError, match=r"unknown key 'rate_limit\.per_kye'"):
        load_config(path, environ={})


def test_an_unknown_section_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'ratelimit'"):
        load_config(write(tmp_path, "[ratelimit]\n"), environ={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nport = 70000\n", r"server\.port.*70000"),
        ('[output]\nclient = "everything"\n', r"output\.client.*everything"),
        ('[store]\nurl = "mysql://x"\n', "expected a sqlite:/// or postgresql:// URL"),
        ('[rate_limit]\nstorage = "memcached://x"\n', "expected memory:// or a redis:// URL"),
        ('guards = ["auth", "model"]\n', r"\['validation'\] cannot be switched off"),
        ('guards = ["auth", "firewall", "validation", "model"]\n', r"unknown guards \['firewall'\]"),
        ('guards = ["model", "validation"]\n', "'validation' must come before 'model'"),
        ("[model]\nbounds = [1.0, 0.0]\n", "low < high"),
        ('[model]\nsource = "model.onnx"\n', "input_shape is required"),
        ('[validation]\nimage_formats = ["PNG", "SVG"]\n', r"unknown image formats \['SVG'\]"),
        ("[monitors.boundary]\nquantile = 0.9\n", r"monitors\.boundary\.quantile"),
    ],
)
def test_impossible_values_are_refused_naming_them(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), environ={})


def test_not_toml_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "guards = [\n"), environ={})
    with pytest.raises(NotFoundError, match="does not exist"):
        load_config(tmp_path / "absent.toml", environ={})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[store]\nurl = "sqlite:///a.db"\n')
    environ = {
        "BASTION__STORE__URL": "postgresql://gateway@db/bastion",
        "BASTION__RATE_LIMIT__PER_KEY": '["3/second"]',
        "BASTION__SERVER__PORT": "9000",
        "UNRELATED": "x",
    }
    config = load_config(path, environ=environ)
    assert config.store.url == "postgresql://gateway@db/bastion"
    assert config.rate_limit.per_key == ("3/second",)
    assert config.server.port == 9000


def test_a_bad_environment_override_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'server\.prot'"):
        load_config(None, environ={"BASTION__SERVER__PROT": "1"})
