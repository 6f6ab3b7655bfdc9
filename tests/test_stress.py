"""Stress scenarios on the shipped sample: shock parsing, feed surgery, the cascade in cross vs
isolated under a full-liquidation rule set, withdrawal halts, and the `xmargin stress` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from xmargin.cli.main import main
from xmargin.config import load_config
from xmargin.errors import ConfigError
from xmargin.sim.loop import Backtest
from xmargin.analysis.stress import (CollateralFall, FundingSpike, MarkDivergence, PriceGap, WithdrawalHalt, parse_shock,
                           scenarios_from_config, stress, to_ns)

ROOT = Path(__file__).resolve().parents[1]
ETH, BTC = "binance:ETH/USDT:USDT", "binance:BTC/USDT:USDT"
AT = "2024-10-08T00:00"


def full_rules(tmp_path) -> Path:
    data = json.loads((ROOT / "engine/venues/rules/data/binance-usdm.json").read_text())
    data["name"] = "binance-usdm-full"
    data["liquidation"]["policy"] = "full"
    path = tmp_path / "binance-full.json"
    path.write_text(json.dumps(data))
    return path


def write_config(tmp_path, mode="cross", collateral=4500, extra="", rules=None) -> Path:
    rules = rules or full_rules(tmp_path)
    text = f"""
[run]
dataset = "{ROOT / 'datasets/sample'}"
strategy = "hold"
name = "pair"
start = "2024-10-04"
end = "2024-10-14"
instruments = ["{ETH}", "{BTC}", "binance:ETH/USDT"]

[strategy.params]
positions = {{ "{ETH}" = 20000, "{BTC}" = -20000 }}

[exchanges.binance]
rules = "{rules}"
margin_mode = "{mode}"
collateral = {{ USDT = {collateral} }}
leverage = 10
{extra}
"""
    path = tmp_path / f"pair-{mode}.toml"
    path.write_text(text)
    return path


def test_parse_shock_text_forms():
    gap = parse_shock("gap:binance:ETH/USDT:USDT:-20%@2025-02-03T00:00")
    assert gap == PriceGap(to_ns("2025-02-03T00:00"), (ETH,), pytest.approx(-0.2))
    pair = parse_shock(f"gap:{ETH},{BTC}:-0.1@2025-02-03")
    assert pair.instruments == (ETH, BTC) and pair.size == pytest.approx(-0.1)
    mark = parse_shock("mark-divergence:binance:BTC/USDT:USDT:+5%@2025-02-03T00:00/6h")
    assert isinstance(mark, MarkDivergence) and mark.duration == 6 * 3_600_000_000_000 and mark.size == 0.05
    spike = parse_shock("funding-spike:hyperliquid:0.5%@2025-02-03/1d")
    assert isinstance(spike, FundingSpike) and spike.instruments == ("hyperliquid",) and spike.rate == 0.005
    fall = parse_shock("collateral-fall:ETH:-30%@2025-02-03T12:00")
    assert fall == CollateralFall(to_ns("2025-02-03T12:00"), "ETH", pytest.approx(-0.3))
    halt = parse_shock("withdrawal-halt:binance@2025-02-03/2d")
    assert halt == WithdrawalHalt(to_ns("2025-02-03"), "binance", 2 * 86_400_000_000_000)
    for bad in ("gap:binance@2025-02-03", "crash:ETH:-1%@2025-02-03", "gap:x:-20%", "gap:x:-150%@2025-02-03"):
        with pytest.raises(ConfigError):
            parse_shock(bad)


def test_config_tables_group_into_scenarios():
    raw = {"stress": [
        {"kind": "gap", "at": "2024-10-08", "instruments": [ETH], "size": "-20%", "scenario": "crash"},
        {"kind": "withdrawal-halt", "at": "2024-10-08", "exchange": "binance", "duration": "1d", "scenario": "crash"},
        {"kind": "funding-spike", "at": "2024-10-08", "exchange": "binance", "size": 0.01, "duration": "8h"}]}
    scenarios = scenarios_from_config(raw)
    assert list(scenarios) == ["crash", "config"]
    assert [s.kind for s in scenarios["crash"]] == ["gap", "withdrawal-halt"]
    with pytest.raises(ConfigError):
        scenarios_from_config({"stress": [{"kind": "gap", "at": "2024-10-08", "size": -0.1}]})  # no instruments


def test_shocks_rewrite_the_feed_columnwise(tmp_path):
    config = load_config(write_config(tmp_path))
    plain = Backtest(config)
    at = to_ns(AT)
    shocks = (CollateralFall(at, "ETH", -0.25), MarkDivergence(at, (BTC,), 0.05, 6 * 3_600_000_000_000),
              FundingSpike(at, ("binance",), 0.01, 86_400_000_000_000), WithdrawalHalt(at, "binance", 3_600_000_000_000))
    shocked = Backtest(config, shocks=shocks)
    a, b = plain.feed, shocked.feed
    assert shocked.context.feed is b
    row = int(np.searchsorted(a.ts, at))
    eth, spot, btc = b.column(ETH), b.column("binance:ETH/USDT"), b.column(BTC)
    for column in (eth, spot):  # perp and spot of the base asset fall together, from `at` on
        np.testing.assert_array_equal(b.close[:row, column], a.close[:row, column])
        np.testing.assert_allclose(b.close[row:, column], 0.75 * a.close[row:, column])
        np.testing.assert_allclose(b.mark_low[row:, column], 0.75 * a.mark_low[row:, column])
    np.testing.assert_array_equal(b.close[:, btc], a.close[:, btc])  # last untouched, mark diverges for 6 bars
    np.testing.assert_allclose(b.mark_close[row:row + 6, btc], 1.05 * a.mark_close[row:row + 6, btc])
    np.testing.assert_array_equal(b.mark_close[row + 6:, btc], a.mark_close[row + 6:, btc])
    window = (a.funding_ts >= at) & (a.funding_ts < at + 86_400_000_000_000)
    assert window.sum() == 6  # 3 settlements x 2 perps
    assert (b.funding_rate[window] == 0.01).all() and (b.funding_rate[~window] == a.funding_rate[~window]).all()
    assert shocked.context.transfer_blocked("binance", "other", at) and not shocked.context.transfer_blocked(
        "binance", "other", at + 3_600_000_000_000)


def test_single_leg_gap_cascades_in_cross_and_stays_contained_in_isolated(tmp_path):
    shock = {"eth-gap": (PriceGap(to_ns(AT), (ETH,), -0.25),)}
    results = {}
    for mode in ("cross", "isolated"):
        table, reports = stress(write_config(tmp_path, mode), shock, out=tmp_path / "runs", stress_id=mode)
        results[mode] = (table, reports)
        base = table.filter(pl.col("scenario") == "baseline").row(0, named=True)
        assert base["liquidations"] == 0
    cross_table, cross_reports = results["cross"]
    row = cross_table.filter(pl.col("scenario") == "eth-gap").row(0, named=True)
    first = cross_reports["eth-gap"]["first_liquidation"]
    # cross, policy full: the ETH leg's loss drains the pool and the BTC hedge is closed with it
    assert row["liquidations"] == 2 and first["policy"] == "full" and first["positions_closed"] == 2
    assert first["ts"].startswith("2024-10-08 00:00")
    iso_table, iso_reports = results["isolated"]
    row = iso_table.filter(pl.col("scenario") == "eth-gap").row(0, named=True)
    first = iso_reports["eth-gap"]["first_liquidation"]
    # isolated: only the ETH position goes, losing exactly its margin; BTC stays open
    assert row["liquidations"] == 1 and first["instrument"] == ETH and first["isolated"]
    assert first["loss"] == pytest.approx(-2000, rel=0.01)
    warning = iso_reports["eth-gap"]["first_warning"]
    assert warning["unit"] == ETH and warning["position"] == ETH
    assert cross_reports["eth-gap"]["first_warning"]["position"] == ETH  # the pool's worst leg
    assert (tmp_path / "runs/cross/eth-gap/distance.arrow").is_file()
    assert (tmp_path / "runs/cross/stress.arrow").is_file()


def test_stress_cli_with_config_tables_and_with_shock_options(tmp_path):
    extra = f"""
[[stress]]
scenario = "eth-crash"
kind = "collateral-fall"
asset = "ETH"
at = {AT}:00Z
size = "-25%"

[[stress]]
scenario = "eth-crash"
kind = "withdrawal-halt"
exchange = "binance"
at = {AT}:00Z
duration = "2d"
"""
    config = write_config(tmp_path, "cross", extra=extra)
    runner = CliRunner()
    result = runner.invoke(main, ["stress", str(config), "--out", str(tmp_path / "a"), "--id", "s1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "eth-crash" in result.output and "baseline" in result.output
    assert "first liquidation: 2024-10-08 00:00:00+00:00 binance" in result.output
    assert "collateral-fall ETH -25% at 2024-10-08 00:00; withdrawal-halt binance" in result.output
    table = pl.read_ipc(tmp_path / "a/s1/stress.arrow")
    assert table["scenario"].to_list() == ["baseline", "eth-crash"]
    result = runner.invoke(main, ["stress", str(config), "--out", str(tmp_path / "b"), "--id", "s2", "--quiet",
                                  "--no-baseline", "--shock", f"gap:{ETH}:-5%@{AT}", "--name", "small"])
    assert result.exit_code == 0, result.output
    assert pl.read_ipc(tmp_path / "b/s2/stress.arrow")["liquidations"].to_list() == [0]
    assert "first liquidation: none after the shock" in result.output
    result = runner.invoke(main, ["stress", str(config), "--shock", "gap:nowhere:-5%@2024-10-08", "--out",
                                  str(tmp_path / "c")])
    assert result.exit_code == 2 and "nowhere" in result.output


def test_a_shocked_feed_keeps_its_arrays_as_the_feed_does(paging_folder, monkeypatch):
    """A shock's rewritten price and mark arrays are held like the loaded ones: column-major, and for
    a paged feed in its file (memory-mapped, given back as the run passes them), not as full copies
    in the process's memory; the numbers are those of the feed kept in memory."""
    import mmap

    import xmargin.dataset.paging as paging

    config = load_config(write_config(paging_folder))
    at = to_ns(AT)
    shocks = (CollateralFall(at, "ETH", -0.25), MarkDivergence(at, (BTC,), 0.05, 6 * 3_600_000_000_000))
    plain = Backtest(config, shocks=shocks).feed
    names = ("open", "high", "low", "close", "mark_open", "mark_high", "mark_low", "mark_close")
    assert all(getattr(plain, name).flags.f_contiguous for name in names)
    monkeypatch.setattr(paging, "PAGED_ABOVE_BYTES", -1)
    scratch = paging_folder / "scratch"
    scratch.mkdir()
    paged = Backtest(config, shocks=shocks, scratch=scratch).feed
    assert paged.paged is not None
    for name in names:
        array = getattr(paged, name)
        base = array
        while isinstance(base, np.ndarray):
            base = base.base
        assert isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap) and array.flags.f_contiguous, name  # in the feed's file
        np.testing.assert_array_equal(array, getattr(plain, name))
