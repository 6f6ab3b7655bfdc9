"""A freqtrade `futures/` folder with several timeframes imports each as it is, never relabelled.

Real data (shared/datasets/real, see its README for sources and licences): XRP/USDT:USDT 5m bars are
freqtrade's own tests/testdata/futures/XRP_USDT_USDT-5m-futures.feather (freqtrade/freqtrade @
c9ae5e1e9ff2, GPL-3.0); XRP 1h bars, 1h marks and 8h funding and DOGE 1h bars, 1h and 8h marks are
freqtrade download-data output from Roshan7869/algotrading @ db07ceb71ac1 (GPL-3.0). They are written
back out in freqtrade's feather / json / jsongz layouts under tmp_path and imported from there.
"""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from xmargin.cli.main import main
from xmargin.config import parse_config
from xmargin.dataset.feed import load_feed
from xmargin.dataset.importers import ImportOptions, import_files
from xmargin.dataset.info import dataset_info
from xmargin.dataset.validate import validate_dataset
from xmargin.errors import DatasetError
from xmargin.sim.loop import Backtest

HERE = Path(__file__).resolve()
REAL = next((p / "datasets" / "real" for p in (HERE.parents[2] / "shared", HERE.parents[3] / "shared",
                                               Path("/work/shared")) if (p / "datasets" / "real").is_dir()), None)
pytestmark = pytest.mark.skipif(REAL is None, reason="shared/datasets/real (real market data) is not available")

XRP_WINDOW = (datetime(2021, 11, 14, tzinfo=timezone.utc), datetime(2021, 11, 23, tzinfo=timezone.utc))
DOGE_WINDOW = (datetime(2026, 4, 7, tzinfo=timezone.utc), datetime(2026, 4, 21, tzinfo=timezone.utc))
STEP = {"5m": 300, "1h": 3600, "8h": 28800}


def _real(relative: str, window) -> pl.DataFrame:
    """A real table cut to `window`, in freqtrade's candle layout (date in ms UTC, OHLCV)."""
    frame = pl.read_parquet(REAL / relative).filter(pl.col("ts").is_between(*window, closed="left"))
    if "funding_rate" in frame.columns:  # freqtrade keeps the funding rate in `open`
        frame = frame.with_columns(open=pl.col("funding_rate"), high=pl.col("funding_rate"),
                                   low=pl.col("funding_rate"), close=pl.col("funding_rate"), volume=pl.lit(0.0))
    if "volume" not in frame.columns:
        frame = frame.with_columns(volume=pl.lit(0.0))
    return frame.select(pl.col("ts").dt.cast_time_unit("ms").alias("date"), "open", "high", "low", "close", "volume")


def _json_rows(frame: pl.DataFrame) -> list:
    return [[int(d.timestamp() * 1000), o, h, lo, c, v] for d, o, h, lo, c, v in frame.iter_rows()]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """user_data/data/binance/futures/ as freqtrade writes it, in three data formats."""
    root = tmp_path_factory.mktemp("freqtrade") / "user_data" / "data" / "binance"
    futures = root / "futures"
    futures.mkdir(parents=True)
    sources = {
        "XRP_USDT_USDT-5m-futures.feather": _real("bars/binance/perp/XRP_USDT_USDT-5m__freqtrade.parquet", XRP_WINDOW),
        "XRP_USDT_USDT-1h-futures.json.gz": _real("bars/binance/perp/XRP_USDT_USDT-1h__roshan.parquet", XRP_WINDOW),
        "XRP_USDT_USDT-1h-mark.json": _real("mark/binance/perp/XRP_USDT_USDT-1h__roshan.parquet", XRP_WINDOW),
        "XRP_USDT_USDT-8h-funding_rate.json.gz": _real("funding/binance/perp/XRP_USDT_USDT__roshan.parquet", XRP_WINDOW),
        "DOGE_USDT_USDT-1h-futures.feather": _real("bars/binance/perp/DOGE_USDT_USDT-1h__roshan.parquet", DOGE_WINDOW),
        "DOGE_USDT_USDT-1h-mark.feather": _real("mark/binance/perp/DOGE_USDT_USDT-1h__roshan.parquet", DOGE_WINDOW),
        "DOGE_USDT_USDT-8h-mark.feather": _real("mark/binance/perp/DOGE_USDT_USDT-8h__roshan.parquet", DOGE_WINDOW),
    }
    for name, frame in sources.items():
        assert frame.height > 20, name
        path = futures / name
        if name.endswith(".json.gz"):
            path.write_bytes(gzip.compress(json.dumps(_json_rows(frame)).encode()))
        elif name.endswith(".json"):
            path.write_text(json.dumps(_json_rows(frame)))
        else:
            frame.write_ipc(path)
    return root, sources


def _tables(out: Path) -> dict:
    return {str(p.relative_to(out)): pl.read_parquet(p) for p in sorted(out.rglob("*.parquet"))}


def test_folder_imports_every_timeframe_as_it_is(folder, tmp_path):
    root, sources = folder
    out = tmp_path / "dataset"
    result = CliRunner().invoke(main, ["data", "import", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    tables = _tables(out)
    assert sorted(tables) == ["bars/binance/perp/DOGE_USDT_USDT-1h.parquet", "bars/binance/perp/XRP_USDT_USDT-1h.parquet",
                              "bars/binance/perp/XRP_USDT_USDT-5m.parquet", "funding/binance/perp/XRP_USDT_USDT.parquet",
                              "mark/binance/perp/DOGE_USDT_USDT-1h.parquet", "mark/binance/perp/DOGE_USDT_USDT-8h.parquet",
                              "mark/binance/perp/XRP_USDT_USDT-1h.parquet"]
    pairs = {"bars/binance/perp/XRP_USDT_USDT-5m.parquet": "XRP_USDT_USDT-5m-futures.feather",
             "bars/binance/perp/XRP_USDT_USDT-1h.parquet": "XRP_USDT_USDT-1h-futures.json.gz",
             "mark/binance/perp/XRP_USDT_USDT-1h.parquet": "XRP_USDT_USDT-1h-mark.json",
             "mark/binance/perp/DOGE_USDT_USDT-8h.parquet": "DOGE_USDT_USDT-8h-mark.feather",
             "mark/binance/perp/DOGE_USDT_USDT-1h.parquet": "DOGE_USDT_USDT-1h-mark.feather",
             "bars/binance/perp/DOGE_USDT_USDT-1h.parquet": "DOGE_USDT_USDT-1h-futures.feather"}
    for written, name in pairs.items():
        table, source = tables[written], sources[name]
        timeframe = name.split("-")[1]
        # same rows, same values, labelled with the file's own timeframe
        assert table.height == source.height, written
        assert table["close"].to_list() == source["close"].to_list(), written
        assert set(table["timeframe"]) == {timeframe}, written
        # every step between rows is a whole number of its own bars, the usual one exactly one bar
        spacing = table["ts"].diff().dt.total_seconds().drop_nulls()
        assert spacing.min() == STEP[timeframe] and (spacing % STEP[timeframe] == 0).all(), written
        assert spacing.mode().to_list() == [STEP[timeframe]], written
    funding = tables["funding/binance/perp/XRP_USDT_USDT.parquet"]
    assert funding["funding_rate"].to_list() == sources["XRP_USDT_USDT-8h-funding_rate.json.gz"]["open"].to_list()
    assert funding["ts"].diff().dt.total_seconds().drop_nulls().mode().to_list() == [28_800]
    # the dataset validates and `data info` lists each timeframe on its own row
    assert validate_dataset(out).ok, validate_dataset(out).format()
    info = dataset_info(out).filter(pl.col("instrument") == "binance:DOGE/USDT:USDT")
    assert info.select("kind", "timeframe").rows() == [("bars", "1h"), ("mark", "1h"), ("mark", "8h")]


def test_timeframe_option_selects_files_and_never_relabels(folder, tmp_path):
    root, sources = folder
    out = tmp_path / "only-1h"
    import_files([root], out, ImportOptions(timeframe="1h"))
    tables = _tables(out)
    assert sorted(tables) == ["bars/binance/perp/DOGE_USDT_USDT-1h.parquet", "bars/binance/perp/XRP_USDT_USDT-1h.parquet",
                              "funding/binance/perp/XRP_USDT_USDT.parquet",
                              "mark/binance/perp/DOGE_USDT_USDT-1h.parquet", "mark/binance/perp/XRP_USDT_USDT-1h.parquet"]
    xrp = tables["bars/binance/perp/XRP_USDT_USDT-1h.parquet"]
    assert xrp.height == sources["XRP_USDT_USDT-1h-futures.json.gz"].height  # not the 5m rows relabelled
    assert xrp["ts"].diff().dt.total_seconds().drop_nulls().min() == 3600
    # naming one file of another timeframe is refused, not relabelled; nothing is written
    five = root / "futures" / "XRP_USDT_USDT-5m-futures.feather"
    with pytest.raises(DatasetError, match=r"says timeframe 5m, but --timeframe 1h.*never relabelled"):
        import_files([five], tmp_path / "refused", ImportOptions(timeframe="1h"))
    assert not (tmp_path / "refused").exists() and not (tmp_path / "refused.partial").exists()
    with pytest.raises(DatasetError, match="no files of timeframe 4h"):
        import_files([root], tmp_path / "none", ImportOptions(timeframe="4h"))


def test_a_run_chooses_its_timeframe(folder, tmp_path):
    root, _ = folder
    out = tmp_path / "dataset"
    import_files([root], out)
    xrp = ["binance:XRP/USDT:USDT"]
    with pytest.raises(DatasetError, match=r"several timeframes \['1h', '5m'\].*run.timeframe"):
        load_feed(out, xrp)
    five = load_feed(out, xrp, timeframe="5m")
    hour = load_feed(out, xrp, timeframe="1h")
    assert (five.bar_ns, len(five.ts)) == (300 * 10**9, 1999)
    assert (hour.bar_ns, len(hour.ts)) == (3600 * 10**9, 216)
    assert np.all(np.diff(five.ts) % (300 * 10**9) == 0) and np.all(np.diff(hour.ts) % (3600 * 10**9) == 0)
    # the 1h marks price the 1h run only; the 5m run values at the last price, not at an hourly mark
    assert hour.mark_source == {"binance:XRP/USDT:USDT": "mark"}
    assert five.mark_source == {"binance:XRP/USDT:USDT": "last"}
    # DOGE: the 8h marks never stand in for 1h ones (its 1h marks are used, at 1h timestamps only)
    doge = load_feed(out, ["binance:DOGE/USDT:USDT"], timeframe="1h")
    marks = pl.read_parquet(out / "mark/binance/perp/DOGE_USDT_USDT-1h.parquet")
    first = int(marks["ts"].dt.epoch("ns")[0])
    row = int(np.searchsorted(doge.ts, first))
    assert doge.mark_close[row, 0] == marks["close"][0]
    with pytest.raises(DatasetError, match=r"has no 8h bars.*\['1h'\]"):
        load_feed(out, ["binance:DOGE/USDT:USDT"], timeframe="8h")
    config = parse_config({"run": {"dataset": str(out), "strategy": "hold", "timeframe": "5m", "instruments": xrp},
                           "strategy": {"params": {"positions": {}}},
                           "exchanges": {"binance": {"rules": "binance-usdm", "collateral": {"USDT": 1000}}}})
    assert config.timeframe == "5m" and Backtest(config).feed.bar_ns == 300 * 10**9


def test_imported_xrp_gets_its_filters_from_the_metadata(folder, tmp_path):
    """`data import` has no filters for XRP (0 = not enforced, said in a note); `rules import` of ccxt's
    real load_markets dump (tests/fixtures/venues) sets them; DOGE, not in that dump, is named."""
    root, _ = folder
    out = tmp_path / "dataset"
    result = import_files([root], out)
    assert any(n.startswith("binance:XRP/USDT:USDT: lot_size, min_notional, tick_size set to 0") for n in result.notes)
    markets = HERE.parent / "fixtures" / "venues" / "ccxt_load_markets_binance.json"
    run = CliRunner().invoke(main, ["rules", "import", str(markets), "--exchange", "binance", "--dataset", str(out)])
    assert run.exit_code == 0, run.output
    from xmargin.dataset.manifest import read_manifest

    xrp = read_manifest(out).instrument("binance:XRP/USDT:USDT")
    assert (xrp.lot_size, xrp.tick_size, xrp.min_notional) == (0.1, 0.0001, 5.0)  # LOT_SIZE, PRICE_FILTER, MIN_NOTIONAL
    assert "warning: binance:DOGE/USDT:USDT: not in the metadata" in run.output
    assert validate_dataset(out).ok


def test_data_import_takes_filters_from_metadata(folder, tmp_path):
    root, _ = folder
    out = tmp_path / "dataset"
    markets = HERE.parent / "fixtures" / "venues" / "ccxt_load_markets_binance.json"
    run = CliRunner().invoke(main, ["data", "import", str(root), "--out", str(out), "--metadata", str(markets)])
    assert run.exit_code == 0, run.output
    from xmargin.dataset.manifest import read_manifest

    xrp = read_manifest(out).instrument("binance:XRP/USDT:USDT")
    assert (xrp.lot_size, xrp.tick_size, xrp.min_notional) == (0.1, 0.0001, 5.0)
    assert "binance:XRP/USDT:USDT: lot_size 0 -> 0.1" in run.output
    assert "warning: binance:DOGE/USDT:USDT: not in the metadata" in run.output


def test_validate_reports_an_instrument_once_across_its_timeframes(tmp_path):
    """Bars stats are per (instrument, timeframe): an undeclared instrument held at 1h and 4h is one error,
    not one per timeframe."""
    dataset = tmp_path / "s"
    shutil.copytree(Path(__file__).resolve().parents[1] / "datasets" / "sample", dataset)
    source = next((dataset / "bars").rglob("BTC_USDT_USDT-1h*.parquet"))
    rows = pl.read_parquet(source).with_columns(symbol=pl.lit("ZZZ/USDT:USDT"))
    rows.write_parquet(source.with_name("ZZZ_USDT_USDT-1h.parquet"))
    (rows.filter(pl.col("ts").dt.hour() % 4 == 0).with_columns(timeframe=pl.lit("4h"))
     .write_parquet(source.with_name("ZZZ_USDT_USDT-4h.parquet")))
    checks = [p.check for p in validate_dataset(dataset).problems if p.instrument == "binance:ZZZ/USDT:USDT"]
    assert checks.count("undeclared instrument") == 1, checks
