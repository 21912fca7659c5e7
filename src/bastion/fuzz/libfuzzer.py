"""Coverage-guided fuzzing of one decoder with libFuzzer through atheris (optional; ``pip install atheris``).

libFuzzer (LLVM) mutates raw bytes and keeps the inputs that reach new code; atheris (Google)
feeds it the coverage of Python code, instrumented when the child process starts. libFuzzer ends
its process on the first failure, so it runs in a child process (only Bastion's modules and the
target's are instrumented, as they are imported); the parent reads the artifact it wrote, shrinks
it by delta debugging (Zeller and Hildebrandt, "Simplifying and isolating failure-inducing input",
TSE 2002) under the same oracle as :func:`~bastion.fuzz.pipeline.fuzz_decoders`, and reports it as
a :class:`~bastion.fuzz.pipeline.PipelineFinding`.

A target is a name in :data:`bastion.fuzz.decoders.DECODER_TARGETS` or ``module:attribute``
naming a :class:`~bastion.fuzz.pipeline.DecoderTarget` that both processes can import.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bastion.errors import ConfigError
from bastion.fuzz.oracle import Outcome, guarded_call
from bastion.fuzz.pipeline import DecoderTarget, PipelineFinding, PipelineResult, safe_name

__all__ = ["atheris_available", "fuzz_with_atheris", "resolve_target", "run_child", "shrink_bytes"]

_ARTIFACT_KINDS = {"crash": "crash", "timeout": "hang", "oom": "memory"}
_SHRINK_CALLS = 2000  # delta debugging's budget of oracle calls
_GRACE_S = 60.0  # beyond time_limit_s, for libFuzzer to start and write its artifact
# The child: instrument Bastion's modules (and the target's) as they are imported, then run libFuzzer.
# Instrumenting everything loaded (torch included) would take minutes; only the code under test needs it.
_CHILD = """\
import sys, atheris
with atheris.instrument_imports(include=sys.argv[1].split(",")):
    from bastion.fuzz.libfuzzer import run_child, resolve_target
    decoder = resolve_target(sys.argv[2])
run_child(decoder, [sys.argv[0], *sys.argv[3:]])
"""


def atheris_available() -> bool:
    """Whether atheris (libFuzzer for Python) is installed."""
    return importlib.util.find_spec("atheris") is not None


def resolve_target(spec: str) -> DecoderTarget:
    """A registry name, or ``module:attribute`` naming a DecoderTarget."""
    if ":" not in spec:
        from bastion.fuzz.decoders import DECODER_TARGETS

        if spec not in DECODER_TARGETS:
            raise ConfigError(f"unknown decoder target {spec!r}; expected one of {sorted(DECODER_TARGETS)}")
        return DECODER_TARGETS[spec]
    module, _, attribute = spec.partition(":")
    target = getattr(importlib.import_module(module), attribute, None)
    if not isinstance(target, DecoderTarget):
        raise ConfigError(f"expected {spec!r} to name a DecoderTarget, got {type(target).__name__}")
    return target


def fuzz_with_atheris(
    target: str,
    *,
    out_dir: Path,
    runs: int = 100_000,
    seed: int = 0,
    time_limit_s: float | None = None,
    call_timeout_s: float = 2.0,
    memory_limit_mb: int = 2048,
    env: Mapping[str, str] | None = None,
) -> PipelineResult:
    """Run libFuzzer on ``target`` for ``runs`` inputs (or ``time_limit_s``); its first failure, shrunk, is the finding.

    ``memory_limit_mb`` is libFuzzer's limit on the child's resident memory; ``env`` is added to
    the child's environment (a ``PYTHONPATH`` for a ``module:attribute`` target, say).
    """
    if not atheris_available():
        raise ConfigError("atheris is not installed; install it (pip install atheris) or use fuzz_decoders")
    decoder = resolve_target(target)
    _check_options(runs, seed, time_limit_s, call_timeout_s, memory_limit_mb)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    log = _run_child(target, out_dir, runs, seed, time_limit_s, call_timeout_s, memory_limit_mb, env)
    executed = sum(int(n) for n in re.findall(r"stat::number_of_executed_units:\s+(\d+)", log))
    findings, shrink_calls = [], 0
    for number, artifact in enumerate(re.findall(r"Test unit written to (\S+)", log), start=1):
        kind = _ARTIFACT_KINDS.get(Path(artifact).name.removeprefix(f"{safe_name(target)}-").split("-")[0])
        if kind is None:  # a slow unit or a leak: not a failure
            continue
        finding, calls = _finding(target, decoder, kind, Path(artifact), log, out_dir, number, call_timeout_s)
        findings.append(finding)
        shrink_calls += calls
    return PipelineResult((target,), executed + shrink_calls, tuple(findings), time.monotonic() - start)


def _check_options(runs: object, seed: object, time_limit_s: object, timeout: object, memory: object) -> None:
    for name, value in (("runs", runs), ("memory_limit_mb", memory)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"expected {name} to be a positive int, got {value!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"expected seed to be a non-negative int, got {seed!r}")
    for name, value in (("time_limit_s", time_limit_s), ("call_timeout_s", timeout)):
        if value is None and name == "time_limit_s":
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
            raise ConfigError(f"expected {name} to be a positive number of seconds, got {value!r}")


def _run_child(
    target: str,
    out_dir: Path,
    runs: int,
    seed: int,
    time_limit_s: float | None,
    call_timeout_s: float,
    memory_limit_mb: int,
    env: Mapping[str, str] | None,
) -> str:
    """Run libFuzzer in a child process; its log (stderr and stdout)."""
    flags = [
        f"-runs={runs}",
        f"-seed={seed + 1}",  # libFuzzer reads seed 0 as "from the clock"
        f"-timeout={max(1, math.ceil(call_timeout_s))}",
        f"-rss_limit_mb={memory_limit_mb}",
        f"-artifact_prefix={out_dir / safe_name(target)}-",
        "-print_final_stats=1",
    ]
    if time_limit_s is not None:
        flags.append(f"-max_total_time={max(1, math.ceil(time_limit_s))}")
    modules = ",".join(
        dict.fromkeys(["bastion", target.partition(":")[0].split(".")[0]] if ":" in target else ["bastion"])
    )
    command = [sys.executable, "-c", _CHILD, modules, target, *flags]
    wait = None if time_limit_s is None else time_limit_s + _GRACE_S
    try:  # our own interpreter and child code; the target is a name, the flags are numbers checked above
        done = subprocess.run(  # noqa: S603
            command, env={**os.environ, **(env or {})}, capture_output=True, text=True, errors="replace", timeout=wait
        )
    except subprocess.TimeoutExpired as expired:
        return _text(expired.stderr) + _text(expired.stdout)
    return done.stderr + done.stdout


def _text(output: bytes | str | None) -> str:
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    return output or ""


def _finding(
    name: str,
    decoder: DecoderTarget,
    kind: str,
    artifact: Path,
    log: str,
    out_dir: Path,
    number: int,
    call_timeout_s: float,
) -> tuple[PipelineFinding, int]:
    """The artifact as a finding: shrunk when the parent can reproduce the failure (crashes and hangs)."""
    data = artifact.read_bytes()
    convert = decoder.from_bytes or (lambda raw: raw)
    calls = [0]

    def judge(candidate: bytes) -> Outcome:
        calls[0] += 1
        return guarded_call(
            decoder.call,
            convert(candidate),
            expected=decoder.expected,
            timeout_s=call_timeout_s,
            memory_limit_bytes=2**62,  # libFuzzer judges memory by resident size; the parent does not redo it
        )

    message = _exception_line(log) or f"libFuzzer wrote a {kind} artifact"
    if kind == "crash":
        first = judge(data)
        if first.kind == "crash":
            message = first.message
            data = shrink_bytes(data, lambda candidate: judge(candidate).key == first.key, budget=_SHRINK_CALLS)
    path = out_dir / f"{safe_name(name)}-{number}.bin"
    path.write_bytes(data)
    return PipelineFinding(kind, name, message, repr(data), str(path)), calls[0]


def _exception_line(log: str) -> str | None:
    """The exception line atheris prints after ``=== Uncaught Python exception: ===``."""
    found = re.search(r"=== Uncaught Python exception: ===\s*\n(.+)", log)
    return found.group(1).strip() if found else None


def shrink_bytes(data: bytes, fails: Callable[[bytes], bool], *, budget: int) -> bytes:
    """The smallest input ddmin finds that still ``fails``: chunks removed, then each byte lowered towards zero."""
    calls = 0

    def still(candidate: bytes) -> bool:
        nonlocal calls
        calls += 1
        return fails(candidate)

    chunk = max(1, len(data) // 2)
    while chunk >= 1 and calls < budget:
        at, removed = 0, False
        while at < len(data) and calls < budget:
            candidate = data[:at] + data[at + chunk :]
            if still(candidate):
                data, removed = candidate, True
            else:
                at += chunk
        if not removed:
            chunk //= 2
    for at in range(len(data)):
        for lower in _lower_bytes(data[at]):
            if calls >= budget:
                return data
            candidate = data[:at] + bytes([lower]) + data[at + 1 :]
            if still(candidate):
                data = candidate
                break
    return data


def _lower_bytes(value: int) -> list[int]:
    """Smaller byte values to try, smallest first: 0, then ASCII digits and letters' starts, then halves."""
    return sorted({v for v in (0, 0x20, 0x30, 0x41, 0x61, value // 2, value - 1) if 0 <= v < value})


def run_child(decoder: DecoderTarget, argv: list[str]) -> None:
    """In the child process: hand ``decoder`` to libFuzzer with its flags ``argv[1:]`` (never returns)."""
    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

    convert: Callable[[bytes], Any] = decoder.from_bytes or (lambda raw: raw)

    def one_input(data: bytes) -> None:
        with contextlib.suppress(*decoder.expected):  # a rejection; anything else ends the run as a crash
            decoder.call(convert(data))

    atheris.Setup(argv, one_input)
    atheris.Fuzz()
