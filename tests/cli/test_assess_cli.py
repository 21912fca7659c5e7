"""The CLI in-process: exit codes, messages without tracebacks, and one end-to-end quick assessment."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

from bastion.cli.main import main


def test_quick_assessment_writes_all_three_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    code = main(["assess", "demo:digits", "--preset", "quick", "-n", "48", "--eps", "0.1,0.3", "-o", str(out), "-q"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "report.html" in printed.replace("\n", "")
    data = json.loads((out / "report.json").read_text())
    assert data["settings"]["preset"] == "quick" and data["data"]["n_examples"] == 48
    assert {r["attack"] for r in data["runs"]} >= {"fgsm", "pgd"}
    html = (out / "report.html").read_text()
    assert "<html" in html.lower() and "data:image/png;base64," in html
    suite = ET.parse(out / "junit.xml").getroot()
    assert suite.iter("testcase")


def test_missed_threshold_exits_10(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["assess", "demo:digits", "-a", "fgsm", "-n", "32", "--eps", "0.3", "-o", str(tmp_path), "-q"]
    code = main([*args, "--fail-under", "robust_accuracy@0.3=0.99", "--no-trust-checks"])
    assert code == 10
    err = capsys.readouterr().err
    assert "missed 1 threshold(s): robust_accuracy@0.3" in err
    assert (tmp_path / "junit.xml").exists()  # the report is written before the exit code is set


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--preset", "fast"], 2, "unknown preset 'fast': expected one of quick, standard, thorough"),
        (["--eps", "-0.1"], 2, "expected eps > 0, got -0.1"),
        (["--eps", "abc"], 2, "--eps: expected a number, got 'abc'"),
        (["-a", "nope"], 2, "unknown attack 'nope'"),
        (["--norm", "l7"], 2, "unknown norm 'l7'"),
        (["--fail-under", "robust_accuracy@0.2=0.5", "--eps", "0.1"], 2, "not among the assessed epsilons"),
        (["--data", "missing.npz"], 2, "data not found: missing.npz"),
    ],
)
def test_bad_options_exit_with_a_message(
    args: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["assess", "demo:digits", "-o", str(tmp_path), "-q", *args]) == code
    err = capsys.readouterr().err
    assert message in err.replace("\n", " ")
    assert "Traceback" not in err


def test_pickled_model_is_refused_with_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 1, 8, 8), np.float32), y=np.zeros(4, np.int64))
    torch.save(torch.nn.Linear(64, 10), tmp_path / "model.pt")
    code = main(["assess", str(tmp_path / "model.pt"), "--data", str(tmp_path / "d.npz"), "-q"])
    assert code == 4
    err = capsys.readouterr().err
    assert "pickled PyTorch checkpoint" in err.replace("\n", " ") and "Traceback" not in err


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assess", "--frobnicate"]) == 2
    assert "No such option" in capsys.readouterr().err


def test_attacks_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["attacks"]) == 0
    out = capsys.readouterr().out
    assert "pgd" in out and "fgsm" in out


def test_torchscript_model_from_a_file(tmp_path: Path) -> None:
    from bastion.demo import demo_model

    module = demo_model("digits").module
    torch.jit.save(torch.jit.script(module), tmp_path / "digits.pt")
    from bastion.data import load_demo

    test = load_demo("digits", "test")
    np.savez(tmp_path / "d.npz", x=test.x[:40].numpy(), y=test.y[:40].numpy())
    code = main(
        [
            "assess",
            str(tmp_path / "digits.pt"),
            "-d",
            str(tmp_path / "d.npz"),
            "-a",
            "pgd",
            "--eps",
            "0.2",
            "-o",
            str(tmp_path / "r"),
            "-q",
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["model"]["name"] == "digits.pt" and report["runs"][0]["robust_accuracy"] < 0.2


def test_pt2_needs_trust_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bastion.data import load_demo
    from bastion.demo import demo_model

    test = load_demo("digits", "test")
    batch = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}}
    exported = torch.export.export(demo_model("digits").module, (test.x[:2],), dynamic_shapes=batch)
    torch.export.save(exported, tmp_path / "digits.pt2")
    np.savez(tmp_path / "d.npz", x=test.x[:24].numpy(), y=test.y[:24].numpy())
    base = ["assess", str(tmp_path / "digits.pt2"), "-d", str(tmp_path / "d.npz"), "-a", "fgsm", "--eps", "0.1"]
    base += ["-o", str(tmp_path / "r"), "-q", "--no-trust-checks"]
    assert main(base) == 4
    assert "--trust-model-file" in capsys.readouterr().err.replace("\n", " ")
    assert main([*base, "--trust-model-file"]) == 0
    assert json.loads((tmp_path / "r" / "report.json").read_text())["model"]["name"] == "digits.pt2"
