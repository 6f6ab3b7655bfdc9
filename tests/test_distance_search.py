"""The distance search (`xmargin.analysis.distance.first_crossing`) finds the grid point a bisection
of [0, cap] finds: the first point of the grid cap x m / 2**48 at or past the crossing, so that
gap(x - step) > 0 >= gap(x), for any legs (linear and inverse, several brackets crossed, several
units at once) and for units margined as a whole (portfolio margin: the search values the unit's
model at every step, not its legs' brackets)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings, strategies as st

from xmargin.analysis.distance import GRID, ITERATIONS, MAX_UP, first_crossing
from xmargin.margin.brackets import Bracket, BracketTable
from xmargin.margin.kernel import Legs, margin_gap


def _table(rates, step: float) -> BracketTable:
    """Brackets every `step` of notional with increasing rates and the continuous deductions."""
    brackets, amount = [], 0.0
    for n, rate in enumerate(rates):
        floor = n * step
        if n:
            amount += floor * (rate - rates[n - 1])
        brackets.append(Bracket(notional_floor=floor, notional_cap=(n + 1) * step if n + 1 < len(rates) else math.inf,
                                maintenance_margin_rate=rate, maintenance_amount=amount,
                                max_leverage=1 / (2 * rate)))
    return BracketTable.from_brackets(brackets)


TABLES = (_table((0.004, 0.005, 0.01, 0.025, 0.05), 50_000.0), _table((0.01, 0.02, 0.05), 20_000.0))


def _gap_at(legs, mark, direction, k, x):
    """gap of every case at the moves x (one per case), through the kernel's own function."""
    return margin_gap(legs, k)(mark * (1.0 + direction * x[legs.unit]))


def _bisection(legs, mark, direction, k):
    """The plain search: ITERATIONS halvings of [0, cap] per case."""
    f = margin_gap(legs, k)
    n = legs.units
    down = np.bincount(legs.unit, direction < 0, minlength=n) > 0
    cap = np.where(down, 1.0, MAX_UP)

    def at(x):
        return f(mark * (1.0 + direction * x[legs.unit]))
    out = np.where(at(np.zeros(n)) <= 0, 0.0, math.inf)
    active = (at(np.zeros(n)) > 0) & (at(cap) <= 0)
    lo, hi = np.zeros(n), cap.copy()
    for _ in range(ITERATIONS):
        mid = 0.5 * (lo + hi)
        hit = at(mid) <= 0
        hi, lo = np.where(hit, mid, hi), np.where(hit, lo, mid)
    return np.where(active, hi, out), cap


leg = st.tuples(st.floats(0.05, 40.0), st.sampled_from((1.0, -1.0)), st.floats(0.5, 1.5), st.booleans(),
                st.sampled_from((0, 1)))


@settings(max_examples=60, deadline=None)
@given(units=st.lists(st.tuples(st.floats(-20_000.0, 400_000.0), st.lists(leg, min_size=1, max_size=4)),
                      min_size=1, max_size=5),
       k=st.sampled_from((1.0, 0.8)), all_adverse=st.booleans())
def test_the_search_finds_the_bisections_grid_point(units, k, all_adverse):
    quantity, entry, size, table, unit, mark, direction, base = [], [], [], [], [], [], [], []
    for u, (cash, members) in enumerate(units):
        base.append(cash)
        for n, (amount, sign, entry_ratio, inverse, t) in enumerate(members):
            price = 2_500.0 * (1 + n)
            quantity.append(sign * (amount * 100 if inverse else amount))  # inverse: 100 USD contracts
            size.append(100.0 if inverse else 0.0)
            entry.append(price * entry_ratio)
            table.append(t)
            unit.append(u)
            mark.append(price)
            direction.append(-sign if all_adverse or n == 0 else 0.0)
    legs = Legs.build(quantity, entry, TABLES, size=size, table=table, unit=unit, base=base)
    mark, direction = np.array(mark), np.array(direction)

    found = first_crossing(legs, mark, direction, k)
    reference, cap = _bisection(legs, mark, direction, k)
    step = cap / GRID
    inside = np.isfinite(found) & (found > 0)
    assert np.array_equal(np.isinf(found), np.isinf(reference))
    assert np.array_equal(found == 0, reference == 0)
    # the defining property, then the bisection's own point (within a grid step of float noise)
    assert (_gap_at(legs, mark, direction, k, np.where(inside, found, 0.0))[inside] <= 0).all()
    assert (_gap_at(legs, mark, direction, k, np.where(inside, found - step, 0.0))[inside] > 0).all()
    assert (np.abs(found[inside] - reference[inside]) <= step[inside]).all()


class _WholeUnit:
    """A unit margined as a whole: maintenance 20 % of the net notional (nothing like its legs'
    brackets); initial twice that."""

    def __init__(self, quantity):
        self.quantity = np.asarray(quantity, dtype=np.float64)

    def __call__(self, prices):
        net = np.abs((np.asarray(prices) * self.quantity).sum(axis=-1))
        return 0.2 * net, 0.4 * net


def test_a_unit_margined_as_a_whole_is_searched_with_its_model():
    # two units of one long leg each (2 BTC at 50,000 from 50,000): 20 % of the notional is far
    # above the brackets' 0.4 %, so the liquidation comes much sooner under the model
    quantity, entry, mark = [2.0, 2.0], [50_000.0, 50_000.0], np.array([50_000.0, 50_000.0])
    legs = Legs.build(quantity, entry, TABLES, table=[0, 0], unit=[0, 1], base=[40_000.0, 40_000.0])
    whole = Legs(quantity=legs.quantity, entry=legs.entry, size=legs.size, table=legs.table, tables=legs.tables,
                 leverage=legs.leverage, fixed_maintenance=legs.fixed_maintenance, scale=legs.scale, unit=legs.unit,
                 base=legs.base, reserved=legs.reserved,
                 requirements=((1, np.array([1]), _WholeUnit([2.0])),))
    direction = np.array([-1.0, -1.0])
    found = first_crossing(whole, mark, direction, 1.0)
    step = 1.0 / GRID
    gap = margin_gap(whole, 1.0)
    for x in (found, found - step):
        assert np.isfinite(x).all()
    assert (gap(mark * (1.0 + direction * found[whole.unit])) <= 0).all()
    assert (gap(mark * (1.0 + direction * (found - step)[whole.unit])) > 0).all()
    # by hand: equity 40,000 + 2 (p - 50,000) = 0.2 x 2 p  ->  p = 37,500, a 25 % fall
    assert abs(found[1] - 0.25) < 1e-12
    # the same unit on its legs' brackets: at p ~ 30,126 the notional 2 p is in the second bracket
    # (0.5 %, deduction 50): 40,000 + 2 (p - 50,000) = 0.005 x 2 p - 50  ->  p = 59,950 / 1.99
    assert abs(found[0] - (1 - 59_950.0 / 1.99 / 50_000.0)) < 1e-12
