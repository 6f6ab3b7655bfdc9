"""BasisCarry driven through a fake view: entry on funding, equal legs, buffer cap, exit, params."""

import pytest

from xmargin.ledger.commands import PlaceOrder
from xmargin.strategies.basis_carry import BasisCarry
from xmargin.testing import FakeView, wake

SPOT, PERP = "binance:BTC/USDT", "binance:BTC/USDT:USDT"
PARAMS = {"spot": SPOT, "perp": PERP, "notional": 50_000, "leverage": 3, "entry_apr": 0.10, "exit_apr": 0.02,
          "lookback": 2, "collateral_buffer": 0.5}


def make_view(usdt=100_000.0):
    view = FakeView({SPOT: {"lot": 1e-5}, PERP: {"lot": 0.001, "min_notional": 100.0}})
    view.balances[("binance", "USDT")] = usdt
    view.prices = {SPOT: 50_000.0, PERP: 50_000.0}
    return view


def settle(strategy, view, rate, hours=8):
    """Advance one 8h funding interval with the given settled rate; returns the last wake's commands."""
    view.funding[PERP] = rate
    out = []
    for _ in range(hours):
        view.advance(1)
        out = list(strategy.on_wake(view, wake("timer")))
        if out:
            return out
    return out


def test_waits_for_lookback_then_enters_with_equal_legs():
    strategy, view = BasisCarry(PARAMS), make_view()
    # 0.0001 per 8h = 10.95 %/yr > 10 %: but only one settlement seen -> no mean yet
    assert settle(strategy, view, 0.0001) == []
    orders = settle(strategy, view, 0.0001)
    assert [type(o) for o in orders] == [PlaceOrder, PlaceOrder]
    spot, perp = orders
    assert spot.instrument == SPOT and perp.instrument == PERP
    assert spot.quantity == pytest.approx(1.0) and perp.quantity == pytest.approx(-1.0)  # 50k / 50k
    assert perp.leverage == 3 and not perp.reduce_only


def test_no_entry_below_threshold():
    strategy, view = BasisCarry(PARAMS), make_view()
    for _ in range(4):
        assert settle(strategy, view, 0.00005) == []  # 5.5 %/yr


def test_buffer_caps_the_size():
    # 40k USDT: cap = 0.5 x 40k / (1/3 + 0.5 x 1.001 + 0.001) = 23,957 -> 0.479 BTC (perp lot 0.001)
    strategy, view = BasisCarry(PARAMS), make_view(usdt=40_000.0)
    settle(strategy, view, 0.0002)
    spot, perp = settle(strategy, view, 0.0002)
    assert spot.quantity == pytest.approx(0.479) and perp.quantity == pytest.approx(-0.479)
    spent = 0.479 * 50_000
    assert 0.479 * 50_000 / 3 <= 0.5 * (40_000 - spent)  # perp IM within the buffer of the cash left


def test_holds_then_exits_when_funding_turns():
    strategy, view = BasisCarry(PARAMS), make_view()
    settle(strategy, view, 0.0002)
    settle(strategy, view, 0.0002)
    view.balances[("binance", "USDT")] = 50_000.0
    view.balances[("binance", "BTC")] = 1.0
    view.set_position(PERP, -1.0)
    assert settle(strategy, view, 0.0002) == []  # in, on target
    orders = settle(strategy, view, -0.0003)  # mean of (0.0002, -0.0003) < 2 %/yr
    assert [(o.instrument, o.quantity) for o in orders] == [(PERP, 1.0), (SPOT, -1.0)]
    assert orders[0].reduce_only


def test_rebalances_when_price_eats_the_buffer():
    strategy, view = BasisCarry(PARAMS), make_view(usdt=60_000.0)
    settle(strategy, view, 0.0002)
    settle(strategy, view, 0.0002)
    view.balances[("binance", "USDT")] = 30_000.0
    view.balances[("binance", "BTC")] = 0.6
    view.set_position(PERP, -0.6, entry=50_000.0)
    view.prices = {SPOT: 70_000.0, PERP: 70_000.0}  # short perp loses 12k of the 30k cash
    orders = settle(strategy, view, 0.0002)
    assert orders and orders[0].instrument == SPOT and orders[0].quantity < 0  # sell spot to free cash
    assert orders[1].instrument == PERP and orders[1].quantity == pytest.approx(-orders[0].quantity, abs=1e-5)


def test_base_already_held_is_not_the_spot_leg():
    strategy, view = BasisCarry(PARAMS), make_view()
    view.balances[("binance", "BTC")] = 2.0  # collateral deposited before the run
    settle(strategy, view, 0.0002)
    spot, perp = settle(strategy, view, 0.0002)
    assert spot.quantity == pytest.approx(1.0) and perp.quantity == pytest.approx(-1.0)


@pytest.mark.parametrize("bad, message", [
    ({"notional": -5}, "notional = -5: must be > 0"),
    ({"collateral_buffer": 1.0}, "collateral_buffer = 1.0: must be >= 0 and < 1"),
    ({"exit_apr": 0.5}, "exit_apr = 0.5: must be <= entry_apr"),
    ({"lookback": 0}, "lookback = 0: must be an integer >= 1"),
    ({"perp": "binance:ETH/USDT:USDT"}, "must be the same base asset"),
    ({"spot": "hyperliquid:BTC/USDC"}, "same exchange"),
    ({"every": "soon"}, "every = 'soon': must be a duration"),
    ({"notional_usd": 5}, "unknown params ['notional_usd']"),
])
def test_bad_params_name_the_param(bad, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        BasisCarry({**PARAMS, **bad})


def test_missing_param():
    with pytest.raises(ValueError, match=r"missing required params \['notional'\]"):
        BasisCarry({"spot": SPOT, "perp": PERP})
