"""import_files / `xmargin data import`: each supported layout round-trips and validates."""

from __future__ import annotations

import json
import zipfile
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest
from click.testing import CliRunner

from xmargin.cli.main import main
from xmargin.dataset.importers import ImportOptions, identify, import_files
from xmargin.dataset.manifest import read_manifest
from xmargin.dataset.validate import validate_dataset
from xmargin.errors import DatasetError

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
HOURS = 24


def ohlcv(hours: int = HOURS, price: float = 42_000.0) -> pl.DataFrame:
    rows = []
    for h in range(hours):
        p = price + 10 * h
        rows.append((START + timedelta(hours=h), p, p + 5.5, p - 4.25, p + 1.0, 12.5 + h))
    return pl.DataFrame(rows, schema=["date", "open", "high", "low", "close", "volume"], orient="row").with_columns(
        pl.col("date").dt.cast_time_unit("ms"))


def funding_rows(count: int = 6, hours: int = 8) -> pl.DataFrame:
    return pl.DataFrame({"date": [START + timedelta(hours=hours * i, milliseconds=37) for i in range(count)],
                         "open": [0.0001 * (i - 2) for i in range(count)]}).with_columns(
        pl.col("date").dt.cast_time_unit("ms"), high=pl.col("open"), low=pl.col("open"), close=pl.col("open"),
        volume=pl.lit(0.0))


def table(root, kind, name):
    return pl.read_parquet(root / kind / name)


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def test_freqtrade_layout_round_trips(tmp_path):
    folder = tmp_path / "user_data" / "data" / "bybit" / "futures"
    folder.mkdir(parents=True)
    source = ohlcv()
    source.write_ipc(folder / "BTC_USDT_USDT-1h-futures.feather")
    source.drop("volume").with_columns(volume=pl.lit(0.0)).write_parquet(folder / "BTC_USDT_USDT-1h-mark.parquet")
    funding_rows().write_ipc(folder / "BTC_USDT_USDT-8h-funding_rate.feather")
    spot = tmp_path / "user_data" / "data" / "bybit" / "ETH_USDT-1h.json"
    spot.write_text(json.dumps([[ms(d), o, h, l, c, v] for d, o, h, l, c, v in ohlcv(price=2_000.0).iter_rows()]))
    out = tmp_path / "dataset"
    result = CliRunner().invoke(main, ["data", "import", str(tmp_path / "user_data"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    bars = table(out, "bars", "bybit/perp/BTC_USDT_USDT-1h.parquet")
    assert bars["close"].to_list() == source["close"].to_list()
    assert bars["volume"].to_list() == source["volume"].to_list()
    assert bars["ts"].to_list() == source["date"].to_list() and str(bars["ts"].dtype) == "Datetime(time_unit='ns', time_zone='UTC')"
    assert set(bars["timeframe"]) == {"1h"} and set(bars["exchange"]) == {"bybit"}
    mark = table(out, "mark", "bybit/perp/BTC_USDT_USDT-1h.parquet")
    assert mark["high"].to_list() == source["high"].to_list() and "volume" not in mark.columns
    funding = table(out, "funding", "bybit/perp/BTC_USDT_USDT.parquet")
    assert funding["funding_rate"].to_list() == pytest.approx(funding_rows()["open"].to_list())
    assert all(t.microsecond == 0 for t in funding["ts"].to_list())  # ms jitter rounded to the second
    spot_bars = table(out, "bars", "bybit/spot/ETH_USDT-1h.parquet")
    assert spot_bars["open"].to_list() == ohlcv(price=2_000.0)["open"].to_list()
    manifest = read_manifest(out)
    perp = manifest.instrument("bybit:BTC/USDT:USDT")
    assert perp.market == "perp" and perp.funding_interval_hours == 8 and perp.settle == "USDT"
    assert manifest.instrument("bybit:ETH/USDT").market == "spot"
    assert validate_dataset(out).ok


def _kline_lines(frame: pl.DataFrame, microseconds: bool) -> list[str]:
    factor = 1000 if microseconds else 1
    return [f"{ms(d) * factor},{o},{h},{l},{c},{v},{(ms(d) + 3_599_999) * factor},0,10,0,0,0"
            for d, o, h, l, c, v in frame.iter_rows()]


def test_binance_vision_layout_round_trips(tmp_path):
    klines = tmp_path / "data" / "futures" / "um" / "monthly" / "klines" / "BTCUSDT" / "1h"
    klines.mkdir(parents=True)
    first, second = ohlcv(48)[:24], ohlcv(48)[24:]
    header = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"
    (klines / "BTCUSDT-1h-2024-01.csv").write_text("\n".join([header] + _kline_lines(first, False)) + "\n")
    with zipfile.ZipFile(klines / "BTCUSDT-1h-2024-02.zip", "w") as archive:  # newer files: microseconds, no header
        archive.writestr("BTCUSDT-1h-2024-02.csv", "\n".join(_kline_lines(second, True)) + "\n")
    marks = tmp_path / "data" / "futures" / "um" / "monthly" / "markPriceKlines" / "BTCUSDT" / "1h"
    marks.mkdir(parents=True)
    (marks / "BTCUSDT-1h-2024-01.csv").write_text("\n".join(_kline_lines(ohlcv(48), False)) + "\n")
    rates = tmp_path / "data" / "futures" / "um" / "monthly" / "fundingRate" / "BTCUSDT"
    rates.mkdir(parents=True)
    events = [(ms(START + timedelta(hours=8 * i)) + 3, 8, 0.0001 * i) for i in range(6)]
    (rates / "BTCUSDT-fundingRate-2024-01.csv").write_text(
        "calc_time,funding_interval_hours,last_funding_rate\n" + "\n".join(f"{t},{h},{r}" for t, h, r in events) + "\n")
    spot = tmp_path / "data" / "spot" / "monthly" / "klines" / "ETHUSDT" / "1h"
    spot.mkdir(parents=True)
    (spot / "ETHUSDT-1h-2024-01.csv").write_text("\n".join(_kline_lines(ohlcv(price=2_000.0), True)) + "\n")

    out = tmp_path / "ds"
    result = import_files([tmp_path / "data"], out)
    assert {t.instrument for t in result.tables} == {"binance:BTC/USDT:USDT", "binance:ETH/USDT"}
    bars = table(out, "bars", "binance/perp/BTC_USDT_USDT-1h.parquet")
    assert bars["ts"].to_list() == ohlcv(48)["date"].to_list()
    assert bars["close"].to_list() == ohlcv(48)["close"].to_list()
    mark = table(out, "mark", "binance/perp/BTC_USDT_USDT-1h.parquet")
    assert mark.height == 48
    funding = table(out, "funding", "binance/perp/BTC_USDT_USDT.parquet")
    assert funding["funding_rate"].to_list() == pytest.approx([r for _, _, r in events])
    assert funding["ts"][0] == START
    spot_bars = table(out, "bars", "binance/spot/ETH_USDT-1h.parquet")
    assert spot_bars["ts"][0] == START and spot_bars["market"][0] == "spot"
    manifest = read_manifest(out)
    assert manifest.instrument("binance:BTC/USDT:USDT").funding_interval_hours == 8
    assert manifest.instrument("binance:BTC/USDT:USDT").lot_size == 0.001
    assert validate_dataset(out).ok


def test_merge_into_existing_dataset(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    ohlcv(48)[:30].write_ipc(folder / "BTC_USDT_USDT-1h-futures.feather")
    out = tmp_path / "ds"
    import_files([folder / "BTC_USDT_USDT-1h-futures.feather"], out)
    later = tmp_path / "later"
    later.mkdir()
    ohlcv(48)[20:].write_ipc(later / "BTC_USDT_USDT-1h-futures.feather")
    import_files([later], out)
    assert table(out, "bars", "binance/perp/BTC_USDT_USDT-1h.parquet")["ts"].to_list() == ohlcv(48)["date"].to_list()
    assert len(read_manifest(out).instruments) == 1 and validate_dataset(out).ok


def test_duplicates_in_source_are_dropped(tmp_path):
    frame = ohlcv()
    path = tmp_path / "BTC_USDT_USDT-1h-futures.feather"
    pl.concat([frame, frame[5:7]]).sort("date").write_ipc(path)
    result = import_files([path], tmp_path / "ds")
    assert result.tables[0].rows == HOURS and result.tables[0].duplicates_dropped == 2


def test_duplicates_that_disagree_are_a_warning_naming_the_row_kept(tmp_path):
    """Two rows for one timestamp with different prices: keeping the last is a guess, so it is said."""
    frame = ohlcv()
    path = tmp_path / "BTC_USDT_USDT-1h-futures.feather"
    other = frame[5:7].with_columns(pl.col("close") + 1.0)
    pl.concat([frame, other]).sort("date", maintain_order=True).write_ipc(path)
    result = import_files([path], tmp_path / "ds")
    assert result.tables[0].duplicates_dropped == 2
    assert result.warnings[0].startswith(
        f"dataset.toml, binance:BTC/USDT:USDT: {path}, row 6: 2 timestamps of its bars were read more than once with "
        "different values (first 2024-01-01 05:00:00); the last read was kept, here this row")
    kept = [p for p in validate_dataset(tmp_path / "ds").warnings if p.check == "caveat"]  # later checks repeat it
    assert [p.instrument for p in kept] == ["binance:BTC/USDT:USDT"] and "read more than once" in kept[0].message
    assert table(tmp_path / "ds", "bars", "binance/perp/BTC_USDT_USDT-1h.parquet")["close"][5] == frame["close"][5] + 1.0
    same = tmp_path / "same" / "BTC_USDT_USDT-1h-futures.feather"
    same.parent.mkdir()
    pl.concat([frame, frame[5:7]]).sort("date").write_ipc(same)
    assert not any("more than once" in w for w in import_files([same], tmp_path / "ds2").warnings)


def test_bad_files_name_file_row_and_column(tmp_path):
    rows = _kline_lines(ohlcv(), False)
    rows[3] = rows[3].replace(rows[3].split(",")[4], "abc", 1)
    bad = tmp_path / "spot" / "BTCUSDT-1h-2024-01.csv"
    bad.parent.mkdir()
    bad.write_text("\n".join(rows) + "\n")
    with pytest.raises(DatasetError) as error:
        import_files([bad], tmp_path / "ds")
    message = str(error.value)
    assert str(bad) in message and "row 3" in message and "'close'" in message and "abc" in message
    assert not (tmp_path / "ds").exists()

    frame = ohlcv().with_columns(pl.when(pl.col("date") == START + timedelta(hours=4)).then(-1.0)
                                 .otherwise(pl.col("low")).alias("low"))
    negative = tmp_path / "BTC_USDT_USDT-1h-futures.feather"
    frame.write_ipc(negative)
    result = CliRunner().invoke(main, ["data", "import", str(negative), "--out", str(tmp_path / "ds2")])
    assert result.exit_code == 2
    assert str(negative) in result.output and "row 4" in result.output and "column 'low'" in result.output

    missing = tmp_path / "x" / "ETH_USDT_USDT-1h-futures.feather"
    missing.parent.mkdir()
    ohlcv().drop("close").write_ipc(missing)
    with pytest.raises(DatasetError, match="close"):
        import_files([missing], tmp_path / "ds3")

    unknown = tmp_path / "prices.csv"
    unknown.write_text("1,2\n")
    with pytest.raises(DatasetError, match="no known layout"):
        import_files([unknown], tmp_path / "ds4")


def test_identify_and_overrides(tmp_path):
    spot = identify(tmp_path / "BTC_USDT-1h-spot.feather")
    assert (spot.kind, spot.market, spot.symbol) == ("bars", "spot", "BTC/USDT")
    funding = identify(tmp_path / "hyperliquid" / "futures" / "ETH_USDC_USDC-1h-funding_rate.feather")
    assert (funding.kind, funding.exchange, funding.symbol, funding.timeframe) == ("funding", "hyperliquid", "ETH/USDC:USDC", None)
    with pytest.raises(DatasetError, match="--market"):
        identify(tmp_path / "BTCUSDT-1h-2024-01.csv")
    plain = identify(tmp_path / "BTCUSDT-1h-2024-01.csv", ImportOptions(market="spot"))
    assert plain.symbol == "BTC/USDT"
    marked = identify(tmp_path / "BTCUSDT-1h-2024-01.csv", ImportOptions(kind="mark"))
    assert (marked.kind, marked.market, marked.symbol) == ("mark", "perp", "BTC/USDT:USDT")
    inverse = identify(tmp_path / "cm" / "BTCUSD_PERP-1h-2024-01.zip")
    assert inverse.symbol == "BTC/USD:BTC"


def test_marks_or_funding_of_an_instrument_without_bars_are_refused_by_file(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    ohlcv().write_ipc(folder / "BTC_USDT_USDT-1h-futures.feather")
    ohlcv(price=2_000.0).write_ipc(folder / "ETH_USDT_USDT-1h-mark.feather")  # ETH's bars were forgotten
    out = tmp_path / "dataset"
    result = CliRunner().invoke(main, ["data", "import", str(folder), "--out", str(out), "--exchange", "binance"])
    assert result.exit_code == 2, result.output
    assert (f"{folder / 'ETH_USDT_USDT-1h-mark.feather'}: mark of binance:ETH/USDT:USDT, whose bars are not among "
            "the files imported. Fix: import its bars too") in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["files"]  # neither the dataset nor a .partial folder
    (folder / "ETH_USDT_USDT-1h-mark.feather").unlink()
    import_files([folder], out, ImportOptions(exchange="binance"))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    funding = tmp_path / "more"
    funding.mkdir()
    funding_rows().write_ipc(funding / "ETH_USDT_USDT-8h-funding_rate.feather")
    with pytest.raises(DatasetError, match="funding of binance:ETH/USDT:USDT, whose bars are not among the files "
                                           "imported nor in the dataset"):
        import_files([funding], out, ImportOptions(exchange="binance"))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_doubtful_imports_are_written_with_warnings(tmp_path):
    """Dates without a time zone are read as UTC and a gap is kept: both said, not passed over."""
    folder = tmp_path / "files"
    folder.mkdir()
    source = ohlcv().with_columns(pl.col("date").dt.replace_time_zone(None))
    source.filter(pl.int_range(pl.len()).is_between(5, 7).not_()).write_ipc(folder / "BTC_USDT_USDT-1h-futures.feather")
    result = CliRunner().invoke(main, ["data", "import", str(folder), "--out", str(tmp_path / "d"),
                                       "--exchange", "binance"])
    assert result.exit_code == 0, result.output
    assert (f"warning: dataset.toml, binance:BTC/USDT:USDT: {folder / 'BTC_USDT_USDT-1h-futures.feather'}, column "
            "'date': dates without a time zone, read as UTC") in result.output
    again = CliRunner().invoke(main, ["data", "validate", str(tmp_path / "d")])  # kept in dataset.toml
    assert again.exit_code == 0 and "dates without a time zone, read as UTC" in again.output, again.output
    assert ("warning: bars/binance/perp/BTC_USDT_USDT-1h.parquet, binance:BTC/USDT:USDT, column 'ts': 1 gaps in bars "
            "(1h), 3 missing bars") in result.output
    assert table(tmp_path / "d", "bars", "binance/perp/BTC_USDT_USDT-1h.parquet")["ts"][0] == START


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e30])
def test_a_timestamp_that_is_no_epoch_number_is_named_not_a_traceback(tmp_path, value):
    folder = tmp_path / "files"
    folder.mkdir()
    frame = ohlcv().with_columns(pl.col("date").dt.epoch("ms").cast(pl.Float64))
    frame.with_columns(date=pl.when(pl.int_range(pl.len()) == 3).then(value).otherwise(pl.col("date"))).write_ipc(
        folder / "BTC_USDT_USDT-1h-futures.feather")
    result = CliRunner().invoke(main, ["data", "import", str(folder), "--out", str(tmp_path / "d"),
                                       "--exchange", "binance"])
    assert result.exit_code == 2 and isinstance(result.exception, (SystemExit, type(None))), result.exception
    assert (f"{folder / 'BTC_USDT_USDT-1h-futures.feather'}, row 3, column 'date': timestamp {value:g} is not a number "
            "of seconds, ms, µs or ns since 1970") in result.output, result.output
    assert not (tmp_path / "d").exists() and not (tmp_path / "d.partial").exists()


def test_a_symbol_naming_another_pair_than_the_file_is_refused(tmp_path):
    """--symbol ETH/USDT:USDT on BTC_USDT_USDT-1h-futures.feather labelled BTC's prices as ETH's."""
    path = tmp_path / "BTC_USDT_USDT-1h-futures.feather"
    vision = tmp_path / "futures" / "um" / "BTCUSDT-1h-2024-01.csv"
    for source in (path, vision):
        with pytest.raises(DatasetError, match=r"--symbol ETH/USDT:USDT names another pair than the file's name "
                                               r"\(BTC/USDT\)"):
            identify(source, ImportOptions(symbol="ETH/USDT:USDT"))
    assert identify(path, ImportOptions(symbol="BTC/USDT:BTC")).symbol == "BTC/USDT:BTC"  # it may add the settle
