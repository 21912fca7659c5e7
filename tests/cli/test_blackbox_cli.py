"""``bastion extract``, ``bastion patch`` and ``bastion perturbation`` end to end on the digits demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from bastion.cli.main import main


def test_extract_writes_surrogate_and_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["extract", "demo:digits", "--budget", "1500", "--epochs", "15", "--n-transfer", "60", "-o", str(tmp_path)]
    assert main(args) == 0
    summary = json.loads((tmp_path / "extract.json").read_text())
    assert summary["queries"] == 1500 and summary["soft_labels"] is True
    assert summary["agreement"] > 0.8
    assert 0.0 <= summary["transfer"]["target_success"] <= 1.0
    assert (tmp_path / "surrogate.safetensors").stat().st_size > 1000
    assert "agrees with the target" in capsys.readouterr().out


def test_patch_saves_a_png_and_beats_its_baseline(tmp_path: Path) -> None:
    assert main(["patch", "demo:digits", "--steps", "60", "--size", "0.5", "-o", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "patch.json").read_text())
    assert summary["holdout_success"] > summary["baseline_success"]
    with Image.open(tmp_path / "patch.png") as img:
        assert img.size[0] == img.size[1] >= 4


def test_perturbation_saves_a_png(tmp_path: Path) -> None:
    assert main(["perturbation", "demo:digits", "--eps", "0.3", "--epochs", "2", "-o", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "perturbation.json").read_text())
    assert summary["holdout_success"] > summary["baseline_success"]
    assert (tmp_path / "perturbation.png").exists()


@pytest.mark.parametrize("command", ["extract", "patch", "perturbation"])
def test_model_file_needs_data(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, str(tmp_path / "model.pt"), "-o", str(tmp_path)]) == 2
    assert "needs --data" in capsys.readouterr().err.replace("\n", " ")
