"""Loading reads each instrument's own bar files (xmargin.dataset.batches.series_index), and gives
exactly the feed of a scan over every file: with single-instrument files, a file holding two
instruments and a time window; a file that is not Parquet is reported."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from xmargin.dataset import feed
from xmargin.dataset.feed import load_feed
from xmargin.dataset.tables import table_files

SAMPLE = Path(__file__).resolve().parents[1] / "datasets" / "sample"
KEYS = ["binance:BTC/USDT:USDT", "binance:ETH/USDT:USDT", "binance:SOL/USDT:USDT", "binance:BTC/USDT",
        "hyperliquid:BTC/USDC:USDC", "hyperliquid:ETH/USDC:USDC"]
ARRAYS = ("ts", "open", "high", "low", "close", "has_bar", "mark_open", "mark_high", "mark_low", "mark_close",
          "funding_row", "funding_column", "funding_rate", "funding_ts")


@pytest.fixture
def dataset(tmp_path) -> Path:
    """The sample dataset with Binance's ETH and SOL perp bars merged into one file (sorted by time,
    so that it holds two instruments in its row groups)."""
    out = tmp_path / "sample"
    shutil.copytree(SAMPLE, out)
    perp = out / "bars" / "binance" / "perp"
    eth, sol = perp / "ETH_USDT_USDT-1h.parquet", perp / "SOL_USDT_USDT-1h.parquet"
    pl.concat([pl.read_parquet(eth), pl.read_parquet(sol)]).sort("ts").write_parquet(perp / "ETH_SOL-1h.parquet")
    eth.unlink()
    sol.unlink()
    return out


def _same(a, b) -> bool:
    return (all(np.array_equal(getattr(a, k), getattr(b, k), equal_nan=getattr(a, k).dtype.kind == "f")
                for k in ARRAYS) and (a.keys, a.bar_ns, a.mark_source, a.warnings) == (b.keys, b.bar_ns,
                                                                                    b.mark_source, b.warnings))


def test_each_instrument_is_mapped_to_the_files_that_hold_it(dataset):
    files = table_files(dataset, "bars")
    found = feed._files_by_instrument(files)
    assert [p.name for p in found["binance:ETH/USDT:USDT"]] == ["ETH_SOL-1h.parquet"]
    assert [p.name for p in found["binance:SOL/USDT:USDT"]] == ["ETH_SOL-1h.parquet"]
    assert [p.name for p in found["binance:BTC/USDT:USDT"]] == ["BTC_USDT_USDT-1h.parquet"]
    assert [p.name for p in found["hyperliquid:ETH/USDC:USDC"]] == ["ETH_USDC_USDC-1h.parquet"]
    assert len(found) == 9 and {p for v in found.values() for p in v} == set(files)


@pytest.mark.parametrize("window", [(None, None), (datetime(2025, 1, 3), datetime(2025, 1, 5, 7))])
def test_loading_own_files_gives_the_feed_of_a_scan_over_every_file(dataset, monkeypatch, window):
    start, end = window
    fast = load_feed(dataset, KEYS, start, end)
    with monkeypatch.context() as patched:  # plain: every instrument's scan reads every file, filtered
        patched.setattr(feed, "_files_by_instrument", lambda files, index=None: {})
        plain = load_feed(dataset, KEYS, start, end)
        # and no index of the files' series: each instrument is read alone, its timeframes too
        patched.setattr(feed, "_series_rows", lambda index: {})
        unindexed = load_feed(dataset, KEYS, start, end)
    assert _same(fast, plain) and _same(fast, unindexed)
    assert fast.has_bar.all(axis=0).sum() >= 5 and len(fast.ts) > 24


def test_a_file_that_is_not_parquet_is_reported(dataset):
    (dataset / "bars" / "binance" / "perp" / "BROKEN-1h.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(Exception, match="(?i)parquet|BROKEN"):
        load_feed(dataset, KEYS)


def test_instruments_with_different_timestamps_share_their_sorted_union(dataset):
    """Hyperliquid BTC starts 10 bars late and misses 5 in the middle: the feed's timestamps are the
    sorted union of every instrument's (as np.unique gives it), and its missing bars are marked."""
    path = dataset / "bars" / "hyperliquid" / "perp" / "BTC_USDC_USDC-1h.parquet"
    bars = pl.read_parquet(path)
    bars.slice(10).filter(~pl.int_range(pl.len()).is_between(100, 104)).write_parquet(path)
    loaded = load_feed(dataset, KEYS)
    every = [pl.read_parquet(f).filter((pl.col("exchange") + ":" + pl.col("symbol")).is_in(KEYS))["ts"]
             .dt.epoch("ns").to_numpy() for f in table_files(dataset, "bars")]
    assert np.array_equal(loaded.ts, np.unique(np.concatenate(every)))
    column = KEYS.index("hyperliquid:BTC/USDC:USDC")
    assert (~loaded.has_bar[:, column]).sum() == 15 and loaded.has_bar[:, 0].all()


@pytest.mark.parametrize("rows", [1, 7, 100, 12_000])
def test_prices_streamed_in_small_batches_give_the_same_feed(dataset, monkeypatch, rows):
    """Bars are read BATCH_ROWS rows at a time: a longer instrument in batches, shorter ones several
    instruments at once. Batches of 1, 7 or 100 rows (batches that straddle missing bars and files)
    and groups of one or two instruments (12,000 rows) give the feed of one read of all six."""
    path = dataset / "bars" / "hyperliquid" / "perp" / "BTC_USDC_USDC-1h.parquet"
    bars = pl.read_parquet(path)
    bars.slice(10).filter(~pl.int_range(pl.len()).is_between(100, 104)).write_parquet(path)
    whole = load_feed(dataset, KEYS, datetime(2025, 1, 2), None)
    monkeypatch.setattr(feed, "BATCH_ROWS", rows)
    batched = load_feed(dataset, KEYS, datetime(2025, 1, 2), None)
    assert _same(whole, batched)
    assert (~whole.has_bar).any() and whole.has_bar.any(axis=1).all() and len(whole.ts) > 100


@pytest.mark.parametrize("rows", [5, 262_144])
def test_marks_land_on_their_bars_and_holes_carry_the_last_mark(dataset, monkeypatch, rows):
    """Binance BTC's mark file with rows 200-209 removed and one extra row 30 s after a bar: every bar
    with a mark row carries that row's prices, the extra row is ignored, the ten bars of the hole carry
    the mark close before it (open, high, low and close alike); read in batches of 5 rows or at once."""
    monkeypatch.setattr(feed, "BATCH_ROWS", rows)
    path = dataset / "mark" / "binance" / "perp" / "BTC_USDT_USDT-1h.parquet"
    marks = pl.read_parquet(path)
    off_grid = marks.slice(300, 1).with_columns((pl.col("ts") + pl.duration(seconds=30)).cast(marks["ts"].dtype),
                                                pl.col("close") * 2)
    kept = marks.filter(~pl.int_range(pl.len()).is_between(200, 209))
    pl.concat([kept, off_grid]).sort("ts").write_parquet(path)
    loaded = load_feed(dataset, KEYS)
    column = KEYS.index("binance:BTC/USDT:USDT")
    at = {int(t): n for n, t in enumerate(loaded.ts.tolist())}
    ts = kept["ts"].dt.epoch("ns").to_list()
    rows_of = np.array([at[t] for t in ts])
    for name in ("open", "high", "low", "close"):
        assert np.array_equal(getattr(loaded, f"mark_{name}")[rows_of, column], kept[name].to_numpy())
    hole = np.array([at[t] for t in marks["ts"].dt.epoch("ns").to_list()[200:210]])
    before = at[marks["ts"].dt.epoch("ns").to_list()[199]]
    for name in ("open", "high", "low", "close"):
        assert (getattr(loaded, f"mark_{name}")[hole, column] == loaded.mark_close[before, column]).all()
    assert loaded.mark_source["binance:BTC/USDT:USDT"] == "mark"
    assert not np.array_equal(loaded.mark_close[:, column], loaded.close[:, column])


def test_an_instrument_without_marks_reads_no_mark_file(dataset, monkeypatch):
    """Marks are read per instrument from the files that hold its rows; an instrument no mark file
    holds (spot, Hyperliquid here) is not looked for in every mark file (a wide dataset's spot legs
    would each scan the whole mark table), and the feed is the same."""
    plain = load_feed(dataset, KEYS)
    scans = []
    real = feed.scan

    def recording(folder, table, start, end, keys, files=None):
        scans.append((table, tuple(keys or ()), tuple(Path(p).name for p in files or ())))
        return real(folder, table, start, end, keys, files=files)

    monkeypatch.setattr(feed, "scan", recording)
    loaded = load_feed(dataset, KEYS)
    assert _same(plain, loaded)
    holders = feed._files_by_instrument(table_files(dataset, "mark"))
    mark_scans = [(keys, files) for table, keys, files in scans if table == "mark"]
    assert mark_scans and {keys for keys, _ in mark_scans} == {(k,) for k in KEYS if k in holders}
    for (key,), files in mark_scans:
        assert set(files) == {p.name for p in holders[key]}, key
    assert [k for k in KEYS if plain.mark_source[k] == "mark"] == [k for k in KEYS if k in holders]


def test_a_window_in_a_named_time_zone_is_converted_not_relabelled():
    """A library user's start in ZoneInfo("Asia/Tokyo") kept its wall clock as UTC: the run began 9 h late."""
    from datetime import timezone
    from zoneinfo import ZoneInfo

    keys = ["binance:ETH/USDT:USDT"]
    tokyo = load_feed(SAMPLE, keys, datetime(2024, 10, 5, tzinfo=ZoneInfo("Asia/Tokyo")),
                      datetime(2024, 10, 6, tzinfo=ZoneInfo("Asia/Tokyo")))
    utc = load_feed(SAMPLE, keys, datetime(2024, 10, 4, 15, tzinfo=timezone.utc),
                    datetime(2024, 10, 5, 15, tzinfo=timezone.utc))
    assert tokyo.ts[0] == utc.ts[0] == int(datetime(2024, 10, 4, 15, tzinfo=timezone.utc).timestamp()) * 10**9
    assert np.array_equal(tokyo.ts, utc.ts)
