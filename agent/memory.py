"""Handing freed heap back to the system on the terminal's little computer.

The number of glibc malloc arenas is not set here: every thread that allocates would get
its own (up to 8 per core), each keeping freed pages resident, and the agent's few quiet
threads need only one. `MALLOC_ARENA_MAX=1` in the environment says so before the
interpreter starts (the systemd unit deploy/systemd/loyalty-agent@.service sets it), which
code run after start-up cannot do as well. `trim` is a no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: libc is already loaded
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


def trim() -> bool:
    """Hand freed heap pages back to the system (after start-up's one-off allocations)."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))
