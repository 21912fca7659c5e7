"""``bastion harden``: end to end with tiny settings (model, manifest, report), the gate hook, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.cli.main import main
from bastion.gate import ModelRegistry
from bastion.harden.report import read_harden_json
from bastion.harden.save import load_hardened

TINY = ["--eps", "0.2", "--epochs", "1", "--steps", "2", "--batch-size", "64", "--lr", "3e-3"]
REPORT = ["--preset", "quick", "-n", "16", "--eval-eps", "0.1,0.2", "--quiet"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, " ".join(out.split()), " ".join(err.split())


def test_harden_writes_the_model_its_manifest_and_the_report_and_submits_it_to_the_gate(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    registry = tmp_path / "registry"
    assert run(capsys, "registry", "add", "demo:digits", "--registry", str(registry), "--promote")[0] == 0
    policy = tmp_path / "gate.toml"
    policy.write_text(
        "max_accuracy_drop = 0.2\nmax_class_drop = 0.5\n[robust]\neps = 0.2\nsteps = 5\nexamples = 32\n"
        "max_drop = 0.0\n[scan]\nmethod = 'none'\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    code, stdout, stderr = run(
        capsys, "harden", "demo:digits", "--method", "pgd", *TINY, *REPORT, "--out", str(out),
        "--registry", str(registry), "--policy", str(policy),
    )  # fmt: skip
    assert code == 0, stderr
    assert "epoch 1: clean" in stderr and "robust (PGD eps 0.2)" in stderr
    assert "clean" in stdout and "gate: PASS" in stdout and "v0002 promoted" in stderr
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["method"] == "pgd" and manifest["factory"] == "bastion.models.zoo:DigitsCNN"
    assert len(manifest["data"]["sha256"]) == 64 and manifest["settings"]["eps"] == 0.2
    report = read_harden_json(out / "report.json")
    assert [row.eps for row in report.rows] == [0.1, 0.2] and len(report.history) == 1
    assert "square" in report.after.settings.attacks
    assert "Before and after" in (out / "report.html").read_text(encoding="utf-8")
    assert load_hardened(out).num_classes == 10
    current = ModelRegistry(registry).current()
    assert current is not None and current.version == "v0002" and current.passed is True


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            ["--method", "madry"],
            2,
            "unknown hardening method 'madry': expected one of fgsm-rs, pgd, reject-class, trades",
        ),
        (["--eps", "2"], 2, "expected eps in (0, 1] for the linf norm on inputs in [0, 1], got 2.0"),
        (["--epochs", "0"], 2, "expected epochs >= 1, got 0"),
        (["--policy", "gate.toml"], 2, "--policy is the retraining gate's: give --registry too"),
        (["--method", "reject-class", "--registry", "r"], 2, "cannot go through the gate"),
        (["--preset", "fast"], 2, "unknown preset 'fast'"),
        (["--eval-eps", "0.1,1.5"], 2, "expected eps <= the input range 1 for linf, got 1.5"),
    ],
)
def test_bad_input_gets_a_clear_error_and_exit_code_without_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], code: int, message: str
) -> None:
    got, _, stderr = run(capsys, "harden", "demo:digits", *argv, "--quiet", "--out", str(tmp_path / "out"))
    assert got == code and message in stderr and "Traceback" not in stderr


def test_a_model_file_needs_its_data(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, stderr = run(capsys, "harden", str(tmp_path / "model.safetensors"), "--factory", "x:y")
    assert code == 2 and "a model file needs --data (training data) and --test" in stderr
