"""Validation in batches (xmargin.dataset.batches) reports exactly what one pass over the whole table
reports: same problems, same order, same rows and counts, whatever the batch size."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from xmargin.dataset import batches as batching
from xmargin.dataset import validate as validation
from xmargin.dataset.manifest import DatasetManifest, write_manifest
from xmargin.dataset.validate import polars_schema, validate_dataset
from xmargin.venues.instruments import Instrument

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
HOURS = 200
NAMES = ("BTC", "ETH", "SOL", "XRP", "ADA", "DOT", "LTC")


def _perp(name: str) -> Instrument:
    return Instrument(exchange="binance", symbol=f"{name}/USDT:USDT", market="perp", base=name, quote="USDT",
                      settle="USDT", funding_interval_hours=8.0, lot_size=0.001, min_notional=5.0, tick_size=0.01)


def _bars(name: str, price: float, kind: str = "bars") -> pl.DataFrame:
    ts = [START + timedelta(hours=h) for h in range(HOURS)]
    close = [price * (1 + 0.001 * (h % 7)) for h in range(HOURS)]
    frame = pl.DataFrame({"ts": ts, "exchange": "binance", "symbol": f"{name}/USDT:USDT", "market": "perp",
                          "timeframe": "1h", "open": close, "high": [c * 1.01 for c in close],
                          "low": [c * 0.99 for c in close], "close": close, "volume": 1.0})
    frame = frame.with_columns(pl.col("ts").dt.cast_time_unit("ns"))
    return frame.select([pl.col(n).cast(t) for n, t in polars_schema(kind).items()])


def _set(frame: pl.DataFrame, row: int, column: str, value) -> pl.DataFrame:
    return frame.with_columns(pl.when(pl.int_range(pl.len()) == row).then(pl.lit(value, frame.schema[column]))
                              .otherwise(pl.col(column)).alias(column))


def _write(frame: pl.DataFrame, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)


@pytest.fixture
def planted(tmp_path):
    """Seven perps: one file each, ADA split over two distant files, DOT and LTC interleaved in one
    file; marks for BTC and SOL; problems planted around rows 37, 50, 74, 100 and 111 (the edges of
    the batches used below)."""
    root = tmp_path / "d"
    root.mkdir()
    write_manifest(root, DatasetManifest(name="t", description="planted", kind="synthetic",
                                         instruments=tuple(_perp(n) for n in NAMES)))
    btc = _set(_bars("BTC", 100.0), 50, "close", 5000.0)  # spike whose neighbours sit in other slices
    btc = _set(btc, 100, "ts", btc["ts"][99])  # duplicate ts at a slice's first row
    eth = _set(_set(_bars("ETH", 50.0), 37, "low", -1.0), 74, "high", 1.0)  # bad price, high < low
    eth = eth.filter(~pl.int_range(pl.len()).is_between(110, 112))  # a gap
    sol = _set(_set(_bars("SOL", 20.0), 111, "ts", START), 149, "close", None)  # backwards ts, null close
    xrp = _bars("XRP", 0.5).with_columns(timeframe=pl.lit("4h"))  # labelled 4h, 1h apart
    ada = _set(_bars("ADA", 0.3), 99, "open", 30.0)  # spike at the end of the first file of a split series
    dot, ltc = _set(_bars("DOT", 7.0), 50, "high", 700.0), _set(_bars("LTC", 70.0), 100, "close", 0.7)
    for name, frame in (("BTC", btc), ("ETH", eth), ("SOL", sol), ("XRP", xrp)):
        _write(frame, root / "bars" / "binance" / f"{name}.parquet")
    _write(ada.head(100), root / "bars" / "binance" / "ADA-1.parquet")
    _write(ada.tail(100), root / "bars" / "zz" / "ADA-2.parquet")
    both = pl.concat([dot.with_columns(_o=pl.int_range(pl.len()) * 2), ltc.with_columns(_o=pl.int_range(pl.len()) * 2 + 1)])
    _write(both.sort("_o").drop("_o"), root / "bars" / "binance" / "DOT-LTC.parquet")
    btc_mark = _bars("BTC", 100.0, "mark").with_columns(
        close=pl.col("close") * pl.when(pl.int_range(pl.len()).is_in([10, 50, 120])).then(1.3).otherwise(1.0))
    _write(btc_mark, root / "mark" / "BTC.parquet")
    _write(_bars("SOL", 20.0, "mark").head(150), root / "mark" / "SOL.parquet")  # ends early
    return root


def test_batched_validation_reports_what_one_pass_reports(planted, monkeypatch):
    seen: list[list[batching.Batch]] = []
    plan = validation.plan_batches

    def recording(*args, **kwargs):
        seen.append(plan(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(validation, "plan_batches", recording)
    monkeypatch.setattr(batching, "BATCH_ROWS", 10**9)
    whole = validate_dataset(planted)
    few = validate_dataset(planted, listed_per_check=1)  # "... and N more rows" counted over every batch
    assert all(len(batches) == 1 and batches[0].first is None for batches in seen)  # one pass per table
    checks = {p.check for p in whole.problems}
    assert {"price spike", "duplicate ts", "bad price", "high < low", "unsorted", "missing value", "gaps",
            "timeframe vs spacing", "mark far from last", "mark ends early"} <= checks
    spikes = [(p.instrument, p.row, p.column) for p in whole.problems if p.check == "price spike"]
    assert ("binance:BTC/USDT:USDT", 50, "close") in spikes and ("binance:ADA/USDT:USDT", 99, "open") in spikes
    assert ("binance:DOT/USDT:USDT", 100, "high") in spikes  # row 100 of the interleaved file = DOT's row 50
    assert [p.row for p in whole.problems if p.check == "mark far from last"] == [10, 50, 120]
    assert any(p.message.startswith("... and") for p in few.problems)
    for limit, slices, several in ((450, False, True), (250, True, False), (120, True, False), (37, True, False)):
        seen.clear()
        monkeypatch.setattr(batching, "BATCH_ROWS", limit)
        assert validate_dataset(planted) == whole, f"batches of {limit} rows"
        bars = seen[0]
        assert max(batch.count or 0 for batch in bars) <= limit
        assert any(batch.first is not None for batch in bars) == slices  # series cut into slices
        assert any(batch.first is None and len(batch.series) > 1 for batch in bars) == several  # packed
        assert validate_dataset(planted, listed_per_check=1) == few, f"batches of {limit} rows"


def test_series_index_counts_rows_per_file_and_series(planted):
    files = sorted((planted / "bars").rglob("*.parquet"))
    index = batching.series_index(files)
    names = [f.name for f in files]
    rows = {(names[n], i, t): r for n, i, t, r in index.iter_rows()}
    assert rows[("DOT-LTC.parquet", "binance:DOT/USDT:USDT", "1h")] == HOURS  # two series in one file
    assert rows[("DOT-LTC.parquet", "binance:LTC/USDT:USDT", "1h")] == HOURS
    assert rows[("ADA-2.parquet", "binance:ADA/USDT:USDT", "1h")] == 100
    assert rows[("XRP.parquet", "binance:XRP/USDT:USDT", "4h")] == HOURS
    assert rows[("ETH.parquet", "binance:ETH/USDT:USDT", "1h")] == HOURS - 3
    assert len(rows) == 8
