"""Configuration integrity: sign a real gateway config with its files, then tamper with each part and see it named."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from bastion.audit import IntegrityReport, sign_config, verify_manifest
from bastion.audit.integrity import KEY_ENV, read_key
from bastion.cli.main import main
from bastion.errors import ConfigError, DataError, IntegrityError, NotFoundError
from bastion.models.zoo import DigitsCNN

KEY = b"k" * 32
FACTORY = """
from bastion.models.zoo import DigitsCNN


def make():
    return DigitsCNN()
"""


def write_setup(folder: Path, *, module: str = "integrity_net", extra: str = "") -> Path:
    """A model file, its factory module, calibration data and the config naming them; returns the config."""
    torch.manual_seed(0)
    save_file(DigitsCNN().state_dict(), str(folder / "model.safetensors"))
    (folder / f"{module}.py").write_text(FACTORY, encoding="utf-8")
    (folder / "benign.npz").write_bytes(b"not read when signing, only hashed")
    config = folder / "bastion.toml"
    config.write_text(
        f"""
[model]
source = "{folder / "model.safetensors"}"
factory = "{module}:make"
input_shape = [1, 8, 8]
calibration_data = "{folder / "benign.npz"}"
[monitors.boundary]
quantile = 0.05
{extra}
""",
        encoding="utf-8",
    )
    return config


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))  # the factory module is found on sys.path, as the gateway finds it
    for name in [name for name in os.environ if name.startswith("BASTION__") or name == KEY_ENV]:
        monkeypatch.delenv(name)
    return write_setup(tmp_path)


def failed(report: IntegrityReport) -> list[str]:
    return [check.name for check in report.checks if not check.ok]


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def test_sign_then_verify_records_the_files_and_the_effective_settings(config: Path) -> None:
    manifest = sign_config(config)
    assert manifest == config.with_name("bastion.toml.manifest.json")
    report = verify_manifest(config)
    assert report.ok and not report.signed and failed(report) == []
    names = {check.name for check in report.checks}
    assert {"config.sha256", "file.model.source.sha256", "file.model.factory.sha256"} <= names
    assert {"file.model.calibration_data.sha256", "effective.monitors.boundary.quantile", "effective.guards"} <= names
    body = json.loads(manifest.read_text())["body"]
    assert body["files"]["model.factory"]["path"] == str(config.with_name("integrity_net.py"))
    assert body["effective"]["monitors"]["boundary"]["quantile"] == 0.05
    assert "session_secret" not in body["effective"]["server"] and "url" not in body["effective"]["store"]
    assert json.loads(json.dumps(report.to_dict()))["checks"][0].keys() == {"name", "expected", "actual", "ok"}


def test_a_changed_threshold_in_the_config_is_named(config: Path) -> None:
    sign_config(config)
    config.write_text(config.read_text().replace("quantile = 0.05", "quantile = 0.2"))
    report = verify_manifest(config)
    assert failed(report) == ["config.sha256", "effective.monitors.boundary.quantile"]
    check = next(c for c in report.checks if c.name == "effective.monitors.boundary.quantile")
    assert (check.expected, check.actual) == ("0.05", "0.2")


def test_one_flipped_byte_in_the_model_file_is_named(config: Path) -> None:
    sign_config(config)
    flip_last_byte(config.with_name("model.safetensors"))
    assert failed(verify_manifest(config)) == ["file.model.source.sha256"]  # same size, other content


def test_a_changed_factory_module_and_calibration_data_are_named(config: Path) -> None:
    sign_config(config)
    factory = config.with_name("integrity_net.py")
    factory.write_text(factory.read_text() + "\n# changed\n")
    config.with_name("benign.npz").unlink()
    assert failed(verify_manifest(config)) == [
        "file.model.calibration_data.sha256",
        "file.model.calibration_data.size",
        "file.model.factory.sha256",
        "file.model.factory.size",
    ]


def test_an_environment_override_of_a_hyper_parameter_is_caught(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sign_config(config)
    monkeypatch.setenv("BASTION__MONITORS__QUERY__TARGET_FPR", "0.01")
    monkeypatch.setenv("BASTION__OUTPUT__CLIENT", "scores")
    report = verify_manifest(config)
    assert failed(report) == ["effective.monitors.query.target_fpr", "effective.output.client"]


def test_deployment_settings_may_be_overridden_and_integrity_may_not(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_config(config)
    monkeypatch.setenv("BASTION__SERVER__PORT", "9001")
    monkeypatch.setenv("BASTION__STORE__URL", "sqlite:///elsewhere.db")
    assert verify_manifest(config).ok
    monkeypatch.setenv("BASTION__INTEGRITY__REQUIRED", "false")
    with pytest.raises(ConfigError, match=r"\[integrity\] cannot be set from the environment.*integrity\.required"):
        verify_manifest(config)


def test_a_signed_manifest_needs_the_right_key(config: Path) -> None:
    sign_config(config, key=KEY)
    good = verify_manifest(config, key=KEY)
    assert good.ok and good.signed and "signature" in {c.name for c in good.checks}
    assert failed(verify_manifest(config, key=b"w" * 32)) == ["signature"]
    with pytest.raises(ConfigError, match=r"is signed: give its key"):
        verify_manifest(config)


def test_a_forged_manifest_fails_its_signature(config: Path) -> None:
    """An attacker who can write the files but not read the key rewrites the manifest to match the tampered config."""
    manifest = sign_config(config, key=KEY)
    config.write_text(config.read_text().replace("quantile = 0.05", "quantile = 0.2"))
    forged = json.loads(manifest.read_text())
    fresh = json.loads(sign_config(config, out=config.with_name("scratch.json")).read_text())["body"]
    forged["body"]["config"], forged["body"]["effective"] = fresh["config"], fresh["effective"]
    manifest.write_text(json.dumps(forged))
    assert failed(verify_manifest(config, key=KEY)) == ["signature"]
    forged["signature"] = None  # a downgrade to an unsigned manifest is refused when a key is given
    manifest.write_text(json.dumps(forged))
    report = verify_manifest(config, key=KEY)
    assert failed(report) == ["signature"] and report.checks[1].actual == "unsigned"


def test_missing_and_unreadable_manifests(config: Path) -> None:
    absent = config.with_name("absent.json")
    with pytest.raises(NotFoundError, match=r"absent\.json does not exist"):
        verify_manifest(config, absent)
    garbage = config.with_name("garbage.json")
    garbage.write_text("{ not json")
    with pytest.raises(DataError, match=r"garbage\.json is not valid JSON"):
        verify_manifest(config, garbage)
    garbage.write_text("[1, 2]")
    with pytest.raises(DataError, match=r"expected an object with a 'body' object, got list"):
        verify_manifest(config, garbage)


def test_signing_refuses_a_config_whose_model_file_is_missing(config: Path) -> None:
    with pytest.raises(NotFoundError, match=r"folder .*nowhere does not exist"):
        sign_config(config, out=config.with_name("nowhere") / "manifest.json")
    config.with_name("model.safetensors").unlink()
    with pytest.raises(NotFoundError, match=r"model\.source names .*model\.safetensors, which does not exist"):
        sign_config(config)


def test_finding_the_factory_runs_no_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """importlib.util.find_spec('pkg.nets') would run pkg/__init__.py; the manifest must not."""
    monkeypatch.syspath_prepend(str(tmp_path))
    marker = tmp_path / "ran"
    package = tmp_path / "integrity_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (package / "nets.py").write_text(f"open({str(marker)!r}, 'w').close()\n" + FACTORY)
    config = write_setup(tmp_path)
    config.write_text(config.read_text().replace("integrity_net:make", "integrity_pkg.nets:make"))
    body = json.loads(sign_config(config).read_text())["body"]
    assert body["files"]["model.factory"]["path"] == str(package / "nets.py")
    assert not marker.exists()


def test_keys_come_from_a_file_or_the_environment(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    assert read_key(key_file, environ={}) == KEY
    assert read_key(None, environ={KEY_ENV: KEY.decode()}) == KEY
    assert read_key(None, environ={}) is None
    key_file.write_bytes(b"short")
    with pytest.raises(ConfigError, match=r"at least 16 bytes, got 5"):
        read_key(key_file)
    with pytest.raises(NotFoundError, match=r"nokey does not exist"):
        read_key(tmp_path / "nokey")


def test_cli_sign_and_verify(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = config.with_name("key")
    key_file.write_bytes(KEY)
    assert main(["config", "sign", "-c", str(config), "--key-file", str(key_file)]) == 0
    assert main(["config", "verify", "-c", str(config), "--key-file", str(key_file)]) == 0
    assert "signed, signature valid" in capsys.readouterr().err
    flip_last_byte(config.with_name("model.safetensors"))
    code = main(["config", "verify", "-c", str(config), "--key-file", str(key_file), "--json"])
    captured = capsys.readouterr()
    assert code == IntegrityError.exit_code == 6
    assert "file.model.source.sha256" in captured.err
    report = json.loads(captured.out)
    assert report["ok"] is False and report["signed"] is True
    assert [c["name"] for c in report["checks"] if not c["ok"]] == ["file.model.source.sha256"]
    assert main(["config", "verify", "-c", str(config)]) == ConfigError.exit_code  # signed, but no key given
    assert "[integrity] key_file" in capsys.readouterr().err  # printed as text, not taken for markup


def test_cli_uses_the_configured_manifest_and_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "secret.key").write_bytes(KEY)
    config = write_setup(tmp_path, extra='[integrity]\nmanifest = "signed/manifest.json"\nkey_file = "secret.key"\n')
    (tmp_path / "signed").mkdir()
    assert main(["config", "sign", "-c", str(config)]) == 0
    manifest = json.loads((tmp_path / "signed" / "manifest.json").read_text())
    assert manifest["signature"]["algorithm"] == "hmac-sha256"
    assert verify_manifest(config, key=KEY).ok
