"""Liquidation mechanics on hand-built feeds, numbers derived by hand in the comments.

Common set-up: exchange "bx" (USDT), zero trading fees and no slippage so that every number is
simple; flat bracket tables (one maintenance rate at every notional). Orders are placed at the
close of bar 0 and fill at the open of bar 1 (100); the move comes in bar 2. Bars are 1 h; with
the `path` intrabar mode a bar is walked as open, nearer extreme, farther extreme, close, i.e. the
points are at +0, +15, +30, +45 min (`worst-case`: open, adverse extreme, close at +0, +20, +40).
"""

from __future__ import annotations

import numpy as np
import pytest

from xmargin.ledger import commands as cmd
from xmargin.ledger import events as ev
from xmargin.ledger.apply import replay
from helpers_feed import (HOUR, T0, Scripted, VenueSpec, empty_ledger, flat_brackets, make_catalog, make_feed,
                                of_type, perp, rules, run)

A, B, C = "bx:BTC/USDT:USDT", "bx:ETH/USDT:USDT", "bx:SOL/USDT:USDT"


def catalog_for(mode="cross", collateral=1000.0, leverage=10.0, rate=0.01, **rule_overrides):
    rs = rules(maker_fee=0.0, taker_fee=0.0, **rule_overrides)
    return make_catalog({"bx": VenueSpec(rs, mode, {"USDT": collateral}, leverage)},
                        [perp("bx", "BTC"), perp("bx", "ETH"), perp("bx", "SOL")],
                        tables={k: flat_brackets(rate) for k in (A, B, C)})


def bars(rows):
    """rows: per bar a list of (open, high, low, close) per instrument -> feed arrays."""
    arr = np.array(rows, dtype=float)  # (bars, instruments, 4)
    return dict(open=arr[:, :, 0], high=arr[:, :, 1], low=arr[:, :, 2], close=arr[:, :, 3])


def flat(price):
    return (price, price, price, price)


def single_long_feed(move_bar):
    """BTC flat at 100, `move_bar` in bar 2, then flat at its close; ETH / SOL flat at 100."""
    rows = [[flat(100)] * 3, [flat(100)] * 3, [move_bar, flat(100), flat(100)],
            [flat(move_bar[3]), flat(100), flat(100)]]
    data = bars(rows)
    return make_feed((A, B, C), data.pop("close"), **data)


def open_long_isolated(catalog, feed, **config):
    # 1 BTC at 10x isolated: margin 1 x 100 / 10 = 10 leaves the wallet
    return run(catalog, feed, {0: [cmd.PlaceOrder.market(A, 1.0)]}, **config)


# Binance isolated liquidation price, one bracket MMR 1 %, amount 0, long 1 @ 100 with margin 10:
# LP = (WB + cumB - side |Q| EP) / (|Q| MMR - side |Q|) = (10 - 100) / (0.01 - 1) = 90.9090...
LP = 90.0 / 0.99


def test_isolated_long_liquidated_at_the_exact_liquidation_price_inside_the_bar():
    catalog = catalog_for("isolated")
    feed = single_long_feed((100, 101, 85, 99))  # the low passes LP, the close (99) does not
    result, _ = open_long_isolated(catalog, feed)
    fills = of_type(result.events, ev.OrderFilled)
    assert [(f.quantity, f.price, f.margin_delta) for f in fills] == [(1.0, 100.0, 10.0)]
    (liq,) = of_type(result.events, ev.PositionLiquidated)
    # path: open 100, nearer extreme high 101 (1 away vs 15), then the low 85 at +30 min
    assert liq.ts == T0 + 2 * HOUR + HOUR // 2
    assert liq.trigger_price == pytest.approx(LP, rel=1e-12)
    # binance fills at the bankruptcy price: entry - margin / |Q| = 90; the loss is exactly the margin
    assert liq.price == pytest.approx(90.0, rel=1e-12)
    assert liq.realized_pnl == pytest.approx(-10.0, rel=1e-12)
    assert (liq.quantity, liq.margin_released, liq.fee, liq.isolated, liq.policy) == (-1.0, 10.0, 0.0, True,
                                                                                      "isolated")
    assert not of_type(result.events, ev.InsuranceFundUsed)
    account = result.ledger.accounts["bx"]
    assert account.positions == {} and account.balance("USDT") == pytest.approx(990.0, abs=1e-9)


def test_isolated_trigger_fill_with_fee():
    # fill = trigger, liquidation fee 1 %: closes at LP, realised 90.909 - 100 = -9.0909, equity left at LP
    # = 10 - 9.0909 = 0.9091, fee = min(1 % x 90.909, 0.9091) = 0.90909 (capped: the fee never makes a debt)
    catalog = catalog_for("isolated", fill="trigger", fee_rate=0.01)
    result, _ = open_long_isolated(catalog, single_long_feed((100, 101, 85, 99)))
    (liq,) = of_type(result.events, ev.PositionLiquidated)
    assert liq.price == pytest.approx(LP) and liq.realized_pnl == pytest.approx(LP - 100.0)
    assert liq.fee == pytest.approx(0.01 * LP)
    assert result.ledger.accounts["bx"].balance("USDT") == pytest.approx(990.0 + 10 + (LP - 100) - 0.01 * LP)
    assert not of_type(result.events, ev.InsuranceFundUsed)


def test_gap_beyond_bankruptcy_triggers_at_the_open():
    # bar 2 opens at 80, below the bankruptcy price 90: the trigger is the open (point 0, ts = bar open)
    catalog = catalog_for("isolated")
    result, _ = open_long_isolated(catalog, single_long_feed((80, 82, 78, 81)))
    (liq,) = of_type(result.events, ev.PositionLiquidated)
    assert liq.ts == T0 + 2 * HOUR and liq.trigger_price == 80.0
    # binance bankruptcy fill: the trader loses exactly the margin (fill 90), the exchange the rest
    assert liq.price == pytest.approx(90.0) and liq.realized_pnl == pytest.approx(-10.0)
    assert result.ledger.accounts["bx"].balance("USDT") == pytest.approx(990.0)


def test_gap_with_trigger_fill_uses_the_open_and_insurance_covers_the_shortfall():
    catalog = catalog_for("isolated", fill="trigger", fee_rate=0.01)
    result, _ = open_long_isolated(catalog, single_long_feed((80, 82, 78, 81)))
    liq, insurance = [e for e in result.events if isinstance(e, (ev.PositionLiquidated, ev.InsuranceFundUsed))]
    # closes at the open 80: realised -20 against a margin of 10; no fee (nothing left); the fund pays 10
    assert (liq.price, liq.trigger_price, liq.realized_pnl, liq.fee) == (80.0, 80.0, -20.0, 0.0)
    assert isinstance(insurance, ev.InsuranceFundUsed)
    assert (insurance.instrument, insurance.amount, insurance.ts) == (A, pytest.approx(10.0), T0 + 2 * HOUR)
    account = result.ledger.accounts["bx"]
    # the wallet lost exactly the isolated margin, never more
    assert account.balance("USDT") == pytest.approx(990.0) and account.insurance_used == {"USDT": pytest.approx(10.0)}


# ----------------------------------------------------------------------------- cross pools
def three_leg_run(policy, fill="bankruptcy"):
    """Wallet 300, MMR 5 %, 20x: long 20 BTC, long 2 ETH, short 2 SOL, all at 100 (IM 120, MM 120,
    ratio 0.4). Bar 2 gaps to BTC 86 / ETH 99 / SOL 100: uPnL -280 - 2 + 0, equity 18, MM 0.05 x
    (1720 + 198 + 200) = 105.9 -> liquidation at the open."""
    catalog = catalog_for("cross", collateral=300.0, leverage=20.0, rate=0.05, policy=policy, fill=fill)
    rows = [[flat(100)] * 3, [flat(100)] * 3, [flat(86), flat(99), flat(100)], [flat(86), flat(99), flat(100)]]
    data = bars(rows)
    feed = make_feed((A, B, C), data.pop("close"), **data)
    script = {0: [cmd.PlaceOrder.market(A, 20.0), cmd.PlaceOrder.market(B, 2.0), cmd.PlaceOrder.market(C, -2.0)]}
    return run(catalog, feed, script)


def test_cross_full_closes_every_position_at_bankruptcy_prices():
    result, _ = three_leg_run("full")
    liqs = of_type(result.events, ev.PositionLiquidated)
    assert [(e.instrument, e.quantity, e.policy, e.ts) for e in liqs] == [
        (A, -20.0, "full", T0 + 2 * HOUR), (B, -2.0, "full", T0 + 2 * HOUR), (C, 2.0, "full", T0 + 2 * HOUR)]
    # every price moves adversely by r = equity / sum notional = 18 / 2118 of its trigger mark
    r = 18.0 / 2118.0
    assert [e.trigger_price for e in liqs] == [86.0, 99.0, 100.0]
    assert [e.price for e in liqs] == pytest.approx([86 * (1 - r), 99 * (1 - r), 100 * (1 + r)], rel=1e-12)
    # the realised losses add up to the whole wallet: the pool ends at exactly 0
    assert sum(e.realized_pnl for e in liqs) == pytest.approx(-300.0, rel=1e-12)
    assert result.ledger.accounts["bx"].positions == {}
    assert result.ledger.accounts["bx"].balance("USDT") == pytest.approx(0.0, abs=1e-9)
    assert not of_type(result.events, ev.InsuranceFundUsed)


def test_cross_partial_closes_worst_first_and_stops_above_maintenance():
    result, _ = three_leg_run("partial")
    liqs = of_type(result.events, ev.PositionLiquidated)
    # worst uPnL first: BTC (-280): MM left 105.9 - 86 = 19.9 >= equity 18 -> go on; ETH (-2): MM left
    # 10 < 18 -> stop. SOL (uPnL 0) stays open. Partial closes at the trigger marks.
    assert [(e.instrument, e.quantity, e.price, e.realized_pnl, e.policy) for e in liqs] == [
        (A, -20.0, 86.0, pytest.approx(-280.0), "partial"), (B, -2.0, 99.0, pytest.approx(-2.0), "partial")]
    account = result.ledger.accounts["bx"]
    assert list(account.positions) == [C]
    assert account.balance("USDT") == pytest.approx(18.0)
    # what is left is above maintenance: MM of short 2 SOL at 100 = 10 < equity 18 (ratio 0.556, no warning)
    warnings = of_type(result.events, ev.MarginWarningRaised)
    assert [(w.level, w.ts) for w in warnings] == [(2, T0 + 2 * HOUR), (0, T0 + 2 * HOUR)]
    assert warnings[0].margin_ratio == pytest.approx(105.9 / 18.0)


# ----------------------------------------------------------------------------- intrabar modes
def hedged_pair(intrabar, btc_bar=(100, 111, 90, 100)):
    """Wallet 250, MMR 5 %, long 10 BTC / short 10 ETH at 100 (full policy, bankruptcy fill).
    Bar 2: BTC opens 100, high 111, low 90, closes 100; ETH opens 100, high 110, low 99, closes 100.
    worst-case (BTC at 90 and ETH at 110 together): equity 250 - 200 = 50 <= MM 100 -> liquidated.
    path: each walks to its nearer extreme first: BTC its low 90 (10 below vs 11 above), ETH its low 99
      (1 below vs 10 above). Point 1: BTC 90 / ETH 99, equity 160 > MM 94.5; point 2: BTC 111 /
      ETH 110, equity 260 > MM 110.5 -> survives (the adverse extremes never coincide). close: both at 100 -> survives."""
    catalog = catalog_for("cross", collateral=250.0, leverage=20.0, rate=0.05, policy="full")
    rows = [[flat(100)] * 3, [flat(100)] * 3, [btc_bar, (100, 110, 99, 100), flat(100)],
            [flat(100)] * 3]
    data = bars(rows)
    feed = make_feed((A, B, C), data.pop("close"), **data)
    return run(catalog, feed, {0: [cmd.PlaceOrder.market(A, 10.0), cmd.PlaceOrder.market(B, -10.0)]},
               intrabar=intrabar)[0]


def test_worst_case_liquidates_the_hedge_where_path_and_close_do_not():
    worst = hedged_pair("worst-case")
    liqs = of_type(worst.events, ev.PositionLiquidated)
    # adverse point at +20 min; triggers interpolated from the open (gap 250 - 100 = 150) to the
    # adverse point (gap 50 - 100 = -50): fraction 0.75 -> BTC 92.5, ETH 107.5 where equity 100 = MM 100.
    assert [(e.instrument, e.ts) for e in liqs] == [(A, T0 + 2 * HOUR + HOUR // 3), (B, T0 + 2 * HOUR + HOUR // 3)]
    assert [e.trigger_price for e in liqs] == pytest.approx([92.5, 107.5], rel=1e-12)
    # bankruptcy: r = 100 / 2000 = 5 % -> fills 87.875 and 112.875; realised -121.25 and -128.75
    assert [e.price for e in liqs] == pytest.approx([87.875, 112.875], rel=1e-12)
    assert [e.realized_pnl for e in liqs] == pytest.approx([-121.25, -128.75], rel=1e-12)
    assert worst.ledger.accounts["bx"].balance("USDT") == pytest.approx(0.0, abs=1e-9)
    for mode in ("path", "close"):
        other = hedged_pair(mode)
        assert not of_type(other.events, ev.PositionLiquidated), mode
        assert set(other.ledger.accounts["bx"].positions) == {A, B}


def test_path_liquidates_when_both_adverse_extremes_come_at_the_same_step():
    # BTC bar 100 / 101 / 90: its high is the nearer extreme, so path point 2 has BTC 90 and ETH 110 together.
    # Interpolating from point 1 (BTC 101, ETH 99: equity 270, MM 100, gap 170) to point 2 (gap -50):
    # fraction 170 / 220 -> BTC 101 - 11 x 17/22 = 92.5, ETH 99 + 8.5 = 107.5, at +30 min.
    liqs = of_type(hedged_pair("path", btc_bar=(100, 101, 90, 100)).events, ev.PositionLiquidated)
    assert [(e.instrument, e.ts) for e in liqs] == [(A, T0 + 2 * HOUR + HOUR // 2), (B, T0 + 2 * HOUR + HOUR // 2)]
    assert [e.trigger_price for e in liqs] == pytest.approx([92.5, 107.5], rel=1e-12)


def test_path_catches_the_intrabar_low_where_close_does_not():
    catalog = catalog_for("isolated")
    feed = single_long_feed((100, 101, 85, 99))
    assert of_type(open_long_isolated(catalog, feed, intrabar="close")[0].events, ev.PositionLiquidated) == []
    worst = of_type(open_long_isolated(catalog, feed, intrabar="worst-case")[0].events, ev.PositionLiquidated)
    # worst-case reaches the low at its second point (+20 min) instead of +30 min; same exact LP
    assert [(e.ts, e.trigger_price) for e in worst] == [(T0 + 2 * HOUR + HOUR // 3, pytest.approx(LP))]


# ----------------------------------------------------------------------------- warnings, stop
def warning_run(margin_warnings):
    """Wallet 100, cross long 10 BTC @ 100 at 20x, MMR 5 %: ratio = 0.5 p / (10 p - 900).
    0.7 at p = 96.92, 0.9 at p = 95.29, liquidation at p = 94.74. Closes 100, 100, 98, 96.5, 95, 97."""
    catalog = catalog_for("cross", collateral=100.0, leverage=20.0, rate=0.05)
    closes = [100, 100, 98, 96.5, 95, 97, 97]
    feed = make_feed((A, B, C), [[c, 100, 100] for c in closes])
    strategy = Scripted({0: [cmd.PlaceOrder.market(A, 10.0)]}, margin_warnings=margin_warnings)
    return run(catalog, feed, strategy=strategy)


def test_margin_warnings_raise_events_and_wake_the_strategy():
    result, strategy = warning_run(True)
    warnings = of_type(result.events, ev.MarginWarningRaised)
    # each bar goes open -> close monotonically, so the level changes at the close-side extreme (+30 min)
    assert [(w.ts - T0, w.instrument, w.level, w.threshold) for w in warnings] == [
        (3 * HOUR + HOUR // 2, "cross:USDT", 1, 0.7), (4 * HOUR + HOUR // 2, "cross:USDT", 2, 0.9),
        (5 * HOUR + HOUR // 2, "cross:USDT", 0, 0.0)]
    # 48.25 / 65, 47.5 / 50, 48.5 / 70
    assert [w.margin_ratio for w in warnings] == pytest.approx([48.25 / 65, 0.95, 48.5 / 70], rel=1e-12)
    assert not of_type(result.events, ev.PositionLiquidated)
    woken = {row: (reasons, events) for row, reasons, events in strategy.woken}
    for row, warning in zip((3, 4, 5), warnings):
        assert woken[row][0] == ("bar", "margin_warning")
        assert woken[row][1] == (warning,)
    assert woken[2][0] == ("bar",)
    # the level is in the ledger too
    assert result.ledger.accounts["bx"].warning_levels == {"cross:USDT": 0}


def test_strategy_without_margin_warnings_is_not_woken_for_them():
    result, strategy = warning_run(False)
    assert len(of_type(result.events, ev.MarginWarningRaised)) == 3
    assert all(reasons in (("start",), ("bar",)) for _, reasons, _ in strategy.woken)


def test_on_liquidation_stop_stops_the_run():
    catalog = catalog_for("isolated")
    result, strategy = open_long_isolated(catalog, single_long_feed((100, 101, 85, 99)), on_liquidation="stop")
    stop = result.events[-1]
    assert isinstance(stop, ev.RunStopped) and stop.ts == T0 + 2 * HOUR + HOUR // 2
    assert "on_liquidation" in stop.reason and result.ledger.stopped
    assert isinstance(result.events[-2], (ev.PositionLiquidated, ev.MarginWarningRaised))
    assert max(row for row, _, _ in strategy.woken) == 1  # never woken at or after the liquidation bar
    assert replay(empty_ledger(catalog), result.events) == result.ledger
