"""A liquidation cancels the account's open orders first, wherever it happens (inside a bar too, not
only at a gapped open): a resting order must not fill after the risk engine has taken the position
over, nor open a new position on an account just liquidated. A cross pool's or a whole account's
liquidation cancels every open order of the account, an isolated position's only the orders on its
instrument (`xmargin.margin.liquidation.cancelled_orders`).

Venues: Binance "the system will first cancel all open orders" (Liquidation Protocol,
binance.com/en/support/faq/360033525271, read 2026-11 through its mirror at
docs.traderwagon.com/faq/futures-trading-introduction/liquidation-protocol); Bybit "All active orders
will be canceled and the position will be taken over by the liquidation engine" (Liquidation
Process, bybitglobal.com help article 000001098, 2024-01-24).

Set-up (by hand): "bx" (USDT), wallet 100, 10x, no fees, maintenance 1 % of notional. Bar 0: market
buy 5 BTC (fills at bar 1's open, 100) and a limit buy far below (1 BTC at 60). Bar 1 dips to 75:
the cross pool's liquidation price is (100 - 500) / (0.05 - 5) = 80.81, reached inside the bar. Bar 2
trades down to 55, through the limit: before, the order filled there at 60 and opened a new long on
the account just liquidated.
"""

from __future__ import annotations

import numpy as np

from xmargin.ledger import commands as cmd
from xmargin.ledger import events as ev
from xmargin.ledger.apply import replay
from helpers_feed import HOUR, T0, VenueSpec, empty_ledger, flat_brackets, make_catalog, make_feed, of_type, perp, rules, run

A, B = "bx:BTC/USDT:USDT", "bx:ETH/USDT:USDT"


def _run(mode: str, script_extra=()):
    catalog = make_catalog({"bx": VenueSpec(rules(maker_fee=0.0, taker_fee=0.0, policy="full"), mode, {"USDT": 100.0},
                                            10.0)},
                           [perp("bx", "BTC"), perp("bx", "ETH")], tables={A: flat_brackets(0.01), B: flat_brackets(0.01)})
    close = np.array([[100.0, 100.0], [95.0, 100.0], [58.0, 86.0], [58.0, 86.0]])
    open_ = np.array([[100.0, 100.0], [100.0, 100.0], [95.0, 100.0], [58.0, 86.0]])
    low = np.array([[100.0, 100.0], [75.0, 100.0], [55.0, 85.0], [58.0, 86.0]])
    high = np.maximum(open_, close)
    feed = make_feed((A, B), close, open=open_, high=high, low=low)
    script = {0: [cmd.PlaceOrder.market(A, 5.0), cmd.PlaceOrder.limit(A, 1.0, 60.0), *script_extra]}
    result, _ = run(catalog, feed, script, intrabar="path")
    return catalog, result


def test_a_cross_liquidation_inside_a_bar_cancels_the_resting_orders_first():
    catalog, result = _run("cross")
    (liquidated,) = of_type(result.events, ev.PositionLiquidated)
    assert T0 + HOUR < liquidated.ts < T0 + 2 * HOUR  # inside bar 1
    assert liquidated.quantity == -5.0
    (cancelled,) = of_type(result.events, ev.OrderCancelled)
    assert (cancelled.ts, cancelled.order_id, cancelled.instrument) == (liquidated.ts, 2, A)
    assert cancelled.reason == "liquidation: open orders are cancelled first"
    assert result.events.index(cancelled) < result.events.index(liquidated)
    # nothing fills after the liquidation: the limit at 60 no longer rests when bar 2 trades at 55
    assert [f.ts for f in of_type(result.events, ev.OrderFilled)] == [T0 + HOUR]
    account = result.ledger.accounts["bx"]
    assert account.positions == {} and account.orders == {}
    assert replay(empty_ledger(catalog), result.events) == result.ledger


def test_an_isolated_liquidation_cancels_only_its_instruments_orders():
    # isolated: the BTC position holds 50 of margin (liquidation price (100 - 50 / 5) / 0.99 = 90.9, inside bar 1);
    # the ETH limit buy at 90 is another position's order: it stays and fills at bar 2 (low 85)
    catalog, result = _run("isolated", [cmd.PlaceOrder.limit(B, 0.5, 90.0)])
    (liquidated,) = of_type(result.events, ev.PositionLiquidated)
    assert liquidated.instrument == A and liquidated.isolated and T0 + HOUR < liquidated.ts < T0 + 2 * HOUR
    (cancelled,) = of_type(result.events, ev.OrderCancelled)
    assert (cancelled.order_id, cancelled.instrument, cancelled.ts) == (2, A, liquidated.ts)
    fills = of_type(result.events, ev.OrderFilled)
    assert [(f.instrument, f.ts, f.price) for f in fills] == [(A, T0 + HOUR, 100.0), (B, T0 + 2 * HOUR, 90.0)]
    account = result.ledger.accounts["bx"]
    assert set(account.positions) == {B} and account.orders == {}
    assert replay(empty_ledger(catalog), result.events) == result.ledger


def test_two_units_liquidated_at_one_moment_cancel_each_order_once():
    # a cross account with an isolated BTC position and a cross ETH position, both through their
    # liquidation prices at the same path point (bar 1 dips to 10): the pool's liquidation cancels every
    # order, the isolated one's its own; each order is cancelled once, before either position closes
    catalog = make_catalog({"bx": VenueSpec(rules(maker_fee=0.0, taker_fee=0.0, policy="full"), "cross", {"USDT": 100.0},
                                            10.0)},
                           [perp("bx", "BTC"), perp("bx", "ETH")], tables={A: flat_brackets(0.01), B: flat_brackets(0.01)})
    close = np.array([[100.0, 100.0], [95.0, 95.0], [95.0, 95.0]])
    open_ = np.array([[100.0, 100.0], [100.0, 100.0], [95.0, 95.0]])
    low = np.array([[100.0, 100.0], [10.0, 10.0], [95.0, 95.0]])
    feed = make_feed((A, B), close, open=open_, high=np.maximum(open_, close), low=low)
    script = {0: [cmd.PlaceOrder.market(A, 2.0, margin_mode="isolated"), cmd.PlaceOrder.market(B, 2.0),
                  cmd.PlaceOrder.limit(A, 1.0, 5.0), cmd.PlaceOrder.limit(B, 1.0, 5.0)]}
    result, _ = run(catalog, feed, script, intrabar="path")
    liquidated = of_type(result.events, ev.PositionLiquidated)
    assert {e.instrument for e in liquidated} == {A, B} and len({e.ts for e in liquidated}) == 1
    cancelled = of_type(result.events, ev.OrderCancelled)
    assert sorted(e.order_id for e in cancelled) == [3, 4]  # once each
    first_close = min(result.events.index(e) for e in liquidated)
    assert all(result.events.index(e) < first_close for e in cancelled)
    assert result.ledger.accounts["bx"].orders == {}
    assert replay(empty_ledger(catalog), result.events) == result.ledger
