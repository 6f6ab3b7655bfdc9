"""Shared test set-up. Tests import the installed package `xmargin` (never the folder `engine/` by its
own name) and this folder's helpers (`helpers_feed`) by plain name: `pyproject.toml` puts `tests/` on
the path, so plain `pytest` from the repo root collects everything."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def paging_folder(tmp_path) -> Path:
    """A test folder where a feed can be paged (xmargin.dataset.paging: Linux, on disk, not tmpfs)."""
    import xmargin.dataset.paging as paging

    if not paging.available():
        pytest.skip("paging needs Linux madvise(MADV_DONTNEED)")
    if paging.filesystem(tmp_path) in paging.RAM_FILESYSTEMS:
        pytest.skip(f"{tmp_path} is on {paging.filesystem(tmp_path)}: paging is off there by design")
    return tmp_path
