"""Incremental pool valuation: one cross pool of one account at one price case, carried over from
the last state of that pool valued, so that a fill's check does not cost more with every open
position (a wide book fills one order after another at the same prices).

The numbers are those of `xmargin.margin.kernel.unit_one` over the pool's rows, bit for bit: each
leg's figures are the kernel's (`leg_figures`), and the three sums (PnL, maintenance, initial
margin) are redone in row order from 0.0 by `functools.reduce(operator.add, ...)`, the same
additions `unit_one` makes. What is carried over is only which legs are unchanged: a position value
(immutable) that is the same object, at the same price, gives the same figures. Anything else (a
position opened, closed or moved between pools, another leverage setting, catalog or price case)
values the pool afresh.
"""

from __future__ import annotations

import operator
from functools import reduce
from itertools import compress

from xmargin._memos import memo
from xmargin.margin.kernel import leg_figures
from xmargin.margin.units import CROSS, position_rows

_add = operator.add
_legs, _pnl, _maintenance, _initial = (operator.itemgetter(k) for k in (1, 2, 3, 4))  # of `leg_figures`


class _Pool:
    """One pool valued at one price case (a record replaced whole, never changed in place)."""

    __slots__ = ("catalog", "leverage", "positions", "keys", "values", "slot", "rows", "getter", "prices",
                 "figures", "result_parts")

    def __init__(self, catalog, leverage, positions, keys, values, slot, rows, getter, prices, figures):
        self.catalog, self.leverage, self.positions = catalog, leverage, positions
        self.keys, self.values, self.slot = keys, values, slot  # slot: account order index -> member index
        self.rows, self.getter, self.prices, self.figures = rows, getter, prices, figures
        self.result_parts = (
            list(map(_legs, figures)),
            reduce(_add, map(_pnl, figures), 0.0),
            reduce(_add, map(_maintenance, figures), 0.0),
            reduce(_add, map(_initial, figures), 0.0),
        )


_LAST: dict[tuple, _Pool] = memo()  # (exchange, pool) -> the last state valued


def _member(position, pool: str) -> bool:
    """A leg of the pool: a cross position settled in it (as `xmargin.margin.modes.cross` pools them)."""
    return position.asset == pool and position.margin_mode == CROSS


def _prices_of(getter, values: list, count: int) -> tuple:
    if count == 0:
        return ()
    found = getter(values)
    return found if count > 1 else (found,)


def _afresh(account, catalog, values_list, pool: str) -> _Pool:
    positions = account.positions
    keys = list(positions)
    values = list(positions.values())
    order = sorted(range(len(keys)), key=keys.__getitem__)  # the pool's legs by instrument, as its unit
    members = [i for i in order if _member(values[i], pool)]
    slot = {i: j for j, i in enumerate(members)}
    rows = position_rows(account, catalog, [values[i] for i in members], False)
    getter = operator.itemgetter(*[row[0] for row in rows]) if rows else None
    prices = _prices_of(getter, values_list, len(rows))
    figures = [leg_figures(row, price) for row, price in zip(rows, prices)]
    return _Pool(catalog, account.leverage, positions, keys, values, slot, rows, getter, prices, figures)


def _carried(last: _Pool, account, catalog, values_list, pool: str) -> _Pool | None:
    """The pool from `last` when only member positions changed value (same instruments, same pools);
    None when it must be valued afresh."""
    positions = account.positions
    if last.catalog is not catalog or last.leverage is not account.leverage:
        return None
    rows, figures, keys, values = last.rows, last.figures, last.keys, last.values
    if positions is not last.positions:
        keys = list(positions)
        if keys != last.keys:
            return None
        values = list(positions.values())
        changed = list(compress(range(len(values)), map(operator.is_not, values, last.values)))
        if changed:
            rows, figures = list(rows), list(figures)
            for i in changed:
                position = values[i]
                member = _member(position, pool)
                j = last.slot.get(i)
                if member != (j is not None):
                    return None
                if member:
                    rows[j] = position_rows(account, catalog, [position], False)[0]
                    figures[j] = None
    prices = _prices_of(last.getter, values_list, len(rows))
    if prices != last.prices:
        figures = [None] * len(rows)
    if figures is not last.figures:
        figures = [f if f is not None else leg_figures(row, price) for f, row, price in zip(figures, rows, prices)]
    elif values is last.values:
        return last
    return _Pool(catalog, account.leverage, positions, keys, values, last.slot, rows, last.getter, prices, figures)


def pool_value(account, catalog, marks, pool: str) -> tuple[list, float, float, float, float]:
    """`unit_one(rows, balance, prices)` of the cross pool `pool` (its cross positions settled in
    `pool`, by instrument, on the pool's wallet balance) at the mark row `marks`."""
    values_list = marks.tolist()
    key = (account.exchange, pool)
    last = _LAST.get(key)
    state = _carried(last, account, catalog, values_list, pool) if last is not None else None
    if state is None:
        state = _afresh(account, catalog, values_list, pool)
    if state is not last:
        if len(_LAST) >= 64:
            _LAST.clear()
        _LAST[key] = state
    out, pnl, maintenance, initial = state.result_parts
    return list(out), pnl, float(account.balance(pool)), maintenance, initial
