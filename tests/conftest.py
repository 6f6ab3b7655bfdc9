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
