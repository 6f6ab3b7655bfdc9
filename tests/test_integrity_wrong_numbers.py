"""Issue 12, silent wrong numbers: each doubtful input is an error naming file / row / column (or
key), or a warning that the run summary repeats; nothing that would give wrong money passes quietly."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest

from helpers_integrity import (BTC, ETH, assert_override_refused, cli, config, dataset, edit_json, finished,
                               finished_runs, rewrite)
from xmargin.dataset.feed import load_feed
from xmargin.dataset.validate import validate_dataset
from xmargin.venues.rules.ruleset import DATA_DIR

BARS, MARK, FUNDING = "bars/20240101.parquet", "mark/20240101.parquet", "funding/20240101.parquet"
HL_BTC = "hyperliquid:BTC/USDC:USDC"


def _spike(frame: pl.DataFrame) -> pl.DataFrame:
    row = _row_of(frame, "binance", "BTC/USDT:USDT", 30)
    return frame.with_columns([pl.when(pl.int_range(pl.len()) == row).then(1e300).otherwise(pl.col(c)).alias(c)
                               for c in ("open", "high", "low", "close")])


def _row_of(frame, exchange, symbol, nth) -> int:
    rows = frame.with_row_index("row").filter((pl.col("exchange") == exchange) & (pl.col("symbol") == symbol))
    return int(rows["row"][nth])


def _minutes(frame):  # 1m rows still labelled 1h
    t0 = frame["ts"].min()
    return frame.with_columns(ts=(t0 + (pl.col("ts") - t0) / 60).dt.cast_time_unit("ns"))


def _seconds_as_nanoseconds(frame):
    return frame.with_columns(ts=pl.from_epoch(pl.col("ts").dt.epoch("s"), time_unit="ns").dt.replace_time_zone("UTC"))


def _shift_hyperliquid(frame):
    later = pl.col("ts") + pl.duration(days=10)
    return frame.with_columns(ts=pl.when(pl.col("exchange") == "hyperliquid").then(later).otherwise(pl.col("ts"))
                              .dt.cast_time_unit("ns"))


def _mark_ends_early(frame):
    return frame.filter(pl.col("ts") < datetime(2024, 1, 2, 12, tzinfo=timezone.utc))


def _off_grid(frame):
    return frame.with_columns(ts=pl.when(pl.col("exchange") == "hyperliquid")
                              .then(pl.col("ts") + pl.duration(seconds=1)).otherwise(pl.col("ts"))
                              .dt.cast_time_unit("ns"))


# (mutation of one file, severity, check, file, column, text in the message, row or None)
CASES = {
    "funding in percent": (FUNDING, lambda f: f.with_columns(pl.col("funding_rate") * 100), "error",
                           "funding in percent", "funding_rate", "look like percent"),
    "isolated 1e300 bar": (BARS, _spike, "error", "price spike", "close", "more than 10x away"),
    "1m rows labelled 1h": (BARS, _minutes, "error", "timeframe vs spacing", "timeframe", "labelled 1h but rows are 1m"),
    "epoch seconds as ns": (BARS, _seconds_as_nanoseconds, "error", "implausible date", "ts", "before 2009"),
    "exchanges never overlap": (BARS, _shift_hyperliquid, "warning", "no overlap", "", "never overlap"),
    "mark ends early": (MARK, _mark_ends_early, "warning", "mark ends early", "ts", "h before the bars"),
    "funding off the hour": (FUNDING, _off_grid, "warning", "funding off the hour", "ts", "not on the hour"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validate_names_each_doubtful_input(tmp_path, case):
    file, change, severity, check, column, text = CASES[case]
    root = dataset(tmp_path / "d")
    rewrite(root / file, change)
    report = validate_dataset(root)
    found = [p for p in report.problems if p.check == check and p.column == column]
    assert found, report.format()
    problem = found[0]
    assert problem.severity == severity and text in problem.message and problem.column == column
    assert problem.file in (file, "bars/")
    if case == "isolated 1e300 bar":
        bars = pl.read_parquet(root / BARS)
        assert problem.row == _row_of(bars, "binance", "BTC/USDT:USDT", 30)
    if case == "funding in percent":
        assert "divide funding_rate by 100" in problem.fix
    result = cli("data", "validate", root)
    assert result.exit_code == (1 if severity == "error" else 0) and check in result.output or text in result.output


def test_a_perp_without_mark_is_a_warning_in_validate_and_in_the_run_summary(tmp_path):
    root = dataset(tmp_path / "d")
    (root / MARK).unlink()
    found = [p for p in validate_dataset(root).warnings if p.check == "no mark"]
    assert {p.instrument for p in found} == {BTC, ETH, HL_BTC, "hyperliquid:ETH/USDC:USDC"}
    result = cli("run", config(tmp_path / "c.toml", root), "--out", tmp_path / "runs", "--run-id", "r", "--quiet")
    assert result.exit_code == 0
    assert result.output.count("dataset: warning: dataset.toml, binance:BTC/USDT:USDT: perp without a mark") == 1
    assert "hyperliquid" not in result.output  # not in this run: its warnings are not this run's
    summary = json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())
    assert sum("without a mark series" in w for w in summary["warnings"]) == 2  # BTC and ETH, once each
    unchecked = cli("run", config(tmp_path / "c.toml", root), "--out", tmp_path / "runs", "--quiet", "--no-validate")
    assert f"{BTC}: no mark series in the dataset" in unchecked.output  # the run's own warning


def test_a_mark_that_ends_early_falls_back_to_last_and_the_summary_says_so(tmp_path):
    root = dataset(tmp_path / "d")
    rewrite(root / MARK, _mark_ends_early)
    feed = load_feed(root, [BTC, ETH])
    stop = int(np.searchsorted(feed.ts, np.datetime64("2024-01-02T12:00", "ns").astype(np.int64)))
    column = feed.column(BTC)
    assert np.array_equal(feed.mark_close[stop:, column], feed.close[stop:, column])  # not the stale mark
    assert not np.array_equal(feed.mark_close[:stop, column], feed.close[:stop, column])
    assert feed.mark_source[BTC] == "mark until 2024-01-02 12:00, then last"
    result = cli("run", config(tmp_path / "c.toml", root), "--out", tmp_path / "runs", "--run-id", "r", "--quiet")
    assert result.exit_code == 0 and "the mark series ends at 2024-01-02 11:00:00, 36 h before the bars" in result.output
    unchecked = cli("run", config(tmp_path / "c.toml", root), "--out", tmp_path / "runs", "--quiet", "--no-validate")
    assert "the mark series stops at 2024-01-02 12:00, 36 bars before its last bar" in unchecked.output
    manifest = json.loads((tmp_path / "runs" / "r" / "manifest.json").read_text())
    assert manifest["mark_price_source"][BTC] == "mark until 2024-01-02 12:00, then last"


def test_funding_stamped_a_second_after_the_hour_settles_at_the_bar_that_contains_it(tmp_path):
    root = dataset(tmp_path / "d")
    rewrite(root / FUNDING, _off_grid)
    feed = load_feed(root, [BTC, HL_BTC])
    hyperliquid = feed.funding_column == feed.column(HL_BTC)
    late = feed.funding_ts[hyperliquid] - feed.ts[feed.funding_row[hyperliquid]]
    assert hyperliquid.sum() == 72 and set(late.tolist()) == {1_000_000_000}  # 1 s into its bar, not a bar late
    on_grid = ~hyperliquid
    assert set((feed.funding_ts[on_grid] - feed.ts[feed.funding_row[on_grid]]).tolist()) == {0}


@pytest.mark.parametrize("override, key", [
    ("run.slippage_bps=20000", "run.slippage_bps = 20000"),
    ("run.slippage_bps=nan", "run.slippage_bps = nan"),
    ("exchanges.binance.leverage=nan", "exchanges.binance.leverage = nan"),
    ("exchanges.binance.collateral.USDT=inf", "exchanges.binance.collateral.USDT = inf"),
    ("exchanges.binance.collateral.USDT=nan", "exchanges.binance.collateral.USDT = nan"),
    ('run.sample_interval="0h"', "run.sample_interval = '0h'"),
    ("exchanges.binance.leverage=true", "exchanges.binance.leverage = True"),
])
def test_config_numbers_are_bounded(tmp_path, override, key):
    assert_override_refused(tmp_path, override, key)


def _rules(tmp_path, change):
    data = json.loads((DATA_DIR / "binance-usdm.json").read_text())
    change(data)
    path = tmp_path / "my-rules.json"
    path.write_text(json.dumps(data))
    return path


def _swap_first_brackets(data):
    brackets = data["brackets"]["BTCUSDT"]
    brackets[0], brackets[1] = brackets[1], brackets[0]


def _inconsistent_amount(data):
    data["brackets"]["BTCUSDT"][2]["maintenance_amount"] += 500


@pytest.mark.parametrize("change, key", [
    (lambda d: d["fees"].update(taker=2.0), "fees.taker = 2.0"),
    (lambda d: d["fees"].update(maker=0.5), "fees.maker = 0.5"),
    (lambda d: d["brackets"]["BTCUSDT"][0].update(maintenance_margin_rate=1.5), "brackets.BTCUSDT[0]"),
    (_swap_first_brackets, "brackets.BTCUSDT[0]"),
    (_inconsistent_amount, "brackets.BTCUSDT[2].maintenance_amount"),
    (lambda d: d["liquidation"].update(fee_rate=3), "liquidation.fee_rate = 3"),
    (lambda d: d["funding"].update(interval_hours=0), "funding.interval_hours = 0"),
])
def test_rule_files_are_validated_naming_file_and_key(tmp_path, change, key):
    rules = _rules(tmp_path, change)
    exchanges = f'[exchanges.binance]\nrules = "{rules}"\ncollateral = {{ USDT = 20000 }}\n'
    result = cli("run", config(tmp_path / "c.toml", dataset(tmp_path / "d"), exchanges=exchanges),
                 "--out", tmp_path / "runs", "--quiet")
    assert result.exit_code == 2 and str(rules) in result.output and key in result.output, result.output
    assert not (tmp_path / "runs").exists()


def test_an_exchange_with_no_instrument_in_the_dataset_warns(tmp_path):
    exchanges = ('[exchanges.binance]\nrules = "binance-usdm"\ncollateral = { USDT = 20000 }\n\n'
                 '[exchanges.hyperliqiud]\nrules = "hyperliquid"\ncollateral = { USDC = 5000 }\n')
    path = config(tmp_path / "c.toml", dataset(tmp_path / "d"), exchanges=exchanges)
    result = cli("run", path, "--out", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0
    assert "exchanges.hyperliqiud: no instrument of the dataset is on this exchange" in result.output


def test_a_symbol_missing_from_the_rule_set_is_an_error_unless_defaults_are_chosen(tmp_path):
    data = dataset(tmp_path / "d")
    exchanges = '[exchanges.binance]\nrules = "bybit-linear"\ncollateral = { USDT = 20000 }\n'
    result = cli("run", config(tmp_path / "c.toml", data, exchanges=exchanges), "--out", tmp_path / "runs",
                 "--quiet")
    assert result.exit_code == 2 and "no brackets for ETHUSDT (binance:ETH/USDT:USDT)" in result.output
    assert "allow_default_brackets = true" in result.output and finished_runs(tmp_path / "runs") == []
    allowed = config(tmp_path / "ok.toml", data, exchanges=exchanges + "allow_default_brackets = true\n")
    assert cli("run", allowed, "--out", tmp_path / "runs", "--quiet").exit_code == 0


def test_binance_csv_columns_are_read_by_their_header(tmp_path):
    folder = tmp_path / "futures" / "um"
    folder.mkdir(parents=True)
    rows = [f"{1704067200000 + h * 3_600_000},{101 + h},{99 + h},{100 + h},{101.5 + h},5" for h in range(3)]
    (folder / "BTCUSDT-1h-2024-01.csv").write_text("open_time,close,low,open,high,volume\n" + "\n".join(rows) + "\n")
    assert cli("data", "import", folder, "--out", tmp_path / "ds").exit_code == 0
    bars = pl.read_parquet(tmp_path / "ds" / "bars" / "binance" / "perp" / "BTC_USDT_USDT-1h.parquet")
    assert bars["open"].to_list() == [100.0, 101.0, 102.0] and bars["close"].to_list() == [101.0, 102.0, 103.0]
    assert bars["high"].to_list() == [101.5, 102.5, 103.5] and bars["low"].to_list() == [99.0, 100.0, 101.0]


def _arrow(change):
    def edit(file):
        frame = pl.read_ipc(io.BytesIO(file.read_bytes()))
        change(frame).write_ipc(file)
    return edit


@pytest.mark.parametrize("file, edit", [
    ("summary.json", lambda f: edit_json(f, lambda d: d["total"].update(pnl=1e6))),
    ("equity.arrow", _arrow(lambda t: t.with_columns(pl.col("margin_ratio") * 0.5))),
    ("positions.arrow", _arrow(lambda t: t.with_columns(pl.col("liquidation_price") * 2))),
    ("distance.arrow", _arrow(lambda t: t.with_columns(pl.col(t.columns[-1]).reverse()))),
    ("collateral.arrow", _arrow(lambda t: t.with_columns(pl.col("price") * 1.1))),
    ("manifest.json", lambda f: edit_json(f, lambda d: d["config"]["exchanges"]["binance"].update(leverage=50))),
])
def test_verify_notices_an_edit_of_any_file(tmp_path, file, edit):
    run = finished(tmp_path / "runs") / "a"
    assert cli("verify", run).exit_code == 0
    edit(run / file)
    result = cli("verify", run)
    assert result.exit_code == 1 and file in result.output, result.output


def test_a_strategy_reference_is_checked_before_anything_is_called(tmp_path, monkeypatch):
    marker = tmp_path / "called"
    (tmp_path / "evil.py").write_text(
        f"def Function(params):\n    open({str(marker)!r}, 'w').write('ran')\n\n"
        f"class NoOnWake:\n    def __init__(self, params):\n        open({str(marker)!r}, 'w').write('ran')\n\n"
        "    def wakes(self):\n        return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    data = dataset(tmp_path / "d")
    for reference, text in (("subprocess:Popen", "class Popen has no wakes or on_wake"),
                            ("evil:Function", "that is a function, not a strategy class"),
                            ("evil:NoOnWake", "class NoOnWake has no on_wake()")):
        result = cli("run", config(tmp_path / "c.toml", data, strategy=reference), "--out", tmp_path / "runs",
                     "--quiet")
        assert result.exit_code == 2 and f"run.strategy = '{reference}'" in result.output and text in result.output
    assert not marker.exists() and not (tmp_path / "runs").exists()


def test_minute_rows_in_an_hourly_file_are_not_imported_as_hourly(tmp_path):
    folder = tmp_path / "user_data" / "data" / "binance" / "futures"
    folder.mkdir(parents=True)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    prices = [100.0 + i / 10 for i in range(120)]
    pl.DataFrame({"date": pl.datetime_range(start, start.replace(hour=1, minute=59), "1m", eager=True),
                  "open": prices, "high": [p + 1 for p in prices], "low": [p - 1 for p in prices],
                  "close": prices, "volume": [1.0] * 120}).write_parquet(folder / "BTC_USDT_USDT-1h-futures.parquet")
    result = cli("data", "import", folder, "--out", tmp_path / "ds")
    assert result.exit_code == 2 and "BTC_USDT_USDT-1h-futures.parquet" in result.output
    assert "column 'timeframe': labelled 1h but rows are 1m apart" in result.output
    assert not (tmp_path / "ds").exists() and not (tmp_path / "ds.partial").exists()
