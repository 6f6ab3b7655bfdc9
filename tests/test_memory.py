"""`xmargin._memory.return_free_memory` (glibc `malloc_trim` between the phases of a run) is a
no-op wherever it cannot run: another system, a C library without `malloc_trim` (musl), a Python
built without ctypes. It is called after every valuation chunk and every release: raising there
would fail a finished run."""

from __future__ import annotations

import sys

import pytest

from xmargin import _memory


@pytest.fixture
def fresh(monkeypatch):
    """The module with its lookup not yet done (and restored afterwards)."""
    monkeypatch.setattr(_memory, "_TRIM", [])
    return monkeypatch


def test_another_system_is_a_no_op(fresh):
    fresh.setattr(sys, "platform", "darwin")
    _memory.return_free_memory()
    assert _memory._TRIM == [None]


def test_a_c_library_without_malloc_trim_is_a_no_op(fresh):
    import ctypes

    class Musl:  # a C library that has no malloc_trim
        pass

    fresh.setattr(sys, "platform", "linux")
    fresh.setattr(ctypes, "CDLL", lambda name: Musl())
    _memory.return_free_memory()
    assert _memory._TRIM == [None]


def test_a_python_without_ctypes_is_a_no_op(fresh):
    fresh.setattr(sys, "platform", "linux")
    fresh.setitem(sys.modules, "ctypes", None)  # `import ctypes` raises ImportError (no _ctypes extension)
    _memory.return_free_memory()
    assert _memory._TRIM == [None]
