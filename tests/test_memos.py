"""The valuation path's registered memos (`xmargin._memos`) change no number even when they are
emptied at any moment: between a lookup and the use of what it found, which is where another run
in the same process (a Dask worker runs variants in threads) lands its `clear_memos()` when it is
released, or its own entry when it values its own state."""

from __future__ import annotations

from pathlib import Path

import pytest

from xmargin import _memos
from xmargin.analysis import distance
from xmargin.analysis.distance import run_distances
from xmargin.config import load_config
from xmargin.margin import accounting, incremental, kernel, modes, portfolio, units
from xmargin.output.snapshots import project
from xmargin.sim.loop import run_backtest

ROOT = Path(__file__).resolve().parents[1]

SITES = [(accounting, "_VALUED"), (units, "_ORDER_MARGIN"), (units, "_ORDER_PART"), (units, "_ROW_MEMO"),
         (incremental, "_LAST"), (portfolio, "_LAST_BATCH"), (modes, "_UNITS"), (kernel, "_BATCHES"),
         (distance, "_MOVING")]


class _Released(dict):
    """A memo emptied right after every lookup (and, `stores`, every store), as by another thread's
    `clear_memos()` landing between a lookup (or a store) and the use of what it found (or stored)."""

    def __init__(self, stores: bool):
        super().__init__()
        self.stores = stores

    def get(self, key, default=None):
        found = super().get(key, default)
        self.clear()
        return found

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        if self.stores:
            self.clear()

    def update(self, *args, **kwargs):
        super().update(*args, **kwargs)
        if self.stores:
            self.clear()


def test_every_registered_memo_is_one_of_the_sites_checked_here():
    assert sorted(id(getattr(module, name)) for module, name in SITES) == sorted(id(found) for found in _memos._MEMOS)


PORTFOLIO = ("portfolio_basis", (("start", "2024-12-15"), ("end", "2025-01-05")))  # a quarterly expires on 12-27
GRID = ("portfolio_basis", PORTFOLIO[1] + (("sets", ("exchanges.binance.portfolio_margin=deribit-grid",)),))
_PLAIN: dict = {}


def _outputs(example, options):
    config = load_config(ROOT / "examples" / f"{example}.toml",
                         **{k: list(v) if isinstance(v, tuple) else v for k, v in options})
    result = run_backtest(config)
    tables = project(result.snapshots, result.catalog, result.feed)
    return result.events, [*tables, run_distances(result)]


@pytest.mark.parametrize("example, options, released, stores", [
    (*PORTFOLIO, "every memo", False), (*GRID, "every memo", True), ("core_hedge_isolated", (), "every memo", True),
    # each multi-entry memo alone (emptying the others would make every lookup of this one a miss)
    (*PORTFOLIO, "_BATCHES", False), (*PORTFOLIO, "_LAST_BATCH", True), (*PORTFOLIO, "_MOVING", False),
])
def test_memos_emptied_between_lookup_and_use_change_no_number(example, options, released, stores, monkeypatch):
    if (example, options) not in _PLAIN:
        _PLAIN[example, options] = _outputs(example, options)
    events, tables = _PLAIN[example, options]
    for module, name in SITES:
        if released in ("every memo", name):
            monkeypatch.setattr(module, name, _Released(stores))
    released_events, released_tables = _outputs(example, options)
    assert len(events) > 10 and released_events == events
    assert example != "portfolio_basis" or any(type(e).__name__ == "ContractExpired" for e in events)
    for table, again in zip(tables, released_tables, strict=True):
        assert table.height and again.equals(table, null_equal=True)


class _ClearedAfterEachStore(dict):
    """A cache emptied right after every store, as by another thread fingerprinting another dataset."""

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.clear()


def test_a_dataset_fingerprint_survives_another_thread_replacing_the_cache(monkeypatch):
    from xmargin.dataset import feed

    folder = ROOT / "datasets" / "coinm-sample"
    expected = feed.fingerprint(folder)
    monkeypatch.setattr(feed, "_FINGERPRINTS", _ClearedAfterEachStore())
    assert len(expected) == 64 and feed.fingerprint(folder) == expected


def test_return_free_memory_is_safe_to_call_at_any_time():
    """`xmargin._memory.return_free_memory` (glibc malloc_trim between the phases of a run) can be
    called repeatedly, and on glibc it finds malloc_trim (so it does run where it matters); that runs
    give the same bytes with it is held by the kept-vs-released folder tests in test_run.py."""
    import sys

    from xmargin._memory import _TRIM, return_free_memory

    for _ in range(3):
        return_free_memory()
    if sys.platform.startswith("linux") and sys.implementation.name == "cpython":
        import platform

        if platform.libc_ver()[0] == "glibc":
            assert _TRIM and _TRIM[0] is not None  # found, so it does run where it matters
