"""A gap through the liquidation (and bankruptcy) price at a bar's open, with a resting order that
would fill there: the liquidation comes first, the order is cancelled, the loss beyond the
bankruptcy price is the insurance fund's. Numbers derived by hand in the comments.

What the venues do: liquidation triggers when the mark price reaches the liquidation price; the
engine then cancels the account's open orders and takes over the position; a loss beyond the
bankruptcy price is the insurance fund's ("If an account becomes bankrupt (negative wallet
balance), the Insurance Fund will balance the account back to 0": Binance Liquidation Protocol,
binance.com/en/support/faq/360033525271, mirrored at
docs.traderwagon.com/faq/futures-trading-introduction/liquidation-protocol, read 2026-11; Bybit
Liquidation Process, bybitglobal.com help article 000001098, 2024-01-24: "When Mark Price reaches
the liquidation price ... All active orders will be canceled and the position will be taken over
by the liquidation engine"; Binance Insurance Fund, binance.com/en/support/faq/360033525371,
2019-09-09). In the engine a fill at the open sees the account at the open's marks, so the open
is where such an account is liquidated (`xmargin.sim.loop.Backtest._liquidate_at_open`).

Set-up: exchange "bx" (USDT), cross, wallet 100, 10x, zero trading fees, no slippage, one flat
bracket (maintenance 1 % of notional at every notional). Bar 0 closes at 100: market buy 5 BTC,
filled at bar 1's open 100 (notional 500, initial margin 50). Bar 1 closes at 100: the strategy
places a reduce-only market sell of 5 (its close order), to fill at bar 2's open. Bar 2 opens at
70 (flat): equity 100 + 5 x (70 - 100) = -50, maintenance 0.01 x 350 = 3.5: beyond maintenance and
beyond the bankruptcy price 100 - 100 / 5 = 80 (liquidation price (100 - 500) / (0.05 - 5) = 80.81).
The old engine filled the close order at 70: realised -150, the wallet at -50 with no position.
"""

from __future__ import annotations

import numpy as np
import pytest

from xmargin.ledger import commands as cmd
from xmargin.ledger import events as ev
from xmargin.ledger.apply import replay
from helpers_feed import (HOUR, T0, VenueSpec, empty_ledger, flat_brackets, make_catalog, make_feed, of_type, perp,
                          rules, run)

A, B = "bx:BTC/USDT:USDT", "bx:ETH/USDT:USDT"
GAP = T0 + 2 * HOUR  # bar 2's open


def catalog_for(mode="cross", **rule_overrides):
    rs = rules(maker_fee=0.0, taker_fee=0.0, **rule_overrides)
    return make_catalog({"bx": VenueSpec(rs, mode, {"USDT": 100.0}, 10.0)}, [perp("bx", "BTC"), perp("bx", "ETH")],
                        tables={A: flat_brackets(0.01), B: flat_brackets(0.01)})


def gap_run(catalog, gap_open: float, intrabar="path", extra=(), **config):
    """BTC flat at 100 for bars 0-1, flat at `gap_open` from bar 2; ETH flat at 100."""
    flat = np.array([[100.0, 100.0], [100.0, 100.0], [gap_open, 100.0], [gap_open, 100.0]])
    feed = make_feed((A, B), flat, open=flat)  # bar 1 closes at 100, bar 2 opens at the gap
    script = {0: [cmd.PlaceOrder.market(A, 5.0)], 1: [cmd.PlaceOrder.market(A, -5.0, reduce_only=True), *extra]}
    return run(catalog, feed, script, intrabar=intrabar, **config)


@pytest.mark.parametrize("intrabar", ["path", "worst-case", "close"])
def test_gap_through_bankruptcy_cancels_the_close_order_and_liquidates_at_the_open(intrabar):
    catalog = catalog_for(policy="full", fill="bankruptcy")
    result, _ = gap_run(catalog, 70.0, intrabar)
    at_gap = [e for e in result.events if e.ts == GAP and not isinstance(e, ev.OrderAccepted)]
    # the close order (id 2) is cancelled first, nothing fills at the gapped open
    cancelled, liquidated, fund = at_gap[:3]
    assert isinstance(cancelled, ev.OrderCancelled) and (cancelled.order_id, cancelled.instrument) == (2, A)
    assert cancelled.reason == ("liquidation at the open 2024-10-01 02:00:00 (cross:USDT equity at or below zero): "
                                "open orders are cancelled first")
    assert not [e for e in of_type(result.events, ev.OrderFilled) if e.ts >= GAP]
    # full close at the bankruptcy price: r = equity / notional = -50 / 350, fill 70 x (1 + 50/350) = 80
    assert isinstance(liquidated, ev.PositionLiquidated)
    assert (liquidated.quantity, liquidated.trigger_price, liquidated.policy) == (-5.0, 70.0, "full")
    assert liquidated.price == pytest.approx(80.0, rel=1e-12)
    assert liquidated.realized_pnl == pytest.approx(-100.0, rel=1e-12)  # exactly the wallet
    assert liquidated.fee == 0.0
    # the fund unwinds at the market (70) and loses the rest, 50: recorded, not credited to the account
    assert isinstance(fund, ev.InsuranceFundUsed)
    assert (fund.amount, fund.credited) == (pytest.approx(50.0, rel=1e-12), False)
    account = result.ledger.accounts["bx"]
    assert account.positions == {} and account.orders == {}
    assert account.balance("USDT") == pytest.approx(0.0, abs=1e-9)
    assert replay(empty_ledger(catalog), result.events) == result.ledger


def test_gap_with_trigger_fill_and_fee_the_fund_pays_the_shortfall():
    # fill at the trigger (the open 70): realised 5 x (70 - 100) = -150 against a wallet of 100; the fee
    # (1 % of 350) is capped by what is left (nothing); the fund credits the 50 the wallet would owe
    catalog = catalog_for(policy="full", fill="trigger", fee_rate=0.01)
    result, _ = gap_run(catalog, 70.0, "close")
    (liquidated,) = of_type(result.events, ev.PositionLiquidated)
    (fund,) = of_type(result.events, ev.InsuranceFundUsed)
    assert (liquidated.ts, liquidated.price, liquidated.realized_pnl, liquidated.fee) == (GAP, 70.0, -150.0, 0.0)
    assert (fund.ts, fund.amount, fund.credited) == (GAP, pytest.approx(50.0, rel=1e-12), True)
    account = result.ledger.accounts["bx"]
    assert account.balance("USDT") == pytest.approx(0.0, abs=1e-9)
    assert account.insurance_used == {"USDT": pytest.approx(50.0, rel=1e-12)}


def test_an_isolated_liquidation_at_the_open_keeps_the_orders_on_other_instruments():
    # isolated 5 BTC at 10x: margin 50 leaves the wallet (50 left); the gap takes the position's margin
    # (bankruptcy 90: 100 - 50 / 5) and cancels the BTC close order; the ETH buy (1 at 100, IM 10 of the
    # 50 free) is another instrument's order: it fills at the open as before
    catalog = catalog_for("isolated", policy="full", fill="bankruptcy")
    result, _ = gap_run(catalog, 70.0, extra=[cmd.PlaceOrder.market(B, 1.0)])
    (cancelled,) = of_type(result.events, ev.OrderCancelled)
    assert (cancelled.ts, cancelled.instrument, cancelled.order_id) == (GAP, A, 2)
    (liquidated,) = of_type(result.events, ev.PositionLiquidated)
    assert (liquidated.ts, liquidated.policy, liquidated.price) == (GAP, "isolated", pytest.approx(90.0, rel=1e-12))
    (eth,) = [e for e in of_type(result.events, ev.OrderFilled) if e.ts == GAP]
    assert (eth.instrument, eth.quantity, eth.price) == (B, 1.0, 100.0)
    account = result.ledger.accounts["bx"]
    # lost exactly the BTC position's isolated margin (100 - 50 = 50 in the wallet), then 10 went to ETH's margin
    assert account.balance("USDT") == pytest.approx(40.0, rel=1e-12)
    assert account.wallet_total("USDT") == pytest.approx(50.0, rel=1e-12)
    assert set(account.positions) == {B}


def test_an_account_not_in_breach_at_the_open_fills_as_before():
    # a gap to 95: equity 100 - 25 = 75, maintenance 0.01 x 475 = 4.75: the close order fills at 95
    catalog = catalog_for(policy="full", fill="bankruptcy")
    result, _ = gap_run(catalog, 95.0)
    assert not of_type(result.events, ev.OrderCancelled) and not of_type(result.events, ev.PositionLiquidated)
    closing = of_type(result.events, ev.OrderFilled)[-1]
    assert (closing.ts, closing.quantity, closing.price, closing.realized_pnl) == (GAP, -5.0, 95.0, -25.0)
    assert result.ledger.accounts["bx"].balance("USDT") == pytest.approx(75.0, rel=1e-12)


def test_a_liquidation_at_the_open_stops_the_run_with_on_liquidation_stop():
    catalog = catalog_for(policy="full", fill="bankruptcy")
    result, strategy = gap_run(catalog, 70.0, on_liquidation="stop")
    stop = result.events[-1]
    assert isinstance(stop, ev.RunStopped) and stop.ts == GAP and result.ledger.stopped
    assert [type(e) for e in result.events if e.ts == GAP and not isinstance(e, ev.OrderAccepted)] == [
        ev.OrderCancelled, ev.PositionLiquidated, ev.InsuranceFundUsed, ev.MarginWarningRaised, ev.RunStopped]
    assert max(row for row, _, _ in strategy.woken) == 1  # never woken at or after the gap
    assert replay(empty_ledger(catalog), result.events) == result.ledger
