"""The heap helpers find glibc on Linux and can be called any number of times."""

from __future__ import annotations

import sys

import pytest

from bastion.engine import memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_functions_are_found() -> None:
    libc = memory._libc()
    assert libc is not None and hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt")
    memory.map_large_buffers()
    memory.trim()
    memory.trim()
