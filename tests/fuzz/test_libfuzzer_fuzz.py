"""The optional libFuzzer mode (atheris): a planted crash found and shrunk by delta debugging, or a clear error."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from bastion.errors import ConfigError
from bastion.fuzz import libfuzzer
from bastion.fuzz.libfuzzer import fuzz_with_atheris, shrink_bytes

PLANTED = """
from hypothesis import strategies as st

from bastion.fuzz import DecoderTarget


def magic(data: bytes) -> None:
    if len(data) >= 4 and data[:2] == b"BA":
        raise IndexError("planted crash")


TARGET = DecoderTarget(call=magic, strategy=st.binary())
"""


def test_delta_debugging_keeps_the_failure_and_drops_the_rest() -> None:
    data = b"xxBAyyyyzz\xff"
    shrunk = shrink_bytes(data, lambda candidate: b"BA" in candidate and len(candidate) >= 4, budget=500)
    assert shrunk == b"\x00\x00BA"  # four bytes, the two free ones lowered to zero


def test_without_atheris_the_mode_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(libfuzzer, "atheris_available", lambda: False)
    with pytest.raises(ConfigError, match="atheris is not installed"):
        fuzz_with_atheris("decode.parse_json_body", out_dir=tmp_path)


def test_an_unknown_target_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown decoder target 'nope'; expected one of"):
        libfuzzer.resolve_target("nope")


@pytest.mark.usefixtures("need_atheris")
def test_libfuzzer_finds_a_planted_crash_and_shrinks_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "planted_lf.py").write_text(textwrap.dedent(PLANTED))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    result = fuzz_with_atheris(
        "planted_lf:TARGET", out_dir=tmp_path / "out", runs=500_000, seed=0, time_limit_s=30, env={"PYTHONPATH": path}
    )
    (crash,) = result.findings
    assert crash.kind == "crash"
    assert crash.message.startswith("IndexError: planted crash")
    assert crash.reproducer == repr(b"BA\x00\x00")
    assert crash.reproducer_path is not None
    assert Path(crash.reproducer_path).read_bytes() == b"BA\x00\x00"
    assert result.inputs_tried > 1


@pytest.mark.usefixtures("need_atheris")
def test_libfuzzer_on_a_real_decoder_finds_nothing_in_a_short_run(tmp_path: Path) -> None:
    result = fuzz_with_atheris("decode.parse_json_body", out_dir=tmp_path, runs=3000, seed=0, time_limit_s=20)
    assert result.findings == ()
    assert result.inputs_tried >= 3000
