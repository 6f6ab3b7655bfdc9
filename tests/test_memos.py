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


class _ReleasedAfterEachLookup(dict):
    """A memo emptied right after every lookup, as by another thread's `clear_memos()` landing
    between a lookup and the use of its hit."""

    def get(self, key, default=None):
        found = super().get(key, default)
        self.clear()
        return found


def test_every_registered_memo_is_one_of_the_sites_checked_here():
    assert sorted(id(getattr(module, name)) for module, name in SITES) == sorted(id(found) for found in _memos._MEMOS)


def _outputs(config):
    result = run_backtest(config)
    tables = project(result.snapshots, result.catalog, result.feed)
    return result.events, [*tables, run_distances(result)]


@pytest.mark.parametrize("example, options", [
    ("portfolio_basis", {"start": "2024-12-01"}),  # (a quarterly expires on 2024-12-27)
    ("portfolio_basis", {"start": "2024-12-01", "sets": ["exchanges.binance.portfolio_margin=deribit-grid"]}),
    ("core_hedge_isolated", {}),
])
def test_memos_emptied_between_lookup_and_use_change_no_number(example, options, monkeypatch):
    config = load_config(ROOT / "examples" / f"{example}.toml", **options)
    events, tables = _outputs(config)
    for module, name in SITES:
        monkeypatch.setattr(module, name, _ReleasedAfterEachLookup())
    released_events, released_tables = _outputs(config)
    assert len(events) > 10 and released_events == events
    assert example != "portfolio_basis" or any(type(e).__name__ == "ContractExpired" for e in events)
    for table, released in zip(tables, released_tables, strict=True):
        assert table.height and released.equals(table, null_equal=True)


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
