"""Margin-mode comparison on the shipped sample: collateral needs of a hedged pair, divergence of
event logs (the isolated liquidation that cross absorbs), set-up parsing and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import polars as pl
from click.testing import CliRunner

from xmargin.cli.main import main
from xmargin.analysis.compare import compare, first_divergence, format_comparison, parse_setups
from xmargin.errors import ConfigError
from xmargin.analysis.stress import PriceGap, to_ns
from test_stress import AT, ETH, write_config


def test_parse_setups():
    exchanges = ["binance", "hyperliquid"]
    assert parse_setups("isolated,cross", exchanges) == [
        ("isolated", {"binance": "isolated", "hyperliquid": "isolated"}),
        ("cross", {"binance": "cross", "hyperliquid": "cross"})]
    assert parse_setups("binance=cross,hyperliquid=isolated;cross", exchanges) == [
        ("binance=cross,hyperliquid=isolated", {"binance": "cross", "hyperliquid": "isolated"}),
        ("cross", {"binance": "cross", "hyperliquid": "cross"})]
    assert parse_setups(["binance=isolated", "cross"], exchanges)[0] == ("binance=isolated", {"binance": "isolated"})
    for bad in ("okx=cross", "binance=cross,isolated", "sideways", "cross;cross"):
        with pytest.raises(ConfigError):
            parse_setups(bad, exchanges)


def test_cross_needs_less_collateral_than_isolated_for_a_hedged_pair(tmp_path):
    # ample collateral: nothing is liquidated, so both runs hold the same book throughout
    table, notes = compare(write_config(tmp_path, "cross", collateral=20_000), "isolated,cross",
                           out=tmp_path / "runs", compare_id="pair")
    rows = {r["setup"]: r for r in table.iter_rows(named=True)}
    iso, cross = rows["isolated"], rows["cross"]
    assert iso["liquidations"] == cross["liquidations"] == 0
    # the legs' losses and gains offset inside one pool: max(sum) < sum(max)
    assert cross["min_collateral"] < iso["min_collateral"]
    assert cross["min_collateral"] == pytest.approx(220.62, abs=0.05)  # pinned (sample, 2024-10-04..14)
    # isolated: each position's worst moment. The BTC short's: the 2024-10-07 15:00 sample (mark 63,974.05,
    # loss 1,155.92 + maintenance 84.45 = 1,240.37). The ETH long's: its fill's own moment, the snapshot at
    # the 2024-10-04 01:00 open, valued at that bar's open mark 2,339.5348354: maintenance 8.549 x 2,339.5348354
    # x 0.4 % = 80.0027 plus the loss to the fill price 2,339.63394 (0.8472). (Valued at the bar's close
    # 2,376.45, as every snapshot was before snapshots carried their moment, ETH was in gain there: 1,240.37.)
    eth_at_fill = 8.549 * 2339.53483542 * 0.004 - 8.549 * (2339.53483542 - 2339.63394)
    assert iso["min_collateral"] == pytest.approx(1240.37 + eth_at_fill, abs=0.05)  # = 1,321.22
    # the same fills and funding on both: the event logs do not part
    assert iso["pnl"] == pytest.approx(cross["pnl"], abs=1e-6) and "identical" in notes[0]["text"]
    assert iso["peak_initial_margin"] > 0 and cross["peak_initial_margin"] > 0
    assert 1.9 < cross["capital_efficiency"] < 2.2 and cross["min_headroom_binance"] > 0.9
    assert table["hours_above_warning"].to_list() == [0.0, 0.0]
    # per exchange figures: a headroom only where it applies (no cross pool with maintenance in isolated mode)
    assert iso["min_headroom_binance"] is None and 0 < iso["min_isolated_headroom_binance"] < 1
    assert cross["min_isolated_headroom_binance"] is None
    # the same fills and prices: the same money consumed and the same drawdown, whatever the mode
    assert iso["collateral_consumed_binance"] == pytest.approx(cross["collateral_consumed_binance"], abs=1e-6)
    assert iso["max_drawdown_binance"] == pytest.approx(cross["max_drawdown_binance"], abs=1e-6)
    assert iso["fills"] == cross["fills"] == 2 and iso["rejected_orders"] == 0
    saved = pl.read_ipc(tmp_path / "runs/pair/comparison.arrow")
    assert saved["setup"].to_list() == ["isolated", "cross"]
    assert (tmp_path / "runs/pair/cross/manifest.json").is_file()


def test_divergence_names_the_isolated_liquidation_that_cross_absorbs(tmp_path):
    # a 12 % ETH gap: the isolated ETH leg (margin 2,000 on 20,000) is liquidated; the cross pool of
    # 20,000 absorbs it (policy full rule file, so nothing is partial)
    table, notes = compare(write_config(tmp_path, "cross", collateral=20_000), ["isolated", "cross"],
                           out=tmp_path / "runs", compare_id="gap", shocks=(PriceGap(to_ns(AT), (ETH,), -0.12),))
    rows = {r["setup"]: r for r in table.iter_rows(named=True)}
    assert rows["isolated"]["liquidations"] == 1 and rows["cross"]["liquidations"] == 0
    assert rows["isolated"]["liquidation_loss"] == pytest.approx(-2000, rel=0.01)
    # compare's liquidation_loss leaves the fees apart; the run summary's includes them (both documented)
    summary = json.loads((Path(rows["isolated"]["path"]) / "summary.json").read_text())
    assert summary["total"]["liquidation_loss"] == pytest.approx(
        rows["isolated"]["liquidation_loss"] - rows["isolated"]["liquidation_fees"], rel=1e-12)
    assert "their fees apart under liq fees" in format_comparison(table, notes)
    (note,) = notes
    assert note["ts"].startswith("2024-10-08 15:30")  # the gap at 00:00 plus the rest of the day
    assert note["a_event"].startswith(f"PositionLiquidated binance {ETH}")
    assert "isolated liquidated" in note["why"] and "cross's margin absorbed" in note["why"]
    assert rows["cross"]["divergence"] == note["text"]


def test_first_divergence_of_identical_logs_is_none(tmp_path):
    events = pl.DataFrame({"seq": [0], "ts": [1], "type": ["OrderFilled"], "exchange": ["x"], "instrument": ["i"],
                           "quantity": [1.0], "realized_pnl": [0.0], "price": [1.0], "isolated": [None],
                           "policy": [None], "reason": [None], "amount": [None]})
    assert first_divergence("a", events, "b", events) is None


def test_compare_cli(tmp_path):
    config = write_config(tmp_path, "cross", collateral=4500)
    result = CliRunner().invoke(main, ["compare", str(config), "--modes", "isolated", "--setup", "binance=cross",
                                       "--out", str(tmp_path / "out"), "--id", "c1", "--quiet",
                                       "--set", "run.end=2024-10-10"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # a legend with the full set-up labels, then the book's figures per set-up
    assert lines[0].split()[:2] == ["[1]", "isolated:"] and lines[1].split()[:2] == ["[2]", "binance=cross:"]
    assert lines[2].split()[:4] == ["set-up", "pnl", "return", "on"]
    assert lines[3].split()[0] == "[1]" and lines[4].split()[0] == "[2]"
    assert "divergence: isolated and binance=cross: identical" in result.output
    assert pl.read_ipc(tmp_path / "out/c1/comparison.arrow").height == 2
    result = CliRunner().invoke(main, ["compare", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0 and "--modes" in result.output


def test_comparison_table_keeps_columns_apart_with_wide_numbers():
    from xmargin.analysis.compare import BOOK_COLUMNS, EXCHANGE_COLUMNS, format_comparison

    wide = -123_456_789_012.345
    row = {"setup": "binance=cross,hyperliquid=isolated,okx=multi-asset", "margin_modes": "x"}
    for _, column, _ in BOOK_COLUMNS:
        row[column] = wide if column not in ("fills", "rejected_orders", "liquidations") else 1_234_567
    for _, prefix, kind in EXCHANGE_COLUMNS:
        row[prefix + "binance"] = "2025-01-01 00:00:00+00:00" if kind == "text" else (
            1_234_567 if kind == "int" else wide)
        row[prefix + "okx"] = None if kind != "int" else 0
    text = format_comparison(pl.DataFrame([row, row], infer_schema_length=None), [])
    lines = text.splitlines()
    assert lines[0] == "  [1] binance=cross,hyperliquid=isolated,okx=multi-asset: x"  # full label, no truncation
    header, first = lines[2], lines[3]
    assert len(first.split()) == len(BOOK_COLUMNS) + 1  # every cell stands apart
    assert "123,456,789,012.35" in first and "-123,456,789,012.35" in first  # the loss is positive
    per_exchange = [line for line in lines if line.split()[1:2] in (["binance"], ["okx"])]
    assert len(per_exchange) == 4
    okx = next(line for line in per_exchange if " okx " in line)
    assert okx.split()[2:6] == ["n/a"] * 4  # no figure where it does not apply
    binance = next(line for line in per_exchange if " binance " in line)
    assert len(binance.split()) == len(EXCHANGE_COLUMNS) + 2 + 1  # + set-up, exchange; the time has 2 words
    assert len(header) == len(first)


def test_setup_metrics_are_the_same_number_every_time(tmp_path):
    # capital_efficiency (a mean over samples) and min_collateral (a sum over pools) were summed in
    # the order of an unordered group_by: the same folder gave last-bit different numbers call to call
    # (comparison.json differed run to run); now in sample order, the mean of the per-sample ratios
    from xmargin.analysis.compare import setup_metrics

    table, _ = compare(write_config(tmp_path, "cross", collateral=20_000), "isolated,cross",
                       out=tmp_path / "runs", compare_id="pair")
    folder = tmp_path / "runs/pair/cross"
    summary = json.loads((folder / "summary.json").read_text())
    equity, positions = pl.read_ipc(folder / "equity.arrow"), pl.read_ipc(folder / "positions.arrow")
    wallets = equity.filter(pl.col("reason") == "sample").group_by("ts", maintain_order=True).agg(
        pl.col("wallet_balance").sum())
    gross = positions.filter(pl.col("reason") == "sample").group_by("ts", maintain_order=True).agg(
        pl.col("notional").sum())
    ratios = wallets.join(gross, on="ts", how="left", maintain_order="left").select(
        pl.col("notional").fill_null(0.0) / pl.col("wallet_balance"))
    assert wallets.height > 100 and wallets["ts"].is_sorted()
    expected = ratios.to_series().mean()
    seen = {(row["capital_efficiency"], row["min_collateral"])
            for row in (setup_metrics(folder, summary, [0.8], 1.0) for _ in range(30))}
    assert len(seen) == 1 and next(iter(seen))[0] == expected
    assert table.filter(pl.col("setup") == "cross")["capital_efficiency"].item() == expected
