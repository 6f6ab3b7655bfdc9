"""The load's first pass takes each instrument's timeframes from its files' index (series_index) when
they hold one, and reads short instruments together (pl.collect_all); it gives the feed (or the
error) of reading every instrument alone with its timeframes queried, also for a book holding two
timeframes (5m and 1h, in their own files and in one file), windows where one timeframe has rows
and the other none, and batches that split or group instruments. Bars without a timeframe are a
clear error, and dataset.toml is parsed again once edited."""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from xmargin.dataset import feed
from xmargin.dataset.feed import load_feed
from xmargin.dataset.manifest import read_manifest
from xmargin.errors import DatasetError

SAMPLE = Path(__file__).resolve().parents[1] / "datasets" / "sample"
BTC, ETH, SOL = "binance:BTC/USDT:USDT", "binance:ETH/USDT:USDT", "binance:SOL/USDT:USDT"
DAYS = (datetime(2025, 2, 1), datetime(2025, 2, 4))


def _cut(path: Path) -> pl.DataFrame:
    start, end = (pl.lit(day).dt.replace_time_zone("UTC") for day in DAYS)
    return pl.read_parquet(path).filter(pl.col("ts").is_between(start, end, closed="left"))


def _five_minutes(hourly: pl.DataFrame, first: int, hours: int) -> pl.DataFrame:
    """5m bars inside hours first .. first + hours - 1 of `hourly` (prices moved so they differ)."""
    rows = hourly.slice(first, hours)
    return pl.concat([rows.with_columns(pl.col("ts") + pl.duration(minutes=5 * k, time_unit="ns"), timeframe=pl.lit("5m"),
                                        close=pl.col("close") + k) for k in range(12)]).sort("ts")


@pytest.fixture(scope="module")
def two_timeframes(tmp_path_factory) -> Path:
    """Three sample perps over three days at 1h; BTC also at 5m on the first day (own file), ETH at 5m
    on the second day in its 1h file (one file, two timeframes), SOL at 1h only; marks at 1h."""
    out = tmp_path_factory.mktemp("feeds") / "two_timeframes"
    out.mkdir()
    shutil.copy(SAMPLE / "dataset.toml", out / "dataset.toml")
    shutil.copytree(SAMPLE / "funding", out / "funding")
    for kind, names in (("bars", ("BTC", "ETH", "SOL")), ("mark", ("BTC", "ETH"))):
        (out / kind).mkdir()
        for name in names:
            shutil.copy(SAMPLE / kind / "binance" / "perp" / f"{name}_USDT_USDT-1h.parquet", out / kind / f"{name}-1h.parquet")
            _cut(out / kind / f"{name}-1h.parquet").write_parquet(out / kind / f"{name}-1h.parquet")
    bars = out / "bars"
    btc, eth = pl.read_parquet(bars / "BTC-1h.parquet"), pl.read_parquet(bars / "ETH-1h.parquet")
    _five_minutes(btc, 0, 24).write_parquet(bars / "BTC-5m.parquet", row_group_size=100)
    pl.concat([eth, _five_minutes(eth, 24, 24)]).write_parquet(bars / "ETH-1h.parquet", row_group_size=50)
    return out


def _outcome(folder, keys, start, end, timeframe):
    try:
        return load_feed(folder, keys, start, end, timeframe)
    except DatasetError as exc:
        return str(exc)


def _same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    arrays = [name for name in ("ts", "open", "high", "low", "close", "has_bar", "mark_open", "mark_high", "mark_low",
                                "mark_close", "funding_row", "funding_column", "funding_rate", "funding_ts")]
    return (all(getattr(a, n).dtype == getattr(b, n).dtype and getattr(a, n).tobytes() == getattr(b, n).tobytes()
                for n in arrays)
            and (a.keys, a.bar_ns, a.mark_source, a.warnings) == (b.keys, b.bar_ns, b.mark_source, b.warnings))


WINDOWS = [(None, None), (datetime(2025, 2, 1, 6), datetime(2025, 2, 1, 9, 35)),  # BTC 1h + 5m, ETH 1h only
           (datetime(2025, 2, 2, 22), datetime(2025, 2, 3, 2)),  # ETH's 5m ends inside, BTC 1h only
           (datetime(2025, 2, 3, 12), None)]  # 1h only


@pytest.mark.parametrize("rows", [7, 12_000])
def test_two_timeframes_load_as_when_every_instrument_is_read_alone(two_timeframes, monkeypatch, rows):
    monkeypatch.setattr(feed, "BATCH_ROWS", rows)
    loads = 0
    for (start, end) in WINDOWS:
        for timeframe in (None, "1h", "5m"):
            keys = [SOL, ETH, BTC]
            fast = _outcome(two_timeframes, keys, start, end, timeframe)
            with monkeypatch.context() as alone:  # no index of series: each instrument alone, its timeframes read
                alone.setattr(feed, "_series_rows", lambda index: {})
                plain = _outcome(two_timeframes, keys, start, end, timeframe)
            assert _same(fast, plain), (start, end, timeframe, fast if isinstance(fast, str) else plain)
            loads += not isinstance(fast, str)
    assert loads == 5  # 1h everywhere; 5m in none of these windows for all three (SOL has none)
    five = load_feed(two_timeframes, [BTC], *WINDOWS[1], "5m")
    assert five.bar_ns == 300 * 10**9 and len(five.ts) == 43 and five.has_bar.all()
    with pytest.raises(DatasetError, match=r"several timeframes \['1h', '5m'\]"):
        load_feed(two_timeframes, [SOL, ETH, BTC], *WINDOWS[1])
    with pytest.raises(DatasetError, match=rf"{SOL} has no 5m bars .* \(it has \['1h'\]\)"):
        load_feed(two_timeframes, [SOL, BTC], *WINDOWS[1], "5m")


@pytest.mark.parametrize("timeframe", [None, "1h"])
def test_bars_without_a_timeframe_are_an_error_naming_the_instrument(two_timeframes, tmp_path, timeframe):
    """Rows whose timeframe is null (a run without validation) were a TypeError (sorting None with
    '1h'), or with run.timeframe silently left out; they are an error naming the instrument and the
    check that lists them; a window without them loads as before."""
    folder = tmp_path / "nulls"
    shutil.copytree(two_timeframes, folder)
    path = folder / "bars" / "SOL-1h.parquet"
    bars = pl.read_parquet(path)
    bars.with_columns(timeframe=pl.when(pl.int_range(pl.len()) < 3).then(None).otherwise("timeframe")).write_parquet(path)
    with pytest.raises(DatasetError, match=rf"{SOL} has bars without a timeframe \(null\)\. Fix: .*xmargin data validate"):
        load_feed(folder, [SOL], timeframe=timeframe)
    later = datetime(2025, 2, 1, 3)
    assert _same(load_feed(folder, [SOL], later, None, timeframe), load_feed(two_timeframes, [SOL], later, None, "1h"))


def test_an_edited_dataset_toml_is_read_again(tmp_path):
    """dataset.toml is parsed once per text: the same text in two folders gives the same manifest, an
    edit is read at the next load, and an edit that breaks it is an error naming that file."""
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
        shutil.copy(SAMPLE / "dataset.toml", folder / "dataset.toml")
    assert read_manifest(first) == read_manifest(second) == read_manifest(SAMPLE)
    text = (first / "dataset.toml").read_text()
    (first / "dataset.toml").write_text(text.replace('name = "sample"', 'name = "edited"', 1))
    assert read_manifest(first).name == "edited" and read_manifest(second).name == "sample"
    (first / "dataset.toml").write_text(text.replace('kind = "real"', 'kind = "imaginary"', 1))
    with pytest.raises(DatasetError, match=re.escape(f"{first / 'dataset.toml'}: kind = 'imaginary'")):
        read_manifest(first)
    assert read_manifest(second).name == "sample"
