"""Inverse (coin-margined) perpetuals: PnL, margin, fees and funding in the base coin.

Real prices: datasets/coinm-sample (Binance COIN-M BTCUSD perp, 2022-12-13, 1-minute bars; the
CPI release at 13:30 UTC moved BTC from ~17,200 to ~18,000). Rules: binance-coinm (brackets in BTC).
Every expected number below is computed here from the contract definitions, not read from the engine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from xmargin.ledger import events as ev
from xmargin.margin import formulas as margin
from xmargin.config import parse_config
from xmargin.ledger.apply import next_position
from xmargin.venues.rules import load_rules
from xmargin.sim.runner import execute
from xmargin.output.verify import verify_run

ROOT = Path(__file__).resolve().parents[1]
BTCUSD = "binance:BTC/USD:BTC"
SIZE = 100.0  # USD per contract


def config(collateral_btc: float, leverage: float, notional_usd: float = -40_000, mode: str = "cross"):
    return parse_config({
        "run": {"dataset": str(ROOT / "datasets/coinm-sample"), "strategy": "hold", "slippage_bps": 0.0},
        "strategy": {"params": {"positions": {BTCUSD: notional_usd}, "leverage": {BTCUSD: leverage},
                                "margin_modes": {BTCUSD: mode}}},
        "exchanges": {"binance": {"rules": "binance-coinm", "margin_mode": "cross",
                                  "collateral": {"BTC": collateral_btc}}}})


def of(result, cls):
    return [e for e in result.events if isinstance(e, cls)]


@pytest.fixture(scope="module")
def liquidated(tmp_path_factory):
    """Short 400 contracts (40,000 USD) at 25x on 0.1 BTC: the 13:30 spike liquidates it."""
    return execute(config(0.1, 25), out=tmp_path_factory.mktemp("inverse"), run_id="short")


def test_the_coinm_rule_set_reproduces_binance_faq_examples():
    table = load_rules("binance-coinm").brackets_for("BTCUSD")
    # Binance COIN-M FAQ ceccfcfb4e3a45e3b48b0b1bb1a8ae46: 100 contracts at 25,000 -> 0.4 BTC, MM 0.0016 BTC
    assert margin.maintenance_margin(margin.contract_notional(100, 25_000, True, SIZE), table) == pytest.approx(0.0016)
    # "BTCUSD Level 5 = 50 BTC x (5% - 2.5%) + 0.56 BTC = 1.81 BTC"
    assert table.brackets[4].notional_floor == 50 and table.brackets[4].maintenance_amount == pytest.approx(1.81)


def test_fill_fee_and_funding_are_in_the_coin(liquidated):
    result = liquidated.result
    (fill,) = of(result, ev.OrderFilled)
    assert fill.quantity == -400 and fill.asset == "BTC" and fill.inverse
    feed = result.feed
    assert fill.price == feed.open[1, feed.column(BTCUSD)]  # next bar's open, no slippage configured
    (fee,) = of(result, ev.FeeCharged)
    assert fee.asset == "BTC" and fee.amount == pytest.approx(400 * SIZE / fill.price * 0.0005, rel=1e-12)
    funding = of(result, ev.FundingSettled)
    assert [e.ts for e in funding] == [1670918400_000000000]  # 08:00 (00:00 is before the position opens)
    (paid,) = funding
    # received = -quantity x size / mark x rate: a short receives when the rate is positive; here the
    # rate is negative, so the short pays, in BTC
    assert paid.rate < 0 and paid.amount < 0
    assert paid.amount == pytest.approx(-(-400) * SIZE / paid.price * paid.rate, rel=1e-12)


def test_the_short_is_liquidated_where_coin_equity_meets_coin_maintenance(liquidated):
    result = liquidated.result
    (fill,) = of(result, ev.OrderFilled)
    (fee,) = of(result, ev.FeeCharged)
    (paid,) = of(result, ev.FundingSettled)
    (liq,) = of(result, ev.PositionLiquidated)
    table = load_rules("binance-coinm").brackets_for("BTCUSD")
    wallet = 0.1 - fee.amount + paid.amount
    expected = margin.inverse_liquidation_price(-400, fill.price, wallet, table, SIZE)
    assert liq.trigger_price == pytest.approx(expected, rel=1e-12)
    # at that price: wallet + 400 x 100 x (1/entry - 1/P) (short) == 0.4 % x 400 x 100 / P
    pnl = -400 * SIZE * (1 / fill.price - 1 / liq.trigger_price)
    assert wallet + pnl == pytest.approx(0.004 * 400 * SIZE / liq.trigger_price, rel=1e-9)
    assert liq.realized_pnl == pytest.approx(pnl, rel=1e-12)
    assert 17_800 < liq.trigger_price < 18_000 and str(liq.ts).startswith("16709")  # the 13:30 spike
    feed = result.feed
    row = int((liq.ts - feed.ts[0]) // feed.bar_ns)
    assert feed.high[row, feed.column(BTCUSD)] >= liq.trigger_price > feed.open[row, feed.column(BTCUSD)]


def test_an_isolated_inverse_position_loses_exactly_its_margin_at_bankruptcy(tmp_path):
    completed = execute(config(0.5, 25, mode="isolated"), out=tmp_path, run_id="iso")
    result = completed.result
    (fill,) = of(result, ev.OrderFilled)
    margin_at_open = 400 * SIZE / fill.price / 25
    assert fill.margin_delta == pytest.approx(margin_at_open, rel=1e-12)
    (liq,) = of(result, ev.PositionLiquidated)
    (paid,) = of(result, ev.FundingSettled)
    assert paid.isolated
    position_margin = margin_at_open + paid.amount
    # binance-coinm fills isolated liquidations at the bankruptcy price: margin + PnL = 0
    assert liq.price == pytest.approx(1 / (1 / fill.price + position_margin / (-400 * SIZE)), rel=1e-12)
    assert liq.realized_pnl == pytest.approx(-position_margin, rel=1e-9)
    account = result.ledger.accounts["binance"]
    (fee,) = of(result, ev.FeeCharged)
    assert account.balances["BTC"] == pytest.approx(0.5 - fee.amount - margin_at_open, rel=1e-12)
    assert of(result, ev.InsuranceFundUsed) == []


def test_inverse_runs_verify_and_value_the_coin_in_usd(liquidated, tmp_path):
    assert verify_run(liquidated.path) == []
    summary = liquidated.summary["exchanges"]["binance"]
    result = liquidated.result
    feed = result.feed
    spot = feed.column("binance:BTC/BUSD")  # the exchange's BTC price: its spot market against a stablecoin
    last_price = feed.close[-1, spot]
    first_price = feed.mark_open[0, spot]  # the start snapshot's: the deposits are at the first bar's open
    assert first_price != feed.mark_close[0, spot]  # (not its close, where it was valued before it had a moment)
    balance = result.ledger.accounts["binance"].balances["BTC"]
    assert summary["final_equity"] == pytest.approx(balance * last_price, rel=1e-9)
    assert summary["deposits"] == pytest.approx(0.1 * first_price, rel=1e-12)  # the start snapshot's price
    (fee,) = of(result, ev.FeeCharged)
    assert summary["fees"] == pytest.approx(fee.amount * first_price, rel=2e-3)  # BTC fee valued in USD


def test_adding_to_an_inverse_position_averages_the_entry_harmonically():
    first = next_position(None, BTCUSD, 100, 20_000, "cross", "BTC", 0.0, inverse=True)
    both = next_position(first, BTCUSD, 100, 25_000, "cross", "BTC", 0.0, inverse=True)
    assert both.entry_price == pytest.approx(200 / (100 / 20_000 + 100 / 25_000))  # 22,222.22
    # the same coin value as the two fills: 200 x 100 / entry = 100 x 100 / 20,000 + 100 x 100 / 25,000
    assert 200 * SIZE / both.entry_price == pytest.approx(SIZE * 100 / 20_000 + SIZE * 100 / 25_000)
    linear = next_position(next_position(None, "x", 1, 20_000, "cross", "USDT", 0.0), "x", 1, 25_000, "cross",
                           "USDT", 0.0)
    assert linear.entry_price == 22_500
