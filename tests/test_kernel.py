"""The valuation kernel (xmargin.margin.kernel): the vectorised path, the scalar fast path and the
per-leg formulas give the same numbers for any legs (linear, inverse, collateral, entry-margined,
scaled) and any price cases; many units valued at once equal each valued alone."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmargin.margin import formulas as m
from xmargin.margin.kernel import (COLLATERAL, Legs, equity_one, maintenance_one, rows_of, unit_one, valuate,
                                   valuate_one)
from xmargin.venues.rules import load_rules

SETTINGS = settings(max_examples=150, deadline=None)
TABLES = [load_rules("binance-usdm").brackets_for("BTCUSDT"), load_rules("binance-usdm").brackets_for("ETHUSDT"),
          load_rules("hyperliquid").brackets_for("BTCUSDC"), load_rules("binance-coinm").brackets_for("BTCUSD")]

leg = st.tuples(
    st.sampled_from(["linear", "inverse", "collateral", "entry"]),
    st.floats(min_value=-50.0, max_value=50.0).filter(lambda q: abs(q) > 1e-6),  # quantity
    st.floats(min_value=1.0, max_value=100_000.0),  # entry price
    st.integers(min_value=0, max_value=len(TABLES) - 1),  # table
    st.floats(min_value=1.0, max_value=100.0),  # leverage
    st.sampled_from([1.0, 1.0, 0.9998, 1.25]),  # scale
)
unit_legs = st.lists(leg, min_size=1, max_size=5)
prices = st.floats(min_value=0.5, max_value=200_000.0)


def _legs(rows, base, reserved=0.0) -> Legs:
    quantity, entry, size, table, leverage, fixed, scale = [], [], [], [], [], [], []
    for kind, q, e, t, lev, sc in rows:
        quantity.append(q)
        entry.append(0.0 if kind == "collateral" else e)
        size.append(100.0 if kind == "inverse" else 0.0)
        table.append(COLLATERAL if kind == "collateral" else t)
        leverage.append(math.inf if kind == "collateral" else lev)
        fixed.append(m.maintenance_margin(abs(q) * e, TABLES[t]) if kind == "entry" else math.nan)
        scale.append(1.0 if kind == "collateral" else sc)
    return Legs.build(quantity, entry, TABLES, size=size, table=table, leverage=leverage, fixed_maintenance=fixed,
                      scale=scale, base=(base,), reserved=(reserved,))


def _by_hand(rows, base, reserved, price_row):
    """The documented formulas, leg by leg (xmargin.margin.formulas)."""
    equity, maintenance, initial = base, 0.0, reserved
    for (kind, q, e, t, lev, sc), p in zip(rows, price_row):
        if kind == "collateral":
            equity += q * p
            continue
        inverse = kind == "inverse"
        notional = m.contract_notional(q, p, inverse, 100.0)
        equity += m.contract_pnl(q, e, p, inverse, 100.0) * sc
        maintenance += (m.maintenance_margin(abs(q) * e, TABLES[t]) if kind == "entry"
                        else m.maintenance_margin(notional * sc, TABLES[t]))
        initial += notional * sc / lev
    return equity, maintenance, initial


@SETTINGS
@given(unit_legs, st.floats(min_value=-1e5, max_value=1e6), st.floats(min_value=0.0, max_value=1e4),
       st.lists(st.lists(prices, min_size=5, max_size=5), min_size=1, max_size=4))
def test_vectorised_scalar_and_formulas_agree(rows, base, reserved, cases):
    legs = _legs(rows, base, reserved)
    grid = np.array([case[:len(rows)] for case in cases])
    value = valuate(legs, grid)
    assert value.equity.shape == (len(cases), 1)
    scalar = rows_of(legs)
    for c, row in enumerate(grid.tolist()):
        want = _by_hand(rows, base, reserved, row)
        one = valuate_one(scalar, base, row, reserved)
        got = (value.equity[c, 0], value.maintenance_margin[c, 0], value.initial_margin[c, 0])
        for a, b, w in zip(got, one, want):
            assert a == pytest.approx(w, rel=1e-12, abs=1e-9)
            assert b == pytest.approx(w, rel=1e-12, abs=1e-9)
        assert equity_one(scalar, base, row) == pytest.approx(one[0], rel=1e-15, abs=1e-12)
        assert maintenance_one(scalar, row) == one[1]
        per_leg, pnl, collateral, _, _ = unit_one(scalar, base, row)  # the parts the account tables use
        position_legs = [k for k, r in enumerate(rows) if r[0] != "collateral"]
        assert [leg[0] for leg in per_leg] == pytest.approx(value.notional[c, position_legs].tolist(), rel=1e-12)
        assert [leg[1] for leg in per_leg] == pytest.approx(value.unrealized_pnl[c, position_legs].tolist(),
                                                          rel=1e-12, abs=1e-9)
        assert [leg[2] for leg in per_leg] == pytest.approx(value.leg_maintenance[c, position_legs].tolist(),
                                                          rel=1e-12, abs=1e-9)
        assert pnl + collateral == one[0]
        single = valuate(legs, grid[c])  # one case as a 1-d price vector
        assert single.equity[0] == pytest.approx(got[0], rel=1e-15, abs=1e-12)


@SETTINGS
@given(st.lists(st.tuples(unit_legs, st.floats(min_value=-1e4, max_value=1e5)), min_size=1, max_size=4),
       st.lists(prices, min_size=20, max_size=20))
def test_many_units_at_once_equal_each_alone(units, price_pool):
    parts = [_legs(rows, base) for rows, base in units]
    together = Legs.concat(parts)
    flat = np.array(price_pool[:len(together.quantity)])
    value = valuate(together, flat)
    offset = 0
    for u, part in enumerate(parts):
        alone = valuate(part, flat[offset:offset + len(part.quantity)])
        offset += len(part.quantity)
        assert value.equity[u] == pytest.approx(alone.equity[0], rel=1e-12, abs=1e-9)
        assert value.maintenance_margin[u] == pytest.approx(alone.maintenance_margin[0], rel=1e-12, abs=1e-9)
        assert value.initial_margin[u] == pytest.approx(alone.initial_margin[0], rel=1e-12, abs=1e-9)


def test_a_worked_example():
    """Long 2 BTC at 50,000 (Binance BTCUSDT brackets: 0.4 % up to 50k notional, then 0.5 % - 50),
    short 1,000 BTCUSD contracts of 100 USD at 40,000 (COIN-M: 0.4 % of the coin notional), 0.5 BTC
    collateral leg, wallet 1,000, at BTC 45,000."""
    btc, coin = TABLES[0], TABLES[3]
    legs = Legs.build([2.0, -1000.0, 0.5], [50_000.0, 40_000.0, 0.0], [btc, coin], size=[0.0, 100.0, 0.0],
                      table=[0, 1, COLLATERAL], leverage=[10.0, 20.0, math.inf], base=(1_000.0,))
    value = valuate(legs, np.array([45_000.0, 45_000.0, 45_000.0]))
    inverse_pnl = -1000 * 100 * (1 / 40_000 - 1 / 45_000)
    assert value.equity[0] == pytest.approx(1_000 + 2 * (45_000 - 50_000) + inverse_pnl + 0.5 * 45_000, rel=1e-12)
    linear_mm = 90_000 * btc.rates[btc.index(90_000)] - btc.amounts[btc.index(90_000)]
    coin_notional = 1000 * 100 / 45_000
    inverse_mm = coin_notional * coin.rates[coin.index(coin_notional)] - coin.amounts[coin.index(coin_notional)]
    assert value.maintenance_margin[0] == pytest.approx(linear_mm + inverse_mm, rel=1e-12)
    assert value.initial_margin[0] == pytest.approx(90_000 / 10 + coin_notional / 20, rel=1e-12)
