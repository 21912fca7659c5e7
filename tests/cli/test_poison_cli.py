"""``bastion poison`` end to end on the digits with tiny settings, and every kind of bad input as a clear error."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bastion.cli.main import main
from bastion.data import load_demo


def test_poison_writes_the_report_and_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "poison"
    args = ["poison", "--recipe", "demo:digits", "-a", "backdoor,label-flip", "--rate", "0.05", "--epochs", "3"]
    assert main([*args, "--seed", "1", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Poisoning demo:digits" in printed and "backdoor" in printed and "report.html" in printed.replace("\n", "")
    report = json.loads((out / "report.json").read_text())
    assert report["recipe"] == "demo:digits" and report["epochs"] == 3 and report["seed"] == 1
    assert [(r["attack"], r["rate"], r["poisoned"]) for r in report["runs"]] == [
        ("backdoor", 0.0, 0), ("backdoor", 0.05, 72), ("label-flip", 0.0, 0), ("label-flip", 0.05, 72),
    ]  # fmt: skip
    backdoor = report["runs"][1]
    assert backdoor["attack_success"] > 0.5 > report["runs"][0]["attack_success"]
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Poisoning susceptibility" in html


def write_npz(path: Path, x: np.ndarray, y: np.ndarray) -> str:
    np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))
    return str(path)


@pytest.fixture
def bad_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "poison_cli_recipes.py").write_text(
        textwrap.dedent(
            """
            class Boom:
                name = "boom"

                def fit(self, data, *, seed=0, init=None, epochs=None):
                    raise RuntimeError("out of coffee")


            def make():
                return Boom()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "poison_cli_recipes:make"


@pytest.fixture
def digits_files(tmp_path: Path) -> dict[str, str]:
    test = load_demo("digits", "test")
    x, y = test.x.numpy(), test.y.numpy()
    bad_y = y.copy()
    bad_y[3] = 12
    return {
        "good": write_npz(tmp_path / "good.npz", x, y),
        "bad_labels": write_npz(tmp_path / "bad_labels.npz", x, bad_y),
        "bad_shape": write_npz(tmp_path / "bad_shape.npz", x[:, :, :4, :4], y),
    }


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["-a", "nope"], 2, "unknown poisoning attack 'nope': expected one of backdoor, backdoor-blend, feature-"),
        (["--rate", "1.5"], 2, "expected poison rates in (0, 1), got 1.5"),
        (["--rate", "0"], 2, "expected poison rates in (0, 1), got 0.0"),
        (["--rate", "abc"], 2, "--rate: expected a number, got 'abc'"),
        (["--epochs", "0"], 2, "--epochs: expected an integer >= 1, got 0"),
        (["--recipe", "demo:cifar"], 2, "unknown demo dataset 'cifar'"),
        (["--recipe", "{bad}"], 2, "a recipe that is not a bundled demo needs --train and --test data"),
        (["--recipe", "{bad}", "--train", "{good}", "--test", "{good}"], 3, "recipe boom failed on"),
        (["--test", "{bad_labels}"], 2, "label 12 is out of range for a model with 10 classes"),
        (["--test", "{bad_shape}"], 2, "training inputs have shape (1, 8, 8), test inputs (1, 4, 4)"),
        (["--train", "{bad_shape}"], 2, "inputs have shape (1, 4, 4)"),
        (["--test", "missing.npz"], 2, "data not found: missing.npz"),
        (["-a", "label-flip-targeted", "--rate", "0.2"], 2, "class 0 has only 142 examples"),
    ],
)
def test_bad_input_exits_with_a_message_and_no_traceback(
    args: list[str],
    code: int,
    message: str,
    bad_recipe: str,
    digits_files: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    filled = [arg.format(bad=bad_recipe, **digits_files) for arg in args]
    assert main(["poison", "--epochs", "1", "-o", str(tmp_path / "out"), *filled]) == code
    err = capsys.readouterr().err
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err and not (tmp_path / "out" / "report.json").exists()
