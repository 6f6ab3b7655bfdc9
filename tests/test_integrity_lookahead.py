"""Issue 12, look-ahead: the margin check when an order fills at a bar's open values the account
with what is known then (the open), never with that bar's close."""

from __future__ import annotations

from helpers_feed import VenueSpec, make_catalog, make_feed, of_type, perp, rules, run
from xmargin.ledger import events as ev
from xmargin.ledger.commands import PlaceOrder

BTC = perp("binance", "BTC")


def _run(closes_after_fill):
    """1,000 USDT at 10x: buy 50 BTC at 100 (margin 500); one bar later buy 40 more (margin 400).
    The second order fills at the open of bar 2 (100); that bar then closes at `closes_after_fill`."""
    catalog = make_catalog({"binance": VenueSpec(rules(taker_fee=0.0005), collateral={"USDT": 1000.0})}, [BTC])
    close = [100.0, 100.0, closes_after_fill, closes_after_fill]
    feed = make_feed([BTC.key], close, open=[100.0, 100.0, 100.0, closes_after_fill])
    script = {0: [PlaceOrder.market(BTC.key, 50.0, leverage=10)], 1: [PlaceOrder.market(BTC.key, 40.0, leverage=10)]}
    result, _ = run(catalog, feed, script)
    return result


def test_the_fill_time_margin_check_does_not_see_the_bars_close():
    calm, crash = _run(100.0), _run(90.0)
    for result in (calm, crash):
        fills = of_type(result.events, ev.OrderFilled)
        assert [(f.quantity, f.price) for f in fills] == [(50.0, 100.0), (40.0, 100.0)]
        assert of_type(result.events, ev.OrderRejected) == []
    # the fill happened at the open, so what it knew is the same in both runs
    assert [f.ts for f in of_type(crash.events, ev.OrderFilled)] == [f.ts for f in of_type(calm.events, ev.OrderFilled)]


def _gap_run(gap_open):
    """As `_run`, bar 2 opening (and closing) at `gap_open`."""
    catalog = make_catalog({"binance": VenueSpec(rules(taker_fee=0.0005), collateral={"USDT": 1000.0})}, [BTC])
    feed = make_feed([BTC.key], [100.0, 100.0, gap_open, gap_open], open=[100.0, 100.0, gap_open, gap_open])
    script = {0: [PlaceOrder.market(BTC.key, 50.0, leverage=10)], 1: [PlaceOrder.market(BTC.key, 40.0, leverage=10)]}
    result, _ = run(catalog, feed, script)
    return result


def test_margin_that_is_short_at_the_open_is_still_refused():
    # at the open 90: equity 1000 - 2.5 (fee) - 500 = 497.5, the position's initial margin 450: free 47.5,
    # less than the new order's 360 + fee; maintenance (0.4 % of 4,500 = 18) is not reached
    result = _gap_run(90.0)
    rejected = of_type(result.events, ev.OrderRejected)
    assert len(rejected) == 1 and "insufficient margin at fill" in rejected[0].reason


def test_an_account_beyond_maintenance_at_the_open_is_liquidated_before_the_fill():
    # at the open 80 the equity is 1000 - 2.5 - 1000 < 0: the account is in liquidation there, so the
    # order never reaches the fill's margin check: it is cancelled first (tests/test_gap_liquidation.py)
    result = _gap_run(80.0)
    (cancelled,) = of_type(result.events, ev.OrderCancelled)
    assert cancelled.reason.startswith("liquidation at the open")
    assert len(of_type(result.events, ev.OrderFilled)) == 1 and of_type(result.events, ev.PositionLiquidated)
