"""validate_dataset / `xmargin data validate`: each kind of bad dataset is reported with file, column, row/ts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import attrs
import polars as pl
import pytest
from click.testing import CliRunner

from xmargin.cli.main import main
from xmargin.dataset.manifest import DatasetManifest, write_manifest
from xmargin.dataset.validate import ERROR, WARNING, polars_schema, validate_dataset
from xmargin.venues.instruments import Instrument

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
PERP = Instrument(exchange="binance", symbol="BTC/USDT:USDT", market="perp", base="BTC", quote="USDT",
                  settle="USDT", funding_interval_hours=8.0, lot_size=0.001, min_notional=5.0, tick_size=0.1)


def bars_frame(hours: int = 24, symbol: str = "BTC/USDT:USDT", market: str = "perp", price: float = 100.0) -> pl.DataFrame:
    ts = [START + timedelta(hours=h) for h in range(hours)]
    return pl.DataFrame({
        "ts": ts, "exchange": "binance", "symbol": symbol, "market": market, "timeframe": "1h",
        "open": [price] * hours, "high": [price * 1.01] * hours, "low": [price * 0.99] * hours,
        "close": [price] * hours, "volume": [1.0] * hours,
    }).with_columns(pl.col("ts").dt.cast_time_unit("ns")).select(
        [pl.col(n).cast(t) for n, t in polars_schema("bars").items()])


def mark_frame(hours: int = 24, price: float = 100.0) -> pl.DataFrame:
    return bars_frame(hours, price=price).drop("volume")


def funding_frame(rates=(0.0001, 0.0002, -0.0001)) -> pl.DataFrame:
    ts = [START + timedelta(hours=8 * i) for i in range(len(rates))]
    return pl.DataFrame({"ts": ts, "exchange": "binance", "symbol": "BTC/USDT:USDT", "market": "perp",
                         "funding_rate": list(rates)}).select(
        [pl.col(n).cast(t) for n, t in polars_schema("funding").items()])


def make_dataset(root, bars=None, mark=None, funding=None, instruments=(PERP,)):
    root.mkdir(parents=True, exist_ok=True)
    write_manifest(root, DatasetManifest(name="t", description="test", kind="synthetic", instruments=tuple(instruments)))
    for kind, frame in (("bars", bars if bars is not None else bars_frame()), ("mark", mark), ("funding", funding)):
        if frame is not None:
            (root / kind).mkdir(exist_ok=True)
            frame.write_parquet(root / kind / "part.parquet")
    return root


def run_cli(path):
    return CliRunner().invoke(main, ["data", "validate", str(path)])


def problems(report, check):
    return [p for p in report.problems if p.check == check]


def test_clean_dataset_exit_zero_and_summary(tmp_path):
    root = make_dataset(tmp_path / "d", mark=mark_frame(), funding=funding_frame())
    report = validate_dataset(root)
    assert report.ok and not report.problems
    result = run_cli(root)
    assert result.exit_code == 0, result.output
    assert "usable" in result.output and "binance:BTC/USDT:USDT" in result.output and "24 rows" in result.output


def test_help_documents_exit_status():
    result = CliRunner().invoke(main, ["data", "validate", "--help"])
    assert "Exit status" in result.output and "0" in result.output and "1" in result.output


@pytest.mark.parametrize("mutate, column, expected", [
    (lambda f: f.with_columns(pl.col("close").cast(pl.Float32)), "close", "dtype is Float32, expected Float64"),
    (lambda f: f.drop("volume"), "volume", "column missing"),
    (lambda f: f.with_columns(pl.col("ts").dt.replace_time_zone(None)), "ts", "expected Datetime(ns, UTC)"),
])
def test_schema_problems(tmp_path, mutate, column, expected):
    root = make_dataset(tmp_path / "d", bars=mutate(bars_frame()))
    report = validate_dataset(root)
    found = problems(report, "schema")
    assert found and found[0].column == column and expected in found[0].message
    assert found[0].file == "bars/part.parquet"
    result = run_cli(root)
    assert result.exit_code == 1 and "bars/part.parquet" in result.output and column in result.output


def _set(frame, row, **values):
    return frame.with_row_index("_r").with_columns(
        [pl.when(pl.col("_r") == row).then(pl.lit(v, dtype=frame.schema[c])).otherwise(pl.col(c)).alias(c)
         for c, v in values.items()]).drop("_r")


@pytest.mark.parametrize("values, check, column", [
    ({"close": float("nan")}, "bad price", "close"),
    ({"open": float("inf"), "high": float("inf")}, "bad price", "open"),
    ({"low": 0.0}, "bad price", "low"),
    ({"close": -5.0, "low": -6.0}, "bad price", "close"),
    ({"high": 98.0, "low": 99.0, "open": 98.5, "close": 98.5}, "high < low", "high"),
    ({"close": 150.0}, "close outside range", "close"),
    ({"open": 50.0}, "open outside range", "open"),
])
def test_bad_prices(tmp_path, values, check, column):
    root = make_dataset(tmp_path / "d", bars=_set(bars_frame(), 7, **values))
    report = validate_dataset(root)
    found = [p for p in problems(report, check) if p.column == column]
    assert found, report.format()
    assert found[0].row == 7 and found[0].ts == "2024-01-01 07:00:00" and found[0].file == "bars/part.parquet"
    assert found[0].severity == ERROR and found[0].fix
    result = run_cli(root)
    assert result.exit_code == 1
    assert "row 7" in result.output and "2024-01-01 07:00:00" in result.output and f"column '{column}'" in result.output


def test_unsorted_and_duplicate_timestamps(tmp_path):
    frame = bars_frame()
    unsorted = pl.concat([frame[5:6], frame[:5], frame[6:]])
    report = validate_dataset(make_dataset(tmp_path / "a", bars=unsorted))
    assert problems(report, "unsorted") and problems(report, "unsorted")[0].column == "ts"
    duplicated = pl.concat([frame[:10], frame[9:10], frame[10:]])
    report = validate_dataset(make_dataset(tmp_path / "b", bars=duplicated))
    found = problems(report, "duplicate ts")
    assert found and found[0].row == 10 and found[0].ts == "2024-01-01 09:00:00"
    assert run_cli(tmp_path / "b").exit_code == 1


def test_listing_is_capped(tmp_path):
    frame = bars_frame().with_columns(close=pl.lit(-1.0), low=pl.lit(-2.0))
    report = validate_dataset(make_dataset(tmp_path / "d", bars=frame))
    closes = [p for p in problems(report, "bad price") if p.column == "close"]
    assert len(closes) == 6 and "19 more" in closes[-1].message


def test_crazy_funding(tmp_path):
    root = make_dataset(tmp_path / "d", funding=funding_frame((0.0001, 0.5, 0.0002)))
    found = problems(validate_dataset(root), "funding rate")
    assert found and found[0].row == 1 and found[0].column == "funding_rate" and "0.5" in found[0].message
    assert run_cli(root).exit_code == 1
    assert validate_dataset(root, max_funding_rate=1.0).ok


def test_undeclared_and_absent_instruments(tmp_path):
    other = bars_frame(symbol="ETH/USDT:USDT")
    spot = Instrument(exchange="binance", symbol="BTC/USDT", market="spot", base="BTC", quote="USDT", settle="USDT")
    root = make_dataset(tmp_path / "d", bars=pl.concat([bars_frame(), other]), instruments=(PERP, spot))
    report = validate_dataset(root)
    undeclared = problems(report, "undeclared instrument")
    assert undeclared and undeclared[0].instrument == "binance:ETH/USDT:USDT" and undeclared[0].file == "bars/part.parquet"
    absent = problems(report, "declared but absent")
    assert absent and absent[0].instrument == "binance:BTC/USDT"
    result = run_cli(root)
    assert result.exit_code == 1 and "binance:ETH/USDT:USDT" in result.output and "dataset.toml, binance:BTC/USDT:" in result.output


def test_mark_far_from_last_is_a_warning_with_threshold(tmp_path):
    mark = _set(mark_frame(), 3, close=110.0, high=111.0)
    root = make_dataset(tmp_path / "d", mark=mark)
    report = validate_dataset(root)
    found = problems(report, "mark far from last")
    assert report.ok and found and found[0].severity == WARNING and found[0].ts == "2024-01-01 03:00:00"
    assert found[0].file == "mark/part.parquet"
    assert not problems(validate_dataset(root, mark_threshold=0.2), "mark far from last")
    result = run_cli(root)
    assert result.exit_code == 0 and "mark close" in result.output
    assert "mark close" not in CliRunner().invoke(main, ["data", "validate", str(root), "--mark-threshold", "0.2"]).output


def test_gaps_are_warnings_with_counts(tmp_path):
    frame = bars_frame()
    root = make_dataset(tmp_path / "d", bars=pl.concat([frame[:5], frame[8:]]))
    report = validate_dataset(root)
    found = problems(report, "gaps")
    assert report.ok and found and found[0].severity == WARNING
    assert "1 gaps" in found[0].message and "3 missing bars" in found[0].message
    assert run_cli(root).exit_code == 0


def test_bad_timeframe(tmp_path):
    root = make_dataset(tmp_path / "d", bars=bars_frame().with_columns(timeframe=pl.lit("hourly")))
    found = problems(validate_dataset(root), "timeframe")
    assert found and found[0].column == "timeframe" and "hourly" in found[0].message
    assert run_cli(root).exit_code == 1


def test_unreadable_manifest_and_missing_bars(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "dataset.toml").write_text("name = [broken")
    report = validate_dataset(root)
    assert not report.ok and "not valid TOML" in report.errors[0].message
    assert run_cli(root).exit_code == 1
    make_dataset(tmp_path / "e")
    (tmp_path / "e" / "bars" / "part.parquet").unlink()
    assert problems(validate_dataset(tmp_path / "e"), "bars missing")


def test_split_files_are_checked_in_file_order(tmp_path):
    root = make_dataset(tmp_path / "d", mark=mark_frame())  # a perp with its mark: nothing to warn about
    frame = bars_frame()
    (root / "bars" / "part.parquet").unlink()
    frame[:12].write_parquet(root / "bars" / "a.parquet")
    frame[12:].write_parquet(root / "bars" / "b.parquet")
    assert validate_dataset(root).ok and not validate_dataset(root).problems
    frame[:12].write_parquet(root / "bars" / "c.parquet")  # the same hours again, later in file order
    found = problems(validate_dataset(root), "unsorted")  # goes back in time at the start of c.parquet
    assert found and found[0].file == "bars/c.parquet" and found[0].row == 0 and "23:00:00" in found[0].message


def test_funding_interval_mismatch_is_a_warning(tmp_path):
    hourly = attrs.evolve(PERP, funding_interval_hours=1.0)
    root = make_dataset(tmp_path / "d", funding=funding_frame(), instruments=(hourly,))
    report = validate_dataset(root)
    found = problems(report, "funding interval")
    assert report.ok and found and "8h apart" in found[0].message
    assert not problems(validate_dataset(make_dataset(tmp_path / "e", funding=funding_frame())), "funding interval")


@pytest.mark.parametrize("mutate, fix", [
    # replace_time_zone('UTC') on Tokyo times would keep their wall clock: every bar 9 h late
    (lambda f: f.with_columns(pl.col("ts").dt.convert_time_zone("Asia/Tokyo")),
     "pl.col('ts').dt.convert_time_zone('UTC').dt.cast_time_unit('ns'); not replace_time_zone"),
    (lambda f: f.with_columns(pl.col("ts").dt.epoch("ms")), "pl.from_epoch('ts', time_unit='ms')"),
    (lambda f: f.with_columns(pl.col("ts").dt.replace_time_zone(None)), "local times: replace_time_zone('<their zone>')"),
])
def test_the_fix_for_a_ts_column_keeps_its_instants(tmp_path, mutate, fix):
    report = validate_dataset(make_dataset(tmp_path / "d", bars=mutate(bars_frame())))
    found = problems(report, "schema")
    assert found and found[0].column == "ts" and fix in found[0].fix, found


@pytest.mark.parametrize("edit, message", [
    (("description =", "descripton ="), "unknown keys ['descripton'] (did you mean 'description'?)"),
    (('licence =', 'licens ='), "[[sources]] entry 1: unknown keys ['licens'] (did you mean 'licence'?)"),
    (('kind = "synthetic"', 'kind = "synth"'), "kind = 'synth': 'real' or 'synthetic'"),
    # the symbol says one thing, the fields another: brackets (base + quote) or the pool (settle) would be wrong
    (('settle = "USDT"', 'settle = "USDC"'), "[[instruments]] entry 1 (BTC/USDT:USDT): settle = 'USDC' but the symbol "
                                             "says 'USDT'"),
    (('base = "BTC"', 'base = "ETH"'), "base = 'ETH' but the symbol says 'BTC'"),
    (('market = "perp"', 'market = "spot"'), "market = 'spot' but BTC/USDT:USDT is a derivative symbol"),
])
def test_a_dataset_toml_whose_keys_or_fields_disagree_is_refused(tmp_path, edit, message):
    root = make_dataset(tmp_path / "d")
    manifest = root / "dataset.toml"
    text = manifest.read_text()
    if "licence" in edit[0]:
        text += '\n[[sources]]\nname = "me"\nlicence = "mine"\n'
    assert edit[0] in text
    manifest.write_text(text.replace(edit[0], edit[1], 1))
    report = validate_dataset(root)
    assert not report.ok and message in report.errors[0].message, report.errors
    assert "Traceback" not in run_cli(root).output


def test_bars_off_their_timeframe_grid_are_a_warning(tmp_path):
    """1h bars opening at :30 (local times of a half-hour zone read as UTC): usable, but said."""
    shifted = bars_frame().with_columns((pl.col("ts") + pl.duration(minutes=30)).dt.cast_time_unit("ns"))
    root = make_dataset(tmp_path / "d", bars=shifted)
    report = validate_dataset(root)
    found = problems(report, "bar grid")
    assert report.ok and [(p.severity, p.instrument, p.ts) for p in found] == [
        (WARNING, "binance:BTC/USDT:USDT", "2024-01-01 00:30:00")]
    assert "off the 1h grid from 00:00 UTC" in found[0].message
    assert not problems(validate_dataset(make_dataset(tmp_path / "e")), "bar grid")


@pytest.mark.parametrize("option, message", [
    (["--max-funding-rate", "nan"], "--max-funding-rate nan: a fraction > 0"),  # passed every funding rate
    (["--max-funding-rate", "-1"], "--max-funding-rate -1.0: a fraction > 0"),  # failed every funding rate
    (["--mark-threshold", "nan"], "--mark-threshold nan: a fraction > 0"),  # switched the mark check off
    (["--limit", "0"], "--limit 0: list at least 1 row per check"),  # printed "gaps end at  and 1 more"
])
def test_an_option_that_would_switch_a_check_off_is_refused(tmp_path, option, message):
    root = make_dataset(tmp_path / "d", funding=funding_frame((5.0, 0.0001, 0.0001)))
    result = CliRunner().invoke(main, ["data", "validate", str(root), *option])
    assert result.exit_code == 2 and message in result.output, result.output
