"""Freed memory handed back to the operating system between the phases of a run.

glibc's allocator keeps the pages of freed heap blocks for reuse; a phase that frees much (the
load's temporaries, the event log once written, a chunk of valuation arrays) leaves them resident,
and the next phase's peak stacks on them. `malloc_trim` gives them back. Elsewhere (another C
library, another system) this is a no-op."""

from __future__ import annotations

import gc
import sys

_TRIM: list = []  # [malloc_trim or None], looked up on first use


def _trim_function():
    """glibc's `malloc_trim`, or None where there is none to call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes  # (a Python built without its _ctypes extension has none)

        trim = ctypes.CDLL(None).malloc_trim  # the process's C library (musl has no malloc_trim)
    except (ImportError, OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def return_free_memory(collect: bool = False) -> None:
    """Give the C heap's free pages back to the system (glibc `malloc_trim(0)`); with `collect`, a
    full garbage collection first (it also empties the interpreter's free lists: a few ms once a
    run's objects are gone, 20-60 MB less before a summary)."""
    if collect:
        gc.collect()
    if not _TRIM:
        _TRIM.append(_trim_function())
    if _TRIM[0] is not None:
        _TRIM[0](0)
