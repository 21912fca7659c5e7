"""The pipeline fuzzer finds planted crashes, hangs and memory blow-ups with minimal reproducers, under a seed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from bastion.errors import ConfigError, DataError
from bastion.fuzz import DecoderTarget, PipelineResult, fuzz_decoders
from bastion.fuzz.decoders import DECODER_TARGETS
from bastion.fuzz.strategies import json_values


def deep_big_number(value: Any) -> None:
    """A validator planted with a crash: a number over 1000 inside a list inside a list."""
    if not isinstance(value, list):
        raise DataError(f"expected a list, got {type(value).__name__}")
    for item in value:
        if isinstance(item, list) and any(_number(x) and x > 1000 for x in item):
            raise IndexError("planted crash")


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def greedy(value: Any) -> None:
    """A decoder planted with a memory blow-up: 64 MiB for an object with two keys or more."""
    if isinstance(value, dict) and len(value) >= 2:
        buffer = bytearray(64 * 2**20)
        del buffer


def five_bytes(data: bytes) -> None:
    """A byte decoder planted with a crash on any input of five bytes or more."""
    if len(data) >= 5:
        raise ValueError("planted byte crash")


def sleepy(value: Any) -> None:
    """A decoder planted with a hang: a list holding two lists."""
    if isinstance(value, list) and sum(isinstance(item, list) for item in value) >= 2:
        time.sleep(1.0)


PLANTED = {
    "planted.crash": DecoderTarget(call=deep_big_number, strategy=json_values()),
    "planted.memory": DecoderTarget(call=greedy, strategy=json_values()),
    "planted.bytes": DecoderTarget(call=five_bytes, strategy=st.binary(max_size=16)),
}


def run_planted(out_dir: Path | None = None) -> PipelineResult:
    return fuzz_decoders(targets=PLANTED, max_examples=120, seed=0, out_dir=out_dir, memory_limit_mb=16)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineResult, Path]:
    out = tmp_path_factory.mktemp("reproducers")
    return run_planted(out), out


def test_a_planted_validator_crash_is_found_with_a_minimal_reproducer(planted: tuple[PipelineResult, Path]) -> None:
    result, _ = planted
    crashes = [f for f in result.findings if f.target == "planted.crash"]
    assert len(crashes) == 1, crashes
    crash = crashes[0]
    assert crash.kind == "crash"
    assert crash.message.startswith("IndexError: planted crash")
    # The smallest failing input: a list in a list holding the smallest number over 1000 (1001 or 1001.0).
    assert json.loads(crash.reproducer) == [[1001]]
    assert crash.reproducer in ("[[1001]]", "[[1001.0]]")
    with pytest.raises(IndexError):
        deep_big_number(json.loads(crash.reproducer))
    assert crash.reproducer_path is not None
    assert json.loads(Path(crash.reproducer_path).read_text()) == [[1001]]


def test_a_planted_memory_blow_up_is_found(planted: tuple[PipelineResult, Path]) -> None:
    result, _ = planted
    (memory,) = [f for f in result.findings if f.target == "planted.memory"]
    assert memory.kind == "memory"
    assert "64.0 MiB" in memory.message
    assert memory.reproducer == '{"":null,"0":null}'  # the smallest object with two keys


def test_a_byte_reproducer_is_written_raw(planted: tuple[PipelineResult, Path]) -> None:
    result, out = planted
    (crash,) = [f for f in result.findings if f.target == "planted.bytes"]
    assert crash.reproducer == repr(b"\x00" * 5)
    assert crash.reproducer_path == str(out / "planted.bytes-1.bin")
    assert Path(crash.reproducer_path).read_bytes() == b"\x00" * 5


def test_the_result_is_json_and_counts_the_calls(planted: tuple[PipelineResult, Path]) -> None:
    result, _ = planted
    data = json.loads(json.dumps(result.to_dict()))
    assert data["targets"] == list(PLANTED)
    assert len(data["findings"]) == 3
    assert 3 <= result.inputs_tried <= 3 * 120 + 3 * 1000  # generation plus shrinking, each input once
    assert result.skipped == ()


def test_two_runs_with_the_same_seed_find_the_same(planted: tuple[PipelineResult, Path]) -> None:
    first, _ = planted
    again = run_planted()
    assert [(f.kind, f.target, f.message, f.reproducer) for f in again.findings] == [
        (f.kind, f.target, f.message, f.reproducer) for f in first.findings
    ]
    assert again.inputs_tried == first.inputs_tried


def test_a_planted_hang_is_found_without_waiting_for_it() -> None:
    start = time.monotonic()
    result = fuzz_decoders(
        targets={"planted.hang": DecoderTarget(call=sleepy, strategy=json_values())},
        max_examples=60,
        seed=0,
        call_timeout_s=0.1,
    )
    (hang,) = result.findings
    assert hang.kind == "hang"
    assert hang.message == "no answer within 0.1 s"
    assert json.loads(hang.reproducer) == [[], []]
    assert time.monotonic() - start < 10  # each hanging call is abandoned after 0.1 s, not waited for


def test_the_time_limit_ends_the_run_and_names_what_was_cut() -> None:
    targets = {"slow": DecoderTarget(call=lambda _: time.sleep(0.02), strategy=st.integers())}
    result = fuzz_decoders(targets=targets, max_examples=1000, time_limit_s=0.3)
    assert result.skipped == ("slow",)
    assert 1 <= result.inputs_tried < 40
    assert result.seconds < 5


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_examples": 0}, "expected max_examples to be a positive int, got 0"),
        ({"seed": -1}, "expected seed to be a non-negative int, got -1"),
        ({"time_limit_s": 0}, "expected time_limit_s to be None or a positive number of seconds, got 0"),
        ({"targets": {}}, "expected at least one target to fuzz, got none"),
        ({"targets": {"x": len}}, "expected target 'x' to be a DecoderTarget, got builtin_function_or_method"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        fuzz_decoders(**options)


@pytest.mark.parametrize("name", list(DECODER_TARGETS))
def test_bastions_own_decoders_survive_a_small_budget(name: str) -> None:
    result = fuzz_decoders(targets={name: DECODER_TARGETS[name]}, max_examples=30, seed=0)
    assert result.inputs_tried >= 10
    assert result.findings == (), [f"{f.kind}: {f.message} <- {f.reproducer[:200]}" for f in result.findings]
