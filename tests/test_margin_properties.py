"""Hypothesis properties of xmargin.margin.formulas over the built-in bracket tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmargin.margin import formulas as m
from xmargin.venues.rules import load_rules

SETTINGS = settings(max_examples=200, deadline=None)

_BIN = load_rules("binance-usdm")
TABLES = [_BIN.brackets_for(s) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BLZUSDT", "GTCUSDT", "1000BONKUSDC")]
TABLES += [load_rules("hyperliquid").brackets_for("BTCUSDC"), load_rules("hyperliquid").default_brackets,
           load_rules("bybit-linear").default_brackets]

tables = st.sampled_from(TABLES)
notionals = st.floats(min_value=0.0, max_value=2e9, allow_nan=False)


@SETTINGS
@given(tables, notionals, st.floats(min_value=1e-9, max_value=1e7))
def test_mm_non_decreasing(t, n, dn):
    assert m.maintenance_margin(n + dn, t) >= m.maintenance_margin(n, t) - 1e-9 * max(1.0, n)


@SETTINGS
@given(tables, st.integers(min_value=0, max_value=20), st.floats(min_value=-1e-6, max_value=1e-6))
def test_mm_continuous_at_boundaries(t, k, rel):
    floors = t.floors
    x = float(floors[k % len(floors)])
    eps = abs(rel) * max(x, 1.0)
    a, b = m.maintenance_margin(max(x - eps, 0.0), t), m.maintenance_margin(x + eps, t)
    # MM is piecewise linear with slopes <= 1: a jump would exceed this bound
    assert abs(b - a) <= 2 * eps + 1e-6 * max(x, 1.0)


@SETTINGS
@given(tables, st.lists(notionals, min_size=1, max_size=20))
def test_vectorised_equals_scalar(t, ns):
    got = m.maintenance_margin_array(np.array(ns), t)
    want = [m.maintenance_margin(n, t) for n in ns]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)


positions = st.tuples(
    tables,
    st.floats(min_value=0.001, max_value=500.0),          # |quantity|
    st.sampled_from([1.0, -1.0]),                         # side
    st.floats(min_value=0.01, max_value=100_000.0),       # entry price
    st.floats(min_value=1.0, max_value=125.0),            # leverage used for the isolated margin
    st.floats(min_value=0.0, max_value=2.0),              # extra margin as a fraction of initial margin
)


def _isolated(pos):
    t, q, side, ep, lev, extra = pos
    qty = side * q
    # a valid position: leverage capped by the bracket at the entry notional, so IM > MM at entry
    im = m.initial_margin(q * ep, m.effective_leverage(lev, q * ep, t)) * (1.0 + extra)
    return t, qty, ep, im


@SETTINGS
@given(positions)
def test_equity_equals_mm_at_isolated_liquidation_price(pos):
    t, qty, ep, im = _isolated(pos)
    lp = m.isolated_liquidation_price(qty, ep, im, t)
    if qty > 0 and lp == 0.0:
        # cannot be liquidated: margin balance stays above maintenance all the way down to price 0
        assert im + m.unrealized_pnl(qty, ep, 0.0) >= -1e-9 * abs(qty) * ep
        return
    assert lp > 0 and math.isfinite(lp)
    equity = im + m.unrealized_pnl(qty, ep, lp)
    mm = m.maintenance_margin(abs(qty) * lp, t)
    assert equity == pytest.approx(mm, rel=1e-7, abs=1e-7 * abs(qty) * max(ep, lp))


@SETTINGS
@given(positions)
def test_bankruptcy_beyond_liquidation(pos):
    t, qty, ep, im = _isolated(pos)
    lp = m.isolated_liquidation_price(qty, ep, im, t)
    bp = m.bankruptcy_price(qty, ep, im)
    tol = 1e-9 * max(ep, lp, 1.0)
    if qty > 0:
        assert bp <= lp + tol        # long: bankruptcy at or below liquidation
        assert lp <= ep + tol
    else:
        assert bp >= lp - tol        # short: bankruptcy at or above liquidation
        assert lp >= ep - tol


@SETTINGS
@given(positions)
def test_isolated_equals_cross_without_other_positions(pos):
    t, qty, ep, im = _isolated(pos)
    assert m.isolated_liquidation_price(qty, ep, im, t) == m.cross_liquidation_price(qty, ep, im, t, 0.0, 0.0)


@SETTINGS
@given(positions, st.floats(min_value=0.0, max_value=1e5), st.floats(min_value=-1e5, max_value=1e5))
def test_cross_liquidation_price_solves_account_equation(pos, other_mm, other_upnl):
    t, qty, ep, wb = _isolated(pos)
    wb += other_mm  # keep the account solvent at entry more often
    lp = m.cross_liquidation_price(qty, ep, wb, t, other_mm, other_upnl)
    if lp == 0.0:
        return  # long never liquidated, or short already below maintenance at every price (documented)
    lhs = wb - other_mm + other_upnl + m.unrealized_pnl(qty, ep, lp)
    rhs = m.maintenance_margin(abs(qty) * lp, t)
    assert lhs == pytest.approx(rhs, rel=1e-7, abs=1e-7 * (abs(qty) * max(ep, lp) + abs(wb) + abs(other_upnl)))


@SETTINGS
@given(st.floats(min_value=1, max_value=10_000), st.sampled_from([1.0, -1.0]),
       st.floats(min_value=1_000, max_value=100_000), st.floats(min_value=1.0, max_value=100.0))
def test_inverse_equity_equals_mm_at_liquidation(contracts, side, ep, lev):
    t = _BIN.brackets_for("BTCUSDT")  # used as a coin-notional table: only its shape matters here
    cs = 100.0
    qty = side * contracts
    im = m.inverse_notional(qty, cs, ep) / lev
    lp = m.inverse_isolated_liquidation_price(qty, ep, im, t, cs)
    if lp == math.inf:
        assert side < 0
        return
    equity = im + m.inverse_unrealized_pnl(qty, ep, lp, cs)
    mm = m.maintenance_margin(m.inverse_notional(qty, cs, lp), t)
    assert equity == pytest.approx(mm, rel=1e-7, abs=1e-12)
