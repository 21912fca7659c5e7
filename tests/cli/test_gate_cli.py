"""``bastion gate``, ``bastion registry``: a candidate judged on trusted data, registered, promoted or refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bastion.cli.main import main
from bastion.data import load_demo
from bastion.gate import ModelRegistry


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


@pytest.fixture
def candidate_data(tmp_path: Path) -> Path:
    train = load_demo("digits", "train")
    path = tmp_path / "candidate.npz"
    np.savez(path, x=train.x.numpy(), y=train.y.numpy())
    return path


def policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_passing_candidate_is_registered_and_promoted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, candidate_data: Path
) -> None:
    registry = tmp_path / "registry"
    assert run(capsys, "registry", "add", "demo:digits", "--registry", str(registry), "--promote")[0] == 0
    lenient = policy(
        tmp_path,
        "max_accuracy_drop = 0.05\nmax_class_drop = 0.3\n"
        "[robust]\neps = 0.05\nsteps = 5\nexamples = 32\n[scan]\nmethod = 'none'\n",
    )
    out_json = tmp_path / "decision.json"
    code, out, err = run(
        capsys, "gate", "--registry", str(registry), "--recipe", "demo:digits", "--candidate-data", str(candidate_data),
        "--test", "demo:digits:test", "--policy", str(lenient), "--promote", "--out", str(out_json),
    )  # fmt: skip
    assert code == 0, err
    assert "PASS" in out and "accuracy_drop" in out
    assert "promoted v0002" in err
    opened = ModelRegistry(registry)
    current = opened.current()
    assert current is not None and current.version == "v0002" and current.passed is True
    assert out_json.is_file() and '"passed": true' in out_json.read_text()
    code, out, _ = run(capsys, "registry", "list", "--registry", str(registry))
    assert code == 0 and "v0001" in out and "v0002" in out
    assert run(capsys, "registry", "rollback", "--registry", str(registry))[0] == 0
    rolled = opened.current()
    assert rolled is not None and rolled.version == "v0001"


def test_a_failing_candidate_exits_10_and_stays_unpromoted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, candidate_data: Path
) -> None:
    registry = tmp_path / "registry"
    run(capsys, "registry", "add", "demo:digits", "--registry", str(registry), "--promote")
    impossible = policy(tmp_path, "min_accuracy = 1.0\n[scan]\nmethod = 'none'\n")
    code, out, err = run(
        capsys, "gate", "--registry", str(registry), "--recipe", "demo:digits", "--candidate-data", str(candidate_data),
        "--test", "demo:digits:test", "--policy", str(impossible), "--promote",
    )  # fmt: skip
    assert code == 10
    assert "FAIL" in out and "the gate refused the candidate: accuracy_drop failed" in err
    opened = ModelRegistry(registry)
    current = opened.current()
    assert current is not None and current.version == "v0001"
    assert [v.passed for v in opened.versions()] == [None, False]


def test_gate_refuses_unclear_requests(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "gate", "--test", "demo:digits:test", "--current", "demo:digits")
    assert code == 2 and "give the candidate" in err
    code, _, err = run(capsys, "gate", "--test", "demo:digits:test", "--candidate", "demo:digits")
    assert code == 2 and "give the current model" in err
    code, _, err = run(
        capsys, "gate", "--test", "demo:digits:test", "--current", "demo:digits", "--candidate", "demo:mnist"
    )
    assert code == 3 and "(1, 28, 28)" in err
    bad = policy(tmp_path, "max_drop = 1\n")
    code, _, err = run(
        capsys,
        "gate",
        "--test",
        "demo:digits:test",
        "--current",
        "demo:digits",
        "--candidate",
        "demo:digits",
        "--policy",
        str(bad),
    )
    assert code == 2 and "max_drop" in err
