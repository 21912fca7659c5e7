"""``bastion fuzz`` end to end on demo:digits with a small budget, and bad input as clear errors and exit codes."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastion.cli.fuzz import FINDINGS_EXIT_CODE
from bastion.cli.main import main


def _fuzz(out: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    code = main(["fuzz", "demo:digits", "--budget", "300", "--quiet", "--out", str(out), *extra])
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    return code, report


def _stable(report: dict[str, Any]) -> dict[str, Any]:
    """The report without wall-clock times."""
    runs = [{k: v for k, v in run.items() if k != "seconds"} for run in report["runs"]]
    return {**{k: v for k, v in report.items() if k != "seconds"}, "runs": runs}


def test_fuzz_writes_a_report_whose_findings_match_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _fuzz(tmp_path / "a", "--seed", "3")
    printed = capsys.readouterr()
    findings = report["findings"]
    assert FINDINGS_EXIT_CODE == 11
    assert code == (FINDINGS_EXIT_CODE if findings else 0) and findings  # the demo CNN has failures to find
    assert f"{len(findings)} unique finding(s)" in printed.err
    assert sum(report["by_class"].values()) == len(findings)
    assert set(report["by_class"]) >= {"changed_prediction", "non_finite", "exception", "disagreement"}
    assert report["options"]["seed"] == 3 and report["options"]["budget"] == 300
    assert report["inputs"] <= 300 + sum(r["inputs"] for r in report["runs"] if r["fuzzer"] == "minimise")
    assert report["validity"]["relative_rate"] >= 0.95 and report["validity"]["oracle"] == "demo-digits-cnn"
    assert len(report["coverage"]) > 2
    for finding in findings:
        array = np.load(tmp_path / "a" / finding["reproducer"], allow_pickle=False)
        assert array.shape == (1, 8, 8) and (tmp_path / "a" / finding["image"]).exists()
    html = (tmp_path / "a" / "report.html").read_text()
    assert "Findings by class" in html and findings[0]["reproducer"] in html
    again_code, again = _fuzz(tmp_path / "b", "--seed", "3")
    assert again_code == code and _stable(again) == _stable(report)


@pytest.mark.parametrize("variant", ["float16", "int8"])
def test_reference_copy_adds_the_disagreement_oracle(tmp_path: Path, variant: str) -> None:
    code, report = _fuzz(tmp_path, "--reference", variant, "--fuzzer", "guided", "--no-minimise")
    assert code in (0, FINDINGS_EXIT_CODE) and [run["fuzzer"] for run in report["runs"]] == ["guided"]
    assert report["options"]["reference"] == f"demo-digits-cnn-{variant}"
    assert report["validity"] is None  # validity is the metamorphic fuzzer's, which did not run


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["fuzz", "demo:digits", "--budget", "0"], 2, "expected a budget of at least 1 input, got 0"),
        (["fuzz", "demo:digits", "--strength", "1.5"], 2, "expected a strength in [0, 1], got 1.5"),
        (["fuzz", "demo:digits", "--fuzzer", "afl"], 2, "unknown fuzzers"),
        (["fuzz", "demo:digits", "--pipeline"], 2, "give one target to fuzz, not a model and --pipeline"),
        (["fuzz", "demo:digits", "--data", "demo:mnist:test", "--budget", "10"], 2, "(1, 28, 28)"),
        (["fuzz", "--gateway", "http://127.0.0.1:{port}", "--budget", "5"], 3, "gateway at http://127.0.0.1:{port}"),
        (["fuzz", "--gateway", "not-a-url", "--budget", "5"], 2, "expected an http or https URL"),
    ],
)
def test_bad_input_exits_with_a_clear_message(
    args: list[str], exit_code: int, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = str(_closed_port())
    argv = [arg.replace("{port}", port) for arg in args]
    assert main([*argv, "--quiet", "--out", str(tmp_path)]) == exit_code
    assert message.replace("{port}", port) in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "report.json").exists()


def _pipeline(out: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    code = main(["fuzz", "--pipeline", "--quiet", "--out", str(out), *extra])
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    return code, report


def test_pipeline_fuzzing_of_chosen_decoders(tmp_path: Path) -> None:
    code, report = _pipeline(tmp_path, "--decoder", "decode.parse_json_body", "--budget", "60", "--seed", "1")
    assert code == 0 and report["target"] == "pipeline" and report["findings"] == []
    assert report["options"]["engine"] == "hypothesis" and report["options"]["decoders"] == "decode.parse_json_body"
    assert 30 <= report["runs"][0]["inputs"] <= 60


@pytest.mark.usefixtures("need_atheris")
def test_pipeline_fuzzing_with_libfuzzer(tmp_path: Path) -> None:
    code, report = _pipeline(
        tmp_path, "--engine", "libfuzzer", "--decoder", "decode.declared_image_format", "--budget", "2000"
    )
    assert code == 0 and report["options"]["engine"] == "libfuzzer" and report["findings"] == []
    assert report["runs"][0]["inputs"] >= 2000  # libFuzzer's executed units


def test_list_decoders_and_engine_outside_the_pipeline(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["fuzz", "--list-decoders"]) == 0
    assert "decode.decode_image" in capsys.readouterr().out
    assert main(["fuzz", "demo:digits", "--engine", "libfuzzer", "--quiet", "--out", str(tmp_path)]) == 2
    assert "--engine and --decoder apply to --pipeline only" in capsys.readouterr().err
    assert main(["fuzz", "--pipeline", "--decoder", "nope", "--quiet", "--out", str(tmp_path)]) == 2
    assert "unknown decoders ['nope']" in capsys.readouterr().err
