"""Property-based fuzzing of Bastion's own decoders and validators: any crash, hang or memory blow-up is a finding.

Issue 7, part 3. Each target is a callable that takes one input (bytes, text or a JSON value), a
hypothesis strategy that mixes structure-aware inputs with raw ones, and the exception types that
count as a *rejection* (the decoder refusing bad input on purpose). The oracle
(:mod:`bastion.fuzz.oracle`) calls the target under a time and a memory limit; anything else it
raises is a crash (MacIver et al., "Hypothesis: A new approach to property-based testing", JOSS 2019).

A target is fuzzed in two stages, both driven by :func:`hypothesis.find` under the same seed:

1. *explore*: ``max_examples`` inputs are generated; every distinct failure (kind, exception type,
   the line it was raised on) is recorded, none stops the search;
2. *shrink*: for each distinct failure the search is replayed (from a cache, so no input runs
   twice) until that failure, which hypothesis then shrinks while it stays the same failure.

The shrunk input of each failure is its reproducer (hypothesis' notion of smallest: shortest
choice sequence first), written to ``out_dir``. Generation is seeded, so a run is deterministic
under ``seed`` (timing aside: a "hang" depends on the clock by nature). Coverage-guided fuzzing
of one target with libFuzzer is in :mod:`bastion.fuzz.libfuzzer` (optional: atheris).

Example::

    result = fuzz_decoders(max_examples=200, seed=0, out_dir=Path("fuzz-out"))
    for finding in result.findings:
        print(finding.kind, finding.target, finding.reproducer)
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from bastion.errors import BastionError, ConfigError
from bastion.fuzz.oracle import Outcome, guarded_call

if TYPE_CHECKING:  # hypothesis is imported when a run starts, so that importing bastion.fuzz does not need it
    from hypothesis import Phase, settings
    from hypothesis.strategies import SearchStrategy

__all__ = ["FINDING_KINDS", "DecoderTarget", "PipelineFinding", "PipelineResult", "fuzz_decoders", "safe_name"]

logger = logging.getLogger(__name__)

FINDING_KINDS = ("crash", "server-error", "hang", "memory", "schema")
_HANG_LIMIT = 3  # hangs after which a target's exploring ends (shrinking each distinct failure still runs)
_SHOWN_CHARS = 2000  # a reproducer longer than this is cut in the finding; its file holds all of it


@dataclass(frozen=True, kw_only=True)
class DecoderTarget:
    """One decoder or validator to fuzz: the call, what to feed it, and what counts as a rejection."""

    call: Callable[[Any], object]  # takes one generated input; its return value is ignored
    strategy: SearchStrategy[Any]  # bytes, str or JSON values: valid-ish and hostile
    expected: tuple[type[BaseException], ...] = (BastionError,)  # deliberate rejections, not findings
    description: str = ""
    # How raw bytes become this target's input under libFuzzer (bastion.fuzz.libfuzzer); None: the bytes themselves.
    from_bytes: Callable[[bytes], Any] | None = None


@dataclass(frozen=True)
class PipelineFinding:
    """One distinct failure with its minimal reproducer."""

    kind: str  # "crash", "server-error", "hang", "memory" or "schema"
    target: str  # e.g. "decode.parse_json_body" or "POST /v1/predict"
    message: str  # one line: exception type + message, or status + body excerpt
    reproducer: str  # minimal failing input, human-readable (repr of bytes, or a curl command / JSON request)
    reproducer_path: str | None  # file under out_dir with the raw minimal input or the request JSON

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "target": self.target,
            "message": self.message,
            "reproducer": self.reproducer,
            "reproducer_path": self.reproducer_path,
        }


@dataclass(frozen=True)
class PipelineResult:
    """What a pipeline fuzzing run tried and found."""

    targets: tuple[str, ...]
    inputs_tried: int  # calls made to the targets (or requests sent), each input counted once
    findings: tuple[PipelineFinding, ...]
    seconds: float
    skipped: tuple[str, ...] = ()  # targets not fuzzed, or not to the end, because time_limit_s ran out

    def to_dict(self) -> dict[str, object]:
        """A JSON-able dict."""
        return {
            "targets": list(self.targets),
            "inputs_tried": self.inputs_tried,
            "findings": [finding.to_dict() for finding in self.findings],
            "seconds": self.seconds,
            "skipped": list(self.skipped),
        }


def fuzz_decoders(
    *,
    max_examples: int = 500,
    seed: int = 0,
    time_limit_s: float | None = None,
    out_dir: Path | None = None,
    targets: Mapping[str, DecoderTarget] | None = None,
    call_timeout_s: float = 2.0,
    memory_limit_mb: float = 256.0,
) -> PipelineResult:
    """Fuzz each target with ``max_examples`` generated inputs (plus shrinking); see the module docstring.

    ``targets`` defaults to :data:`bastion.fuzz.decoders.DECODER_TARGETS`, Bastion's own decoders.
    A call longer than ``call_timeout_s`` is a hang; one whose traced allocations peak above
    ``memory_limit_mb`` is a memory blow-up. ``time_limit_s`` bounds the whole run.
    """
    _check_options(max_examples, seed, time_limit_s, call_timeout_s, memory_limit_mb)
    if targets is None:
        from bastion.fuzz.decoders import DECODER_TARGETS

        targets = DECODER_TARGETS
    _check_targets(targets)
    start = time.monotonic()
    deadline = None if time_limit_s is None else start + time_limit_s
    limits = _Limits(call_timeout_s, int(memory_limit_mb * 2**20), deadline)
    tried, findings, skipped = 0, [], []
    with warnings.catch_warnings():
        # Warnings are not findings, and the caller's filters (-W error) must not turn them into crashes.
        warnings.simplefilter("ignore")
        for name, target in targets.items():
            runner = _Runner(target, limits)
            complete = _explore_and_shrink(runner, max_examples, seed)
            tried += runner.calls
            findings.extend(_findings(name, runner, out_dir))
            if not complete:
                skipped.append(name)
    for finding in findings:
        logger.info("%s in %s: %s", finding.kind, finding.target, finding.message)
    return PipelineResult(tuple(targets), tried, tuple(findings), time.monotonic() - start, tuple(skipped))


def _check_options(
    max_examples: object, seed: object, time_limit_s: object, call_timeout_s: object, memory_limit_mb: object
) -> None:
    if not _is_int(max_examples) or max_examples < 1:
        raise ConfigError(f"expected max_examples to be a positive int, got {max_examples!r}")
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"expected seed to be a non-negative int, got {seed!r}")
    if time_limit_s is not None and not _is_positive(time_limit_s):
        raise ConfigError(f"expected time_limit_s to be None or a positive number of seconds, got {time_limit_s!r}")
    if not _is_positive(call_timeout_s):
        raise ConfigError(f"expected call_timeout_s to be a positive number of seconds, got {call_timeout_s!r}")
    if not _is_positive(memory_limit_mb):
        raise ConfigError(f"expected memory_limit_mb to be a positive number, got {memory_limit_mb!r}")


def _check_targets(targets: Mapping[str, DecoderTarget]) -> None:
    if not targets:
        raise ConfigError("expected at least one target to fuzz, got none")
    for name, target in targets.items():
        if not isinstance(target, DecoderTarget):
            raise ConfigError(f"expected target {name!r} to be a DecoderTarget, got {type(target).__name__}")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and value != float("inf")


# ---------------------------------------------------------------------------------------------
# One target: explore, then shrink each distinct failure
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Limits:
    call_timeout_s: float
    memory_limit_bytes: int
    deadline: float | None  # time.monotonic() after which no further call starts


class _OutOfTime(BaseException):
    """Raised through hypothesis (which lets BaseException pass) to end a search when time_limit_s runs out."""


class _EnoughHangs(BaseException):
    """Ends exploring a target that keeps hanging: each hang costs a whole call_timeout_s."""


class _Runner:
    """Runs a target's inputs through the oracle once each; keeps the smallest failing input per failure."""

    def __init__(self, target: DecoderTarget, limits: _Limits) -> None:
        self.target = target
        self.limits = limits
        self.calls = 0
        self.hangs = 0
        self._cache: dict[tuple[str, str], Outcome] = {}
        self.failures: dict[tuple[str, ...], tuple[Outcome, Any, str]] = {}  # in the order first met

    def outcome(self, value: Any) -> Outcome:
        fingerprint = (type(value).__name__, _render(value))
        cached = self._cache.get(fingerprint)
        if cached is not None:
            return cached
        if self.limits.deadline is not None and time.monotonic() > self.limits.deadline:
            raise _OutOfTime
        self.calls += 1
        result = guarded_call(
            self.target.call,
            value,
            expected=self.target.expected,
            timeout_s=self.limits.call_timeout_s,
            memory_limit_bytes=self.limits.memory_limit_bytes,
        )
        self._cache[fingerprint] = result
        self.hangs += result.kind == "hang"
        if result.kind is not None:
            self._keep(result, value, fingerprint[1])
        return result

    def _keep(self, result: Outcome, value: Any, rendered: str) -> None:
        if result.key not in self.failures:  # the first input met; shrinking replaces it with the minimal one
            self.failures[result.key] = (result, value, rendered)

    def minimal(self, key: tuple[str, ...], value: Any) -> None:
        """Record ``value``, which hypothesis shrank while it kept failing as ``key``, as that failure's reproducer."""
        self.failures[key] = (self.outcome(value), value, _render(value))


def _explore_and_shrink(runner: _Runner, max_examples: int, seed: int) -> bool:
    """Run both stages; False when the time limit cut them short."""
    from hypothesis import Phase, find
    from hypothesis.errors import NoSuchExample

    def record(value: Any) -> bool:
        runner.outcome(value)
        if runner.hangs >= _HANG_LIMIT:
            raise _EnoughHangs
        return False  # never "found": exploring goes on through every failure

    explore = _settings(max_examples, (Phase.generate,))
    try:
        find(runner.target.strategy, record, settings=explore, random=random.Random(seed))
    except (NoSuchExample, _EnoughHangs):
        pass
    except _OutOfTime:
        return False
    shrink = _settings(max_examples, (Phase.generate, Phase.shrink))
    for key in list(runner.failures):
        try:
            found = find(runner.target.strategy, _is_failure(runner, key), settings=shrink, random=random.Random(seed))
        except NoSuchExample:  # not met again (a flaky hang, say): the input seen while exploring stays
            logger.debug("failure %s not reproduced while shrinking", key)
        except _OutOfTime:
            return False
        else:
            runner.minimal(key, found)
    return True


def _is_failure(runner: _Runner, key: tuple[str, ...]) -> Callable[[Any], bool]:
    return lambda value: runner.outcome(value).key == key


def _settings(max_examples: int, phases: tuple[Phase, ...]) -> settings:
    from hypothesis import HealthCheck, Verbosity, settings

    return settings(
        max_examples=max_examples,
        database=None,
        derandomize=False,  # seeded by find(random=...) instead, so that `seed` matters
        deadline=None,  # the oracle times each call itself
        phases=phases,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )


# ---------------------------------------------------------------------------------------------
# Findings and reproducers
# ---------------------------------------------------------------------------------------------


def _findings(name: str, runner: _Runner, out_dir: Path | None) -> list[PipelineFinding]:
    found = []
    for number, (outcome, value, rendered) in enumerate(runner.failures.values(), start=1):
        path = None if out_dir is None else _write_reproducer(out_dir, name, number, value)
        shown = rendered if len(rendered) <= _SHOWN_CHARS else f"{rendered[:_SHOWN_CHARS]}... ({len(rendered)} chars)"
        kind = outcome.kind or "crash"
        found.append(PipelineFinding(kind, name, outcome.message, shown, path))
    return found


def _render(value: Any) -> str:
    """An input as text a person can read and paste: repr for bytes and text, JSON for JSON values."""
    if isinstance(value, (bytes, str)):
        return repr(value)
    try:
        return json.dumps(value, allow_nan=True, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return repr(value)


def _write_reproducer(out_dir: Path, target: str, number: int, value: Any) -> str:
    """The raw input in ``<target>-<n>.bin`` (bytes, text as UTF-8) or ``<target>-<n>.json`` (JSON values)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{safe_name(target)}-{number}"
    if isinstance(value, (bytes, str)):
        path = out_dir / f"{stem}.bin"
        path.write_bytes(value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass"))
    else:
        path = out_dir / f"{stem}.json"
        path.write_text(_render(value), encoding="utf-8")
    return str(path)


def safe_name(name: str) -> str:
    """A target name as a file name: letters, digits, dots, dashes and underscores only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "target"
