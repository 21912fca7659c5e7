"""Give freed heap memory back to the operating system between batches (glibc only; elsewhere a no-op).

Attacks that drop examples as they fall allocate tensors of a different size at every step, and
glibc keeps the freed blocks, so the resident size would grow with the number of batches rather
than with the batch size. ``malloc_trim`` returns those pages; it costs well under a millisecond
per batch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

__all__ = ["map_large_buffers", "trim"]

_M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h
# Buffers from this size up (a batch's activations) get pages of their own, returned when freed.
LARGE_BUFFER = 8 << 20


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def map_large_buffers(threshold: int = LARGE_BUFFER) -> None:
    """Fix glibc's mmap threshold, so large tensors never settle in the heap (peak memory stays per batch).

    glibc raises its threshold each time a large mmapped block is freed, after which freed batch
    buffers stay in the heap; a fixed threshold keeps them mapped and returned. For processes
    that run many batches, such as the CLI; a no-op outside glibc.
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_THRESHOLD, threshold)


def trim() -> None:
    """Return free heap pages to the operating system, where the C library allows it."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
