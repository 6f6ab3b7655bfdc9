"""PairsHedge through a fake view: notional and beta sizing, waiting for data, buffer, rebalance."""

import math

import numpy as np
import pytest

from xmargin.strategies.pairs_hedge import PairsHedge, rolling_beta
from xmargin.testing import FakeView, wake

ETH, SOL = "binance:ETH/USDT:USDT", "binance:SOL/USDT:USDT"
PARAMS = {"long": ETH, "short": SOL, "notional": 10_000, "leverage": 5, "collateral_buffer": 0.5}


def make_view(usdt=20_000.0):
    view = FakeView({ETH: {"lot": 0.001}, SOL: {"lot": 1.0}}, leverage=5)
    view.balances[("binance", "USDT")] = usdt
    view.prices = {ETH: 2_000.0, SOL: 100.0}
    return view


def test_notional_hedge_opens_equal_notional():
    strategy, view = PairsHedge(PARAMS), make_view()
    view.advance()
    orders = strategy.on_wake(view, wake("start"))
    assert [(o.instrument, o.quantity, o.leverage) for o in orders] == [(ETH, 5.0, 5), (SOL, -100.0, 5)]


def test_waits_until_the_short_leg_trades():
    strategy, view = PairsHedge(PARAMS), make_view()
    del view.prices[SOL]
    view.advance()
    assert strategy.on_wake(view, wake("start")) == []


def test_beta_hedge_sizes_the_short_leg():
    strategy, view = PairsHedge({**PARAMS, "hedge": "beta", "beta_bars": 4}), make_view()
    # ETH moves exactly half of SOL in log terms each hour: beta = 0.5
    for step in (0.02, -0.04, 0.03, 0.01):
        view.prices = {ETH: view.prices[ETH] * math.exp(step / 2), SOL: view.prices[SOL] * math.exp(step)}
        view.advance()
    assert strategy.on_wake(view, wake("timer")) == []  # 4 closes: one short of beta_bars + 1
    view.prices = {ETH: view.prices[ETH] * math.exp(0.005), SOL: view.prices[SOL] * math.exp(0.01)}
    view.advance()
    orders = strategy.on_wake(view, wake("timer"))
    assert strategy.last_ratio == pytest.approx(0.5)
    long_order, short_order = orders
    assert long_order.quantity * view.prices[ETH] == pytest.approx(10_000, rel=1e-3)
    assert -short_order.quantity * view.prices[SOL] == pytest.approx(5_000, abs=view.prices[SOL])


def test_buffer_caps_both_legs_on_one_exchange():
    # 4,000 USDT: 0.5 x 4,000 / (1/5 + 0.001) = 9,950 for both legs -> 4,975 each
    strategy, view = PairsHedge(PARAMS), make_view(usdt=4_000.0)
    view.advance()
    long_order, short_order = strategy.on_wake(view, wake("start"))
    assert long_order.quantity == pytest.approx(2.487) and short_order.quantity == -49.0


def test_rebalance_only_beyond_tolerance_and_reductions_first():
    strategy, view = PairsHedge(PARAMS), make_view()
    view.set_position(ETH, 5.0)
    view.set_position(SOL, -100.0)
    view.advance()
    assert strategy.on_wake(view, wake("timer")) == []
    view.prices = {ETH: 2_000.0, SOL: 130.0}  # SOL +30 %: the short leg is 30 % too big
    view.advance()
    orders = strategy.on_wake(view, wake("timer"))
    assert [(o.instrument, o.quantity, o.reduce_only) for o in orders] == [(SOL, 24.0, True)]


def test_rolling_beta_undefined_cases():
    assert math.isnan(rolling_beta(np.array([1.0, 2.0]), np.array([1.0, 2.0])))
    assert math.isnan(rolling_beta(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0])))
    assert math.isnan(rolling_beta(np.array([1.0, np.nan, 3.0]), np.array([1.0, 2.0, 3.0])))


@pytest.mark.parametrize("bad, message", [
    ({"hedge": "ols"}, r"hedge = 'ols': allowed \['notional', 'beta'\]"),
    ({"short": ETH}, "must be different instruments"),
    ({"beta_limits": [2, 1]}, r"beta_limits = \[2, 1\]: must be \[low, high\]"),
    ({"long": "binance:ETH/USDT"}, "must be a perp key"),
    ({"every": 3}, "every = 3: must be a duration"),
])
def test_bad_params(bad, message):
    with pytest.raises(ValueError, match=message):
        PairsHedge({**PARAMS, **bad})
