"""Margin-mode scenarios on the real sample prices (datasets/sample: Binance USDⓈ-M 1h bars, marks
and funding), Binance rules (2024-10-24 brackets: BTC and ETH 0.4 % maintenance below 50k notional,
taker 0.05 %), the `hold` strategy (orders at the first bar close, filled at the next open plus
1 bp slippage). Pinned numbers were checked by hand as the comments show.
"""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from xmargin.ledger import events as ev
from xmargin.config import parse_config
from xmargin.ledger.apply import replay
from xmargin.sim.loop import Backtest, run_backtest
from helpers_feed import empty_ledger, of_type

ETH, BTC = "binance:ETH/USDT:USDT", "binance:BTC/USDT:USDT"
PAIR = {ETH: 20_000, BTC: -20_000}  # long ETH / short BTC, 20k notional each


def config(mode, start, end, collateral, leverage):
    return parse_config({
        "run": {"dataset": "datasets/sample", "strategy": "hold", "start": start, "end": end,
                "instruments": [ETH, BTC]},
        "strategy": {"params": {"positions": PAIR}},
        "exchanges": {"binance": {"rules": "binance-usdm", "margin_mode": mode, "collateral": {"USDT": collateral},
                                  "leverage": leverage}}})


def iso(ts):
    return str(np.datetime64(ts, "ns").astype("datetime64[m]"))


@pytest.fixture(scope="module")
def november():
    """Nov 1 - Dec 15 2024: BTC 70k -> 100k, ETH 2.5k -> 3.9k. 6000 USDT at 10x."""
    return {mode: run_backtest(config(mode, "2024-11-01", "2024-12-15", 6000, 10)) for mode in ("cross", "isolated")}


def test_hedge_survives_in_cross_but_loses_its_losing_leg_in_isolated(november):
    cross, isolated = november["cross"], november["isolated"]
    # both runs open the same book at the 2024-11-01 01:00 open: 7.922 ETH @ 2524.64, -0.284 BTC @ 70181.68
    for result in (cross, isolated):
        fills = of_type(result.events, ev.OrderFilled)
        assert [(f.instrument, round(f.quantity, 3), round(f.price, 2)) for f in fills] == [
            (ETH, 7.922, 2524.64), (BTC, -0.284, 70181.68)]
    # cross: the ETH gain carries the BTC loss; nothing is liquidated and both legs are still open
    assert of_type(cross.events, ev.PositionLiquidated) == []
    assert set(cross.ledger.accounts["binance"].positions) == {ETH, BTC}
    # isolated: the BTC short has only its own 10x margin (1993.16 at entry, 2039.67 after the funding
    # it received). Binance isolated LP, bracket 0.4 % / 0: (2039.67 + 0.284 x 70181.68) / (0.284 x 1.004)
    # = 77055.38, about 9.8 % above the entry: reached on the way up on 2024-11-08 in the 19:00 bar.
    (liq,) = of_type(isolated.events, ev.PositionLiquidated)
    assert (liq.instrument, iso(liq.ts), liq.isolated, liq.quantity) == (BTC, "2024-11-08T19:30", True,
                                                                         pytest.approx(0.284))
    assert liq.trigger_price == pytest.approx(77055.38, abs=0.01)
    # bankruptcy fill: entry + margin / |Q| = 70181.68 + 2039.67 / 0.284 = 77363.60; loss = the margin
    assert liq.price == pytest.approx(77363.60, abs=0.01)
    assert round(liq.realized_pnl, 2) == -2039.67 == -round(liq.margin_released, 2)
    assert list(isolated.ledger.accounts["binance"].positions) == [ETH]
    assert not of_type(isolated.events, ev.InsuranceFundUsed)
    for result in (cross, isolated):
        assert replay(empty_ledger(result.catalog), result.events) == result.ledger


def shocked(feed, key, row, factor):
    """The real feed with `key`'s prices and marks multiplied by `factor` from `row` on (a gap at
    that bar's open)."""
    column = feed.column(key)
    arrays = {}
    for name in ("open", "high", "low", "close", "mark_open", "mark_high", "mark_low", "mark_close"):
        values = getattr(feed, name).copy()
        values[row:, column] *= factor
        arrays[name] = values
    return attrs.evolve(feed, **arrays)


@pytest.fixture(scope="module")
def eth_crash():
    """Oct 1 - 25 2024 at 5x with 8100 USDT (room for two isolated margins of ~4000), ETH halved at
    the 2024-10-15 00:00 open (2628.87 -> 1314.51)."""
    out = {}
    for mode in ("cross", "isolated"):
        cfg = config(mode, "2024-10-01", "2024-10-25", 8100, 5)
        plain = Backtest(cfg)
        row = int(np.searchsorted(plain.feed.ts, np.datetime64("2024-10-15T00:00", "ns").astype(np.int64)))
        assert plain.feed.open[row, plain.feed.column(ETH)] == pytest.approx(2628.87)
        out[mode] = Backtest(cfg, feed=shocked(plain.feed, ETH, row, 0.5), catalog=plain.catalog).run()
    return out


def test_shock_to_one_leg_drains_the_cross_pool_but_stays_isolated(eth_crash):
    cross, isolated = eth_crash["cross"], eth_crash["isolated"]
    # same book: 7.639 ETH @ 2618.30, -0.314 BTC @ 63506.85
    # cross: the gap loses 7.639 x (1314.51 - 2618.30) = -9959.65 on ETH, more than the whole pool
    # (about 8061 USDT). Partial liquidation closes the worst leg first at the trigger (the open) and,
    # the pool still being below zero, the healthy BTC short too (-0.314 x (66064.90 - 63506.85) =
    # -803.23); the insurance fund covers the remaining 2701.76 and the wallet ends at 0.
    liqs = of_type(cross.events, ev.PositionLiquidated)
    assert [(e.instrument, iso(e.ts), e.policy, round(e.price, 2), round(e.realized_pnl, 2)) for e in liqs] == [
        (ETH, "2024-10-15T00:00", "partial", 1314.51, -9959.65),
        (BTC, "2024-10-15T00:00", "partial", 66064.90, -803.23)]
    (insurance,) = of_type(cross.events, ev.InsuranceFundUsed)
    assert round(insurance.amount, 2) == 2701.76
    account = cross.ledger.accounts["binance"]
    assert account.positions == {} and account.balance("USDT") == pytest.approx(0.0, abs=1e-6)
    # isolated: only ETH goes, at its bankruptcy price 2618.30 - 3945.35 / 7.639 = 2101.83, losing
    # exactly its margin (4000.24 at entry less the funding it paid); the BTC short keeps its margin
    # (3988.23 + funding received = 4085.05) and the wallet keeps what was never allocated (91.56).
    (liq,) = of_type(isolated.events, ev.PositionLiquidated)
    assert (liq.instrument, iso(liq.ts), liq.trigger_price) == (ETH, "2024-10-15T00:00", pytest.approx(1314.512375))
    assert round(liq.price, 2) == 2101.83 and round(liq.realized_pnl, 2) == -3945.35
    # the gap opened past that bankruptcy price: the fund took the position at 2101.83 and unwinds it at
    # the open, losing 7.639 x (2101.83 - 1314.51) = 6014.30: recorded, never credited to the trader
    (fund,) = of_type(isolated.events, ev.InsuranceFundUsed)
    assert not fund.credited and round(fund.amount, 2) == 6014.30
    assert fund.amount == pytest.approx(7.639 * (liq.price - liq.trigger_price), rel=1e-9)
    account = isolated.ledger.accounts["binance"]
    assert list(account.positions) == [BTC]
    assert round(account.positions[BTC].isolated_margin, 2) == 4085.05
    assert round(account.balance("USDT"), 2) == 91.56
    for result in (cross, isolated):
        assert replay(empty_ledger(result.catalog), result.events) == result.ledger
