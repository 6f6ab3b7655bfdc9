"""FuturesBasis driven through a fake view: choice of future, entry on the annualised basis, roll
before expiry, re-hedge after an expiry, exit, perp hedge, params."""

import pytest

from xmargin.strategies.futures_basis import FuturesBasis
from xmargin.testing import T0, FakeView, wake
from xmargin.venues.instruments import Instrument

SPOT, PERP = "binance:BTC/USDT", "binance:BTC/USDT:USDT"
DAY_NS = 86_400_000_000_000
NEAR_EXPIRY = "2024-10-11T08:00:00Z"  # T0 (2024-10-01 00:00) + 10 days 8 h
FAR_EXPIRY = "2025-01-10T08:00:00Z"
NEAR, FAR = "binance:BTC/USDT:USDT-241011", "binance:BTC/USDT:USDT-250110"


def dated(symbol_suffix: str, expiry: str) -> Instrument:
    return Instrument(exchange="binance", symbol=f"BTC/USDT:USDT-{symbol_suffix}", market="future", base="BTC",
                      quote="USDT", settle="USDT", lot_size=0.001, min_notional=5.0, expiry=expiry)


def make_view(near=50_500.0, far=51_500.0):
    view = FakeView({SPOT: {"lot": 1e-5}, PERP: {"lot": 0.001}, NEAR: dated("241011", NEAR_EXPIRY),
                     FAR: dated("250110", FAR_EXPIRY)})
    view.balances[("binance", "USDT")] = 100_000.0
    view.prices = {SPOT: 50_000.0, PERP: 50_000.0, NEAR: near, FAR: far}
    return view


PARAMS = {"hedge": SPOT, "notional": 25_000, "leverage": 4, "entry_apr": 0.05, "roll_before": "1d"}


def test_enters_on_the_nearest_future_when_its_annualised_basis_is_high_enough():
    strategy, view = FuturesBasis(PARAMS), make_view()
    # near: 1 % over 10 1/3 days = 35.3 %/yr > 5 %: long 0.5 BTC spot, short 0.5 of the near future
    spot, future = strategy.on_wake(view, wake("start"))
    assert (spot.instrument, spot.quantity) == (SPOT, pytest.approx(0.5))
    assert (future.instrument, future.quantity, future.leverage) == (NEAR, pytest.approx(-0.5), 4)
    years = (10 * DAY_NS + 8 * 3_600_000_000_000) / (365 * DAY_NS)
    assert strategy.basis_apr(view, NEAR) == pytest.approx((50_500 / 50_000 - 1) / years)


def test_no_entry_when_the_basis_is_below_the_threshold():
    strategy, view = FuturesBasis(PARAMS), make_view(near=50_020.0)  # 0.04 % over 10 days = 1.4 %/yr
    assert strategy.on_wake(view, wake("start")) == []


def test_rolls_to_the_next_quarterly_before_expiry_and_keeps_the_hedge():
    strategy, view = FuturesBasis(PARAMS), make_view()
    strategy.on_wake(view, wake("start"))
    view.balances[("binance", "BTC")] = 0.5
    view.set_position(NEAR, -0.5)
    view.advance(24 * 5)
    assert strategy.on_wake(view, wake("timer")) == []  # 5 days left: hold
    view.advance(24 * 4 + 12)  # 20 h left: inside roll_before (1 d)
    buy_back, sell_next = strategy.on_wake(view, wake("timer"))
    assert (buy_back.instrument, buy_back.quantity, buy_back.reduce_only) == (NEAR, pytest.approx(0.5), True)
    assert (sell_next.instrument, sell_next.quantity) == (FAR, pytest.approx(-0.5))


def test_hedges_again_after_the_exchange_settled_the_future():
    strategy, view = FuturesBasis(PARAMS), make_view()
    strategy.on_wake(view, wake("start"))
    view.balances[("binance", "BTC")] = 0.5  # the spot leg stays; the future was settled (ContractExpired)
    view.now_ns = T0 + 11 * DAY_NS
    (order,) = strategy.on_wake(view, wake("timer"))
    assert (order.instrument, order.quantity) == (FAR, pytest.approx(-0.5))


def test_exits_both_legs_when_the_basis_turns_below_exit():
    strategy, view = FuturesBasis({**PARAMS, "exit_apr": 0.0}), make_view()
    strategy.on_wake(view, wake("start"))
    view.balances[("binance", "BTC")] = 0.5
    view.set_position(NEAR, -0.5)
    view.prices[NEAR] = 49_900.0  # backwardation
    future, spot = strategy.on_wake(view, wake("timer"))
    assert (future.instrument, future.quantity, future.reduce_only) == (NEAR, pytest.approx(0.5), True)
    assert (spot.instrument, spot.quantity) == (SPOT, pytest.approx(-0.5))


def test_a_perp_can_be_the_long_leg_and_base_already_held_is_not_the_hedge():
    strategy, view = FuturesBasis({**PARAMS, "hedge": PERP}), make_view()
    view.balances[("binance", "BTC")] = 3.0  # deposited collateral, not a hedge
    perp, future = strategy.on_wake(view, wake("start"))
    assert (perp.instrument, perp.quantity, perp.leverage) == (PERP, pytest.approx(0.5), 4)
    assert future.quantity == pytest.approx(-0.5)


@pytest.mark.parametrize("params, message", [
    ({"hedge": SPOT}, "missing required params"),
    ({**PARAMS, "exit_apr": 0.1}, "exit_apr"),
    ({**PARAMS, "roll_before": "2 days"}, "roll_before"),
    ({**PARAMS, "spread": 1}, "unknown params"),
])
def test_params_are_checked(params, message):
    with pytest.raises(ValueError, match=message):
        FuturesBasis(params)


def test_the_long_side_can_be_split_between_spot_and_perp():
    strategy, view = FuturesBasis({**PARAMS, "perp": PERP, "perp_share": 0.5}), make_view()
    spot, perp, future = strategy.on_wake(view, wake("start"))
    assert (spot.instrument, spot.quantity, spot.leverage) == (SPOT, pytest.approx(0.25), None)
    assert (perp.instrument, perp.quantity, perp.leverage) == (PERP, pytest.approx(0.25), 4)
    assert future.quantity == pytest.approx(-0.5)
    view.balances[("binance", "BTC")] = 0.25
    view.set_position(PERP, 0.25)
    view.set_position(NEAR, -0.5)
    assert strategy.hedge_quantity(view) == pytest.approx(0.5)
    view.prices[NEAR] = 48_000.0  # -4 % over 10 days: below the default exit (-100 %/yr)
    orders = strategy.on_wake(view, wake("timer"))
    assert [(o.instrument, round(o.quantity, 6), o.reduce_only) for o in orders] == [
        (NEAR, 0.5, True), (SPOT, -0.25, False), (PERP, -0.25, True)]


def test_perp_share_needs_a_perp():
    with pytest.raises(ValueError, match="perp_share"):
        FuturesBasis({**PARAMS, "perp_share": 0.5})
