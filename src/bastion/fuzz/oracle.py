"""The pipeline fuzzer's oracle: run one call under a time and memory limit and say whether it failed, and how.

A call *fails* when it raises anything but an expected rejection ("crash"), runs longer than the
time limit ("hang"), or its traced allocations peak above the memory limit ("memory"). The call
runs in a daemon worker thread, so a call that never returns is abandoned, not waited for, and
cannot keep the process from exiting. Memory is measured with :mod:`tracemalloc`, which sees the
allocations of Python objects and of numpy arrays, not those a C library makes with its own
allocator (Pillow's image buffers, for instance).
"""

from __future__ import annotations

import threading
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Outcome", "guarded_call"]

_MESSAGE_CHARS = 200


@dataclass(frozen=True)
class Outcome:
    """What one call did: ``kind`` is None when it returned or raised an expected rejection."""

    kind: str | None  # None, "crash", "hang" or "memory"
    key: tuple[str, ...]  # what makes two failures the same one: kind, exception type, where it was raised
    message: str  # one line
    seconds: float
    peak_bytes: int


PASSED_KEY: tuple[str, ...] = ()


def guarded_call(
    call: Callable[[Any], object],
    value: Any,
    *,
    expected: tuple[type[BaseException], ...],
    timeout_s: float,
    memory_limit_bytes: int,
) -> Outcome:
    """Run ``call(value)`` in a daemon thread and judge it.

    Allocations are traced only while the call runs (tracing slows Python down, the generator
    included); if something else already traces them, its tracing is left on and only the peak reset.
    """
    box: dict[str, BaseException] = {}

    def work() -> None:
        try:
            call(value)
        except BaseException as error:  # judged below: anything unexpected is the finding
            box["error"] = error

    with _tracing() as peak_above_start:
        start = time.perf_counter()
        worker = threading.Thread(target=work, name="bastion-fuzz-call", daemon=True)
        worker.start()
        worker.join(timeout_s)
        seconds = time.perf_counter() - start
        peak = peak_above_start()
    if worker.is_alive():
        return Outcome("hang", ("hang",), f"no answer within {timeout_s:g} s", seconds, peak)
    error = box.get("error")
    if peak > memory_limit_bytes or isinstance(error, MemoryError):
        shown = f"{peak / 2**20:.1f} MiB" if peak else type(error).__name__
        limit = f"{memory_limit_bytes / 2**20:.1f} MiB"
        return Outcome("memory", ("memory",), f"allocated {shown} at peak; the limit is {limit}", seconds, peak)
    if error is None or isinstance(error, expected):
        return Outcome(None, PASSED_KEY, "", seconds, peak)
    return _crash(error, seconds, peak)


@contextmanager
def _tracing() -> Iterator[Callable[[], int]]:
    """Trace allocations; yields a function giving the peak in bytes above the level at the start."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield lambda: max(0, tracemalloc.get_traced_memory()[1] - base)
    finally:
        if started:
            tracemalloc.stop()


def _crash(error: BaseException, seconds: float, peak: int) -> Outcome:
    """A crash, keyed by the exception's type and the innermost frame it was raised in."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    shown_where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    text = " ".join(str(error).split())
    if len(text) > _MESSAGE_CHARS:
        text = text[: _MESSAGE_CHARS - 3] + "..."
    name = type(error).__name__
    message = f"{name}: {text} (raised at {shown_where})" if text else f"{name} (raised at {shown_where})"
    return Outcome(
        "crash", ("crash", f"{type(error).__module__}.{type(error).__qualname__}", where), message, seconds, peak
    )
