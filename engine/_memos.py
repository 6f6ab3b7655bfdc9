"""The process-wide memo caches of the valuation path, registered so that a finished run can drop
them all (`clear_memos`).

Each memo is a dict checked by identity (a hit is used only for the very objects it was made
from), so clearing one costs recomputation, never a different number. Runs in several threads of
one process (a Dask worker) share the memos, and a released run clears them at any moment: so a
memo is read in one lookup of one value (a tuple of everything the hit needs), never as several
keys read one after another (tests/test_memos.py empties them between any two steps). A run's memos keep its
last accounts, positions and units alive, and with them the allocator's pages around them: a
command-line run clears them once its log is written (`xmargin.sim.loop.RunResult.release`),
about 95 MB at the end of a four-year run.
"""

from __future__ import annotations

_MEMOS: list[dict] = []


def memo() -> dict:
    """A new memo dict, registered for `clear_memos`."""
    found: dict = {}
    _MEMOS.append(found)
    return found


def clear_memos() -> None:
    """Empty every registered memo (in place: modules keep their dicts)."""
    for found in _MEMOS:
        found.clear()
