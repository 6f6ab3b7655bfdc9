"""Unit tests of the event-sourced ledger (`xmargin.ledger.apply.apply`), `xmargin.ledger.decide` and
`xmargin.sim.execution`, with hand-derived numbers.

Conventions: exchange "bx" with USDT collateral, instrument "bx:BTC/USDT:USDT" (lot 0.001, minimum
notional 100 USDT), one flat bracket (MMR 1 %, max leverage 20x), taker fee 0.05 %, maker 0.02 %.
"""

from __future__ import annotations

import pytest

from xmargin.ledger import commands as cmd
from xmargin.ledger import events as ev
from xmargin.ledger.decide import decide
from xmargin.sim.execution import fill_events, fill_price, funding_events
from xmargin.ledger.apply import apply, next_position, replay
from xmargin.ledger.state import Ledger, Order, Position
from helpers_feed import VenueSpec, brackets, context, make_catalog, make_feed, perp, rules

BTC = "bx:BTC/USDT:USDT"
ETH = "bx:ETH/USDT:USDT"
TS = 1_000


def ledger_with(balance=1000.0, mode="cross"):
    led = Ledger.create({"bx": mode, "by": "cross"})
    return apply(led, ev.CollateralDeposited(0, "bx", "USDT", balance))


def fill(quantity, price, realized=0.0, margin_delta=0.0, instrument=BTC, order_id=1):
    return ev.OrderFilled(TS, "bx", instrument, order_id, quantity, price, "taker", realized, margin_delta, "USDT",
                          "perp", "")


# ------------------------------------------------------------------------------ apply: fills
def test_fill_opens_position_at_fill_price_and_books_nothing_in_cross():
    led = apply(ledger_with(), fill(0.5, 60_000.0))
    p = led.accounts["bx"].positions[BTC]
    assert (p.quantity, p.entry_price, p.margin_mode, p.isolated_margin) == (0.5, 60_000.0, "cross", 0.0)
    assert led.accounts["bx"].balance("USDT") == 1000.0


def test_fill_increase_averages_entry():
    # 0.5 @ 60 000 then 0.25 @ 63 000: entry = (0.5 x 60 000 + 0.25 x 63 000) / 0.75 = 61 000
    led = apply(apply(ledger_with(), fill(0.5, 60_000.0)), fill(0.25, 63_000.0, order_id=2))
    p = led.accounts["bx"].positions[BTC]
    assert p.quantity == 0.75
    assert p.entry_price == pytest.approx(61_000.0, rel=1e-12)


def test_fill_reduce_keeps_entry_and_credits_realized_pnl():
    led = apply(ledger_with(), fill(1.0, 100.0))
    led = apply(led, fill(-0.4, 110.0, realized=0.4 * (110.0 - 100.0), order_id=2))
    p = led.accounts["bx"].positions[BTC]
    assert p.quantity == pytest.approx(0.6)
    assert p.entry_price == 100.0
    assert led.accounts["bx"].balance("USDT") == pytest.approx(1004.0)


def test_fill_flip_takes_the_fill_price_as_entry():
    # long 1 @ 100 sold 3 @ 90: closes 1 (realised -10) and opens short 2 @ 90
    led = apply(apply(ledger_with(), fill(1.0, 100.0)), fill(-3.0, 90.0, realized=-10.0, order_id=2))
    p = led.accounts["bx"].positions[BTC]
    assert (p.quantity, p.entry_price) == (-2.0, 90.0)
    assert led.accounts["bx"].balance("USDT") == 990.0


def test_fill_close_removes_position():
    led = apply(apply(ledger_with(), fill(-2.0, 50.0)), fill(2.0, 45.0, realized=10.0, order_id=2))
    assert BTC not in led.accounts["bx"].positions
    assert led.accounts["bx"].balance("USDT") == 1010.0


def test_isolated_fill_moves_margin_between_wallet_and_position():
    led = apply(ledger_with(mode="isolated"), fill(2.0, 100.0, margin_delta=20.0))
    account = led.accounts["bx"]
    assert account.positions[BTC].isolated_margin == 20.0
    assert account.positions[BTC].margin_mode == "isolated"
    assert account.balance("USDT") == 980.0
    assert account.wallet_total("USDT") == 1000.0
    # half closed at 110: realised +10 and half the margin (10) come back
    led = apply(led, fill(-1.0, 110.0, realized=10.0, margin_delta=-10.0, order_id=2))
    account = led.accounts["bx"]
    assert account.positions[BTC].isolated_margin == 10.0
    assert account.balance("USDT") == 1000.0
    assert account.wallet_total("USDT") == 1010.0


def test_next_position_unit_cases():
    assert next_position(None, BTC, 1.0, 5.0, "cross", "USDT", 0.0) == Position(BTC, 1.0, 5.0, "cross", 0.0, "USDT")
    p = Position(BTC, -2.0, 10.0, "isolated", 4.0, "USDT")
    assert next_position(p, BTC, 2.0, 7.0, "cross", "USDT", -4.0) is None
    q = next_position(p, BTC, -2.0, 13.0, "cross", "USDT", 4.0)
    assert (q.quantity, q.entry_price, q.margin_mode, q.isolated_margin) == (-4.0, 11.5, "isolated", 8.0)


def test_spot_fill_moves_base_and_quote():
    led = apply(ledger_with(), ev.OrderFilled(TS, "bx", "bx:BTC/USDT", 1, 0.01, 50_000.0, "taker", 0.0, 0.0, "USDT",
                                              "spot", ""))
    assert led.accounts["bx"].balances == {"USDT": 500.0, "BTC": 0.01}


# ------------------------------------------------------------------------------ apply: money events
def test_fee_debits_wallet():
    led = apply(ledger_with(), ev.FeeCharged(TS, "bx", BTC, 1, "USDT", 3.25))
    assert led.accounts["bx"].balance("USDT") == 996.75


def test_funding_cross_moves_the_wallet():
    # long 2 @ mark 100, rate +0.01 %: pays 2 x 100 x 0.0001 = 0.02
    led = apply(ledger_with(), fill(2.0, 100.0))
    led = apply(led, ev.FundingSettled(TS, "bx", BTC, "USDT", 2.0, 100.0, 0.0001, -0.02, False))
    assert led.accounts["bx"].balance("USDT") == pytest.approx(999.98, abs=1e-12)


def test_funding_isolated_moves_the_position_margin_not_the_wallet():
    led = apply(ledger_with(mode="isolated"), fill(-2.0, 100.0, margin_delta=20.0))
    led = apply(led, ev.FundingSettled(TS, "bx", BTC, "USDT", -2.0, 100.0, 0.001, 0.2, True))
    account = led.accounts["bx"]
    assert account.balance("USDT") == 980.0
    assert account.positions[BTC].isolated_margin == pytest.approx(20.2)
    assert account.wallet_total("USDT") == pytest.approx(1000.2)


def test_isolated_margin_adjust_both_ways():
    led = apply(ledger_with(mode="isolated"), fill(2.0, 100.0, margin_delta=20.0))
    led = apply(led, ev.IsolatedMarginAdjusted(TS, "bx", BTC, "USDT", 15.0))
    assert led.accounts["bx"].positions[BTC].isolated_margin == 35.0
    assert led.accounts["bx"].balance("USDT") == 965.0
    led = apply(led, ev.IsolatedMarginAdjusted(TS, "bx", BTC, "USDT", -5.0))
    assert led.accounts["bx"].positions[BTC].isolated_margin == 30.0
    assert led.accounts["bx"].balance("USDT") == 970.0


def test_liquidation_isolated_returns_released_margin_plus_pnl_minus_fee():
    # isolated long 2 @ 100 with 20 margin, liquidated at bankruptcy 90: realised -20, all margin released
    led = apply(ledger_with(mode="isolated"), fill(2.0, 100.0, margin_delta=20.0))
    led = apply(led, ev.PositionLiquidated(TS, "bx", BTC, -2.0, 90.0, 90.9, -20.0, 0.0, 20.0, "USDT", True,
                                           "isolated"))
    account = led.accounts["bx"]
    assert BTC not in account.positions
    assert account.balance("USDT") == 980.0 and account.wallet_total("USDT") == 980.0


def test_partial_liquidation_reduces_quantity_keeps_entry():
    led = apply(ledger_with(), fill(-4.0, 100.0))
    led = apply(led, ev.PositionLiquidated(TS, "bx", BTC, 1.5, 120.0, 120.0, -30.0, 0.6, 0.0, "USDT", False,
                                           "partial"))
    p = led.accounts["bx"].positions[BTC]
    assert (p.quantity, p.entry_price) == (-2.5, 100.0)
    assert led.accounts["bx"].balance("USDT") == pytest.approx(1000.0 - 30.0 - 0.6)


def test_insurance_fund_credits_wallet_and_is_recorded():
    led = apply(ledger_with(balance=0.0), ev.InsuranceFundUsed(TS, "bx", BTC, "USDT", 7.5))
    led = apply(led, ev.InsuranceFundUsed(TS, "bx", BTC, "USDT", 2.5))
    assert led.accounts["bx"].balance("USDT") == 10.0
    assert led.accounts["bx"].insurance_used == {"USDT": 10.0}


def test_transfer_sent_then_arrived():
    led = ledger_with()
    led = apply(led, ev.TransferSent(TS, "bx", 1, "by", "USDT", 300.0, 1.0, TS + 5))
    assert led.accounts["bx"].balance("USDT") == 699.0
    assert led.in_flight[1].amount == 300.0 and led.next_transfer_id == 2
    assert led.accounts["by"].balance("USDT") == 0.0  # in flight it backs nothing
    led = apply(led, ev.TransferArrived(TS + 5, "by", 1, "bx", "USDT", 300.0))
    assert led.in_flight == {} and led.accounts["by"].balance("USDT") == 300.0


def test_order_bookkeeping_and_warning_and_stop():
    led = ledger_with()
    led = apply(led, ev.OrderAccepted(TS, "bx", BTC, 7, 0.5, "market", float("nan"), False, "cross", 5.0, "t"))
    order = led.accounts["bx"].orders[7]
    assert isinstance(order, Order) and order.leverage == 5.0 and led.next_order_id == 8
    led2 = apply(led, ev.OrderCancelled(TS, "bx", BTC, 7, "x"))
    assert led2.accounts["bx"].orders == {}
    led3 = apply(led, ev.OrderRejected(TS, "bx", BTC, 9, 0.5, "no", "t"))
    assert led3.next_order_id == 10 and 7 in led3.accounts["bx"].orders
    led4 = apply(led, ev.MarginWarningRaised(TS, "bx", "cross:USDT", 2, 0.9, 0.95))
    assert led4.accounts["bx"].warning_levels == {"cross:USDT": 2}
    led5 = apply(apply(led, ev.LeverageChanged(TS, "bx", BTC, 3.0)), ev.MarginModeChanged(TS, "bx", BTC, "isolated"))
    assert led5.accounts["bx"].leverage == {BTC: 3.0} and led5.accounts["bx"].mode_for(BTC) == "isolated"
    assert apply(led, ev.RunStopped(TS, "bx", "x")).stopped is True


def test_apply_is_pure_and_replay_folds():
    led = ledger_with()
    events = [fill(1.0, 100.0), ev.FeeCharged(TS, "bx", BTC, 1, "USDT", 0.05), fill(-1.0, 101.0, 1.0, order_id=2)]
    after = replay(led, events)
    assert led.accounts["bx"].balance("USDT") == 1000.0 and led.accounts["bx"].positions == {}
    assert after.accounts["bx"].balance("USDT") == pytest.approx(1000.95)
    assert after == replay(led, events)


# ------------------------------------------------------------------------------ decide / execution
@pytest.fixture()
def setup():
    rs = rules(taker_fee=0.0005, maker_fee=0.0002)
    table = brackets((0, 10_000, 20, 0.01, 0.0), (10_000, None, 5, 0.05, 400.0))
    catalog = make_catalog({"bx": VenueSpec(rs, "cross", {"USDT": 1000.0}, leverage=10.0),
                            "by": VenueSpec(rs, "isolated", {"USDT": 1000.0}, leverage=10.0)},
                           [perp("bx", "BTC", lot_size=0.001, min_notional=100.0),
                            perp("bx", "ETH", lot_size=0.01, min_notional=10.0),
                            perp("by", "BTC", lot_size=0.001, min_notional=100.0)],
                           tables={BTC: table, ETH: table, "by:BTC/USDT:USDT": table})
    feed = make_feed(catalog.tradables, [[1000.0, 100.0, 1000.0], [1010.0, 99.0, 1010.0]])
    led = Ledger.create({"bx": "cross", "by": "isolated"})
    led = apply(apply(led, ev.CollateralDeposited(0, "bx", "USDT", 1000.0)),
                ev.CollateralDeposited(0, "by", "USDT", 1000.0))
    return catalog, feed, context(catalog, feed, 0), led


def reason_of(events):
    assert len(events) == 1 and isinstance(events[0], ev.OrderRejected), events
    return events[0].reason


def test_decide_accepts_and_ids(setup):
    catalog, feed, ctx, led = setup
    out = decide(led, ctx, cmd.PlaceOrder.market(BTC, 0.5), TS)
    assert out == [ev.OrderAccepted(TS, "bx", BTC, 1, 0.5, "market", out[0].limit_price, False, "cross", 10.0, "")]


@pytest.mark.parametrize("command, fragment", [
    (cmd.PlaceOrder.market(BTC, 0.0005), "not a multiple of the lot size 0.001"),
    (cmd.PlaceOrder.market(BTC, 0.05), "notional 50.00 USDT is below the minimum 100.0"),
    (cmd.PlaceOrder.market(BTC, 0.1, reduce_only=True), "reduce-only order 0.1 would increase the position 0.0"),
    # 9 BTC x 1000 = 9 000 notional: first bracket (max 20x); 25x is above it
    (cmd.PlaceOrder.market(BTC, 9.0, leverage=25), "leverage 25 exceeds the maximum 20 for a notional of 9000.00"),
    # 12 BTC = 12 000 notional: second bracket (max 5x); 10x above it
    (cmd.PlaceOrder.market(BTC, 12.0, leverage=10), "leverage 10 exceeds the maximum 5 for a notional of 12000.00"),
    # 9.5 BTC at 10x: IM 950 + fee 9 500 x 0.0005 = 4.75 -> 954.75 <= 1000 accepted, 9.6: 960 + 4.8 ok,
    # 10 BTC (bracket 2 caps the account default 10x at 5x): 2 000 + 5 > 1000
    (cmd.PlaceOrder.market(BTC, 10.0), "insufficient margin: the order needs 2005.00 USDT"),
    (cmd.PlaceOrder.market("bx:DOGE/USDT:USDT", 1.0), "unknown instrument"),
    (cmd.PlaceOrder.limit(BTC, 0.5, -1.0), "limit price -1.0 must be a positive number"),
])
def test_decide_rejections_are_events_with_reasons(setup, command, fragment):
    catalog, feed, ctx, led = setup
    assert fragment in reason_of(decide(led, ctx, command, TS))


def test_decide_margin_boundary(setup):
    catalog, feed, ctx, led = setup
    # 9.9 BTC at 10x: 990 + 4.95 = 994.95 fits in 1000; at 20x also fine; 9.99 at 10x: 999 + 4.995 > 1000
    assert isinstance(decide(led, ctx, cmd.PlaceOrder.market(BTC, 9.9), TS)[-1], ev.OrderAccepted)
    reason = reason_of(decide(led, ctx, cmd.PlaceOrder.market(BTC, 9.99), TS))
    assert "needs 1004.00 USDT" in reason and "free collateral is 1000.00" in reason


def test_decide_leverage_and_mode_events(setup):
    catalog, feed, ctx, led = setup
    out = decide(led, ctx, cmd.PlaceOrder.market(BTC, 0.5, leverage=4, margin_mode="isolated"), TS)
    assert [type(e) for e in out] == [ev.MarginModeChanged, ev.LeverageChanged, ev.OrderAccepted]
    assert out[-1].margin_mode == "isolated" and out[-1].leverage == 4.0


def test_decide_reduce_only_and_min_notional_allowed_when_closing(setup):
    catalog, feed, ctx, led = setup
    led = apply(led, fill(0.05, 1000.0))
    # 0.05 BTC x 1000 = 50 < 100 minimum, but closing the whole position is allowed
    out = decide(led, ctx, cmd.PlaceOrder.market(BTC, -0.05), TS)
    assert isinstance(out[-1], ev.OrderAccepted)
    out = decide(led, ctx, cmd.PlaceOrder.market(BTC, -0.03, reduce_only=True), TS)
    assert isinstance(out[-1], ev.OrderAccepted)


def test_decide_cancel_and_unknown_cancel(setup):
    catalog, feed, ctx, led = setup
    led = replay(led, decide(led, ctx, cmd.PlaceOrder.market(BTC, 0.5), TS))
    assert decide(led, ctx, cmd.CancelOrder("bx", 1), TS) == [ev.OrderCancelled(TS, "bx", BTC, 1, "cancelled by strategy")]
    assert "no open order 5" in reason_of(decide(led, ctx, cmd.CancelOrder("bx", 5), TS))


def test_decide_adjust_margin_limits(setup):
    catalog, feed, ctx, led = setup
    # isolated long 1 BTC @ 1000 at 10x on "by": margin 100, mark 1000 -> keep 100, nothing removable
    led = apply(led, ev.OrderFilled(TS, "by", "by:BTC/USDT:USDT", 1, 1.0, 1000.0, "taker", 0.0, 100.0, "USDT",
                                    "perp", ""))
    out = decide(led, ctx, cmd.AdjustIsolatedMargin("by:BTC/USDT:USDT", -1.0), TS)
    assert "only 0.00 can leave" in reason_of(out)
    out = decide(led, ctx, cmd.AdjustIsolatedMargin("by:BTC/USDT:USDT", 50.0), TS)
    assert out == [ev.IsolatedMarginAdjusted(TS, "by", "by:BTC/USDT:USDT", "USDT", 50.0)]
    out = decide(led, ctx, cmd.AdjustIsolatedMargin("by:BTC/USDT:USDT", 950.0), TS)
    assert "free collateral is 900.00" in reason_of(out)
    assert "no isolated position" in reason_of(decide(led, ctx, cmd.AdjustIsolatedMargin(BTC, 5.0), TS))


def test_decide_transfer(setup):
    catalog, feed, ctx, led = setup
    out = decide(led, ctx, cmd.Transfer("USDT", 500.0, "bx", "by"), TS)
    # default USDT withdrawal fee 1.0, default delay 30 minutes
    assert out == [ev.TransferSent(TS, "bx", 1, "by", "USDT", 500.0, 1.0, TS + 30 * 60 * 10**9)]
    out = decide(led, ctx, cmd.Transfer("USDT", 999.5, "bx", "by"), TS)
    assert isinstance(out[0], ev.TransferRejected) and "exceeds the free collateral 1000" in out[0].reason


def test_fill_price_market_and_limit():
    order = Order(1, BTC, 1.0, "market", float("nan"), False, "cross", 10.0, 0, "")
    assert fill_price(order, 100.0, 110.0, 90.0, 0.001) == (pytest.approx(100.1), "taker")
    sell = Order(1, BTC, -1.0, "market", float("nan"), False, "cross", 10.0, 0, "")
    assert fill_price(sell, 100.0, 110.0, 90.0, 0.001) == (pytest.approx(99.9), "taker")
    buy_limit = Order(1, BTC, 1.0, "limit", 95.0, False, "cross", 10.0, 0, "")
    assert fill_price(buy_limit, 100.0, 110.0, 90.0, 0.0) == (95.0, "maker")
    assert fill_price(buy_limit, 94.0, 110.0, 90.0, 0.0) == (94.0, "taker")
    assert fill_price(buy_limit, 100.0, 110.0, 96.0, 0.0) is None
    sell_limit = Order(1, BTC, -1.0, "limit", 105.0, False, "cross", 10.0, 0, "")
    assert fill_price(sell_limit, 100.0, 110.0, 90.0, 0.0) == (105.0, "maker")


def test_fill_events_fee_realized_and_isolated_margin(setup):
    catalog, feed, ctx, led = setup
    key = "by:BTC/USDT:USDT"
    order = Order(1, key, 2.0, "market", float("nan"), False, "isolated", 4.0, 0, "")
    out = fill_events(led, ctx, order, 1000.0, "taker", TS)
    # margin = 2 x 1000 / 4 = 500, fee = 2 000 x 0.0005 = 1
    assert out == [ev.OrderFilled(TS, "by", key, 1, 2.0, 1000.0, "taker", 0.0, 500.0, "USDT", "perp", ""),
                   ev.FeeCharged(TS, "by", key, 1, "USDT", 1.0)]
    led = replay(led, out)
    close = Order(2, key, -3.0, "market", float("nan"), True, "isolated", 4.0, 0, "")
    out = fill_events(led, ctx, close, 1100.0, "maker", TS)
    # reduce-only clipped to -2: realised 2 x 100 = 200, margin released 500, maker fee 2 200 x 0.0002 = 0.44
    assert out[0].quantity == -2.0 and out[0].realized_pnl == pytest.approx(200.0)
    assert out[0].margin_delta == -500.0 and out[1].amount == pytest.approx(0.44)
    led = replay(led, out)
    assert led.accounts["by"].positions == {}
    assert led.accounts["by"].balance("USDT") == pytest.approx(1000 - 1 + 200 - 0.44)


def test_fill_events_rejects_when_margin_gone_and_cancels_empty_reduce_only(setup):
    catalog, feed, ctx, led = setup
    order = Order(1, BTC, 9.0, "market", float("nan"), False, "cross", 10.0, 0, "")
    led = apply(led, ev.FeeCharged(TS, "bx", BTC, 0, "USDT", 500.0))
    out = fill_events(led, ctx, order, 1000.0, "taker", TS)
    assert isinstance(out[0], ev.OrderRejected) and "insufficient margin at fill: needs 904.50" in out[0].reason
    ro = Order(2, BTC, -1.0, "market", float("nan"), True, "cross", 10.0, 0, "")
    assert isinstance(fill_events(led, ctx, ro, 1000.0, "taker", TS)[0], ev.OrderCancelled)


def test_funding_events_sign_and_isolation(setup):
    catalog, feed, ctx, led = setup
    led = apply(led, fill(-0.5, 1000.0))
    led = apply(led, ev.OrderFilled(TS, "by", "by:BTC/USDT:USDT", 1, 1.0, 1000.0, "taker", 0.0, 100.0, "USDT",
                                    "perp", ""))
    ctx.row = 1
    out = funding_events(led, ctx, 1, [(0, 0.0001), (1, 0.5), (2, 0.0001)])
    # short 0.5 at mark open 1000 (row 1 opens at row 0's close) with +0.01 %: receives 0.05;
    # ETH has no position; isolated long 1 pays 0.1 out of its margin
    assert [(e.instrument, e.amount, e.isolated) for e in out] == [
        (BTC, pytest.approx(0.05), False), ("by:BTC/USDT:USDT", pytest.approx(-0.1), True)]
    led = replay(led, out)
    assert led.accounts["by"].positions["by:BTC/USDT:USDT"].isolated_margin == pytest.approx(99.9)
    assert led.accounts["bx"].balance("USDT") == pytest.approx(1000.05)
