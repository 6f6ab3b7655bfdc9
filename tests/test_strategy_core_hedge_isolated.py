"""CoreHedgeIsolated through a fake view: cross hedge + isolated spec, buffer scale, liquidation."""

import pytest

from xmargin.ledger.events import PositionLiquidated
from xmargin.strategies.core_hedge_isolated import CoreHedgeIsolated
from xmargin.testing import FakeView, wake

SPOT, PERP, ETH = "binance:BTC/USDT", "binance:BTC/USDT:USDT", "binance:ETH/USDT:USDT"
PARAMS = {"hedge_long": SPOT, "hedge_short": PERP, "hedge_notional": 40_000, "hedge_leverage": 4,
          "spec": ETH, "spec_notional": 20_000, "spec_leverage": 20, "collateral_buffer": 0.5}


def make_view(usdt=100_000.0):
    view = FakeView({SPOT: {"lot": 1e-5}, PERP: {"lot": 0.001}, ETH: {"lot": 0.001}})
    view.balances[("binance", "USDT")] = usdt
    view.prices = {SPOT: 50_000.0, PERP: 50_000.0, ETH: 2_000.0}
    view.advance()
    return view


def test_opens_cross_hedge_and_isolated_spec():
    strategy, view = CoreHedgeIsolated(PARAMS), make_view()
    orders = strategy.on_wake(view, wake("start"))
    by_key = {o.instrument: o for o in orders}
    assert by_key[SPOT].quantity == pytest.approx(0.8) and by_key[SPOT].margin_mode is None
    assert by_key[PERP].quantity == pytest.approx(-0.8) and by_key[PERP].margin_mode == "cross"
    assert by_key[ETH].quantity == pytest.approx(10.0)
    assert by_key[ETH].margin_mode == "isolated" and by_key[ETH].leverage == 20


def test_scales_everything_down_to_the_buffer():
    # 40k USDT: need = 10k + 1k + 0.001 x 60k = 11,060; spot cost 40,040 x 0.5 -> s = 20,000 / 31,080
    strategy, view = CoreHedgeIsolated(PARAMS), make_view(usdt=40_000.0)
    orders = strategy.on_wake(view, wake("start"))
    scale = 20_000 / (11_060 + 0.5 * 40_040)
    assert strategy.scale == pytest.approx(scale)
    by_key = {o.instrument: o for o in orders}
    assert by_key[ETH].quantity == pytest.approx(round(scale * 10.0 - 0.0005, 3))
    committed = -by_key[PERP].quantity * 50_000 / 4 + by_key[ETH].quantity * 2_000 / 20
    cash_left = 40_000 - by_key[SPOT].quantity * 50_000
    assert committed <= 0.5 * cash_left


def test_spec_liquidation_leaves_hedge_alone_and_is_not_reopened():
    strategy, view = CoreHedgeIsolated(PARAMS), make_view()
    strategy.on_wake(view, wake("start"))
    view.balances[("binance", "BTC")] = 0.8
    view.set_position(PERP, -0.8)
    liquidation = PositionLiquidated(view.now_ns, "binance", ETH, -10.0, 1_900.0, 1_905.0, -1_000.0, 0.0, 0.0,
                                     "USDT", True, "full")
    view.advance()
    assert strategy.on_wake(view, wake("margin_warning", events=(liquidation,))) == []
    assert strategy.spec_liquidated == 1
    view.advance(24)
    assert strategy.on_wake(view, wake("timer")) == []


def test_reopen_spec_after_liquidation():
    strategy, view = CoreHedgeIsolated({**PARAMS, "reopen_spec": True}), make_view()
    strategy.on_wake(view, wake("start"))
    view.balances[("binance", "BTC")] = 0.8
    view.set_position(PERP, -0.8)
    liquidation = PositionLiquidated(view.now_ns, "binance", ETH, -10.0, 1_900.0, 1_905.0, -1_000.0, 0.0, 0.0,
                                     "USDT", True, "full")
    assert strategy.on_wake(view, wake("margin_warning", events=(liquidation,))) == []
    view.advance(24)
    (order,) = strategy.on_wake(view, wake("timer"))
    assert order.instrument == ETH and order.margin_mode == "isolated"


def test_hedge_rebalance_on_drift():
    strategy, view = CoreHedgeIsolated(PARAMS), make_view()
    strategy.on_wake(view, wake("start"))
    view.balances[("binance", "BTC")] = 0.8
    view.set_position(PERP, -0.6)  # a leg cut short
    view.set_position(ETH, 10.0, mode="isolated", isolated_margin=1_000.0)
    view.advance(24)
    (order,) = strategy.on_wake(view, wake("timer"))
    assert order.instrument == PERP and order.quantity == pytest.approx(-0.2)


@pytest.mark.parametrize("bad, message", [
    ({"spec_notional": 0}, "spec_notional = 0: must be non-zero"),
    ({"spec": "hyperliquid:ETH/USDC:USDC"}, "all three must be on one exchange"),
    ({"spec": PERP}, "must not be one of the hedge legs"),
    ({"reopen_spec": "yes"}, "reopen_spec"),
    ({"hedge_leverage": 500}, "hedge_leverage = 500: must be > 0 and <= 125"),
])
def test_bad_params(bad, message):
    with pytest.raises(ValueError, match=message):
        CoreHedgeIsolated({**PARAMS, **bad})
