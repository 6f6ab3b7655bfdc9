"""Risk units: what one liquidation decision covers, as legs for the valuation kernel.

A margin mode (`xmargin.margin.modes`) turns an account into risk units: a cross pool (one per
settlement asset, or one "USD" pool of every asset in multi-asset mode) or one isolated position.
This module holds the record and the builders the modes share; the numbers come from
`xmargin.margin.kernel`.
"""

from __future__ import annotations

import math
import operator
from itertools import islice

import attrs
import numpy as np

from xmargin._arrays import concatenated_ranges
from xmargin._memos import memo
from xmargin.margin import formulas as margin
from xmargin.margin.collateral import STABLECOINS
from xmargin.margin.kernel import COLLATERAL, Legs

ISOLATED = "isolated"  # a position margined on its own margin
CROSS = "cross"  # a position margined by its account's pool
POSITION_MODES = (CROSS, ISOLATED)


def cross_unit_name(pool: str) -> str:
    return f"cross:{pool}"


@attrs.frozen(eq=False)
class RiskUnit:
    """One risk unit: who it is (`exchange`, `asset` = the pool: settlement asset, "USD" for a
    multi-asset pool; `name` = `cross:<pool>` or the isolated instrument; the `instruments` of its
    position legs; the margin-warning `level` it carries) and its legs for the valuation kernel:
    `rows` (column, quantity, entry, size, table, leverage, fixed maintenance, scale) per leg, its
    positions first, then collateral legs, on the constant `base` (open orders are not legs: their
    margin is the mode's `pool_order_margin`). The rows feed the kernel's scalar path directly
    (`xmargin.margin.kernel.unit_one`); `legs` is the same unit as numpy `Legs` for `valuate`.

    `scale_columns`: (leg index, feed column) for every leg whose scale is a coin's price read from
    the feed (a position settled in a coin, in a unit of another currency: a multi-asset or
    portfolio USD pool), the price the rows hold being that column's mark when the unit was built.
    The margin scan moves such a scale with that column's mark along the path
    (`xmargin.margin.risk.scan`); empty when every scale is constant (stablecoins, a pool in its
    own settlement asset)."""

    exchange: str
    asset: str
    name: str
    isolated: bool
    instruments: tuple[str, ...]
    rows: tuple
    base: float
    level: int
    positions: int
    requirement: object = None  # a whole-unit margin model (portfolio margin); None: per-leg brackets
    scale_columns: tuple = ()  # (leg index, feed column of the coin price that is its scale)
    _views: dict = attrs.field(factory=dict, repr=False)  # legs / columns, built when first read

    @property
    def legs(self) -> Legs:
        legs = self._views.get("legs")
        if legs is None:
            legs = self._views["legs"] = self._build_legs()
        return legs

    def _build_legs(self) -> Legs:
        return stack((self,))

    @property
    def columns(self) -> np.ndarray:
        """The feed column of each leg's price."""
        columns = self._views.get("columns")
        if columns is None:
            columns = self._views["columns"] = np.array([r[0] for r in self.rows], dtype=np.int64)
        return columns

    def at_scales(self, scales) -> "RiskUnit":
        """The same unit with the `scale_columns` legs' scales replaced by `scales` (one per
        `scale_columns` entry, in its order): the unit valued at other coin prices (a breach point's)."""
        rows = list(self.rows)
        for (leg, _), scale in zip(self.scale_columns, scales):
            rows[leg] = (*rows[leg][:7], float(scale))
        return attrs.evolve(self, rows=tuple(rows), views={})

    @property
    def quantities(self) -> np.ndarray:
        return self.legs.quantity

    @property
    def entries(self) -> np.ndarray:
        return self.legs.entry

    @property
    def tables(self) -> tuple:
        """The bracket table of each position leg."""
        return tuple(r[4] for r in self.rows[:self.positions])

    @property
    def equity_base(self) -> float:
        return self.base

    @property
    def inverse(self) -> np.ndarray:
        return self.legs.size > 0

    @property
    def fixed(self) -> bool:
        """Every position leg has a constant maintenance margin (entry-value basis)."""
        return bool(self.positions) and all(r[6] is not None for r in self.rows[:self.positions])


def asset_price(catalog, exchange: str, asset: str, prices) -> float:
    """USD price of an asset as `exchange` values it (stablecoins at 1; nan when unknown)."""
    if asset in STABLECOINS:
        return 1.0
    column = catalog.asset_columns.get((exchange, asset))
    return float(prices[column]) if column is not None and prices is not None else math.nan


def asset_price_column(catalog, exchange: str, asset: str) -> int | None:
    """The feed column whose mark `asset_price` reads for `asset` on `exchange` (None: a stablecoin,
    constant at 1, or an asset without a price in the feed)."""
    return None if asset in STABLECOINS else catalog.asset_columns.get((exchange, asset))


def leverage_for(account, catalog, instrument: str) -> float:
    """The position's leverage: its own setting, else the venue's default."""
    return account.leverage.get(instrument, catalog.venues[account.exchange].leverage)


_ORDER_MARGIN: dict[tuple, tuple] = memo()  # (exchange, asset) -> (orders, positions, catalog, price bytes, total)


def order_margin(account, catalog, prices, asset: str) -> float:
    """Initial margin reserved by open orders that would increase exposure (settle `asset`);
    market orders at `prices` (last closes), limits at their limit price.

    The sum runs over the orders in the book's order. When the book is the previous call's with
    orders appended (a strategy placing several orders at one bar), the previous sum is extended
    by those orders: the same additions in the same order, without redoing the others."""
    orders, positions = account.orders, account.positions
    key = (account.exchange, asset)
    last = _ORDER_MARGIN.get(key)
    values = orders.values()
    stamp = None if prices is None else np.asarray(prices, dtype=np.float64).tobytes()  # prices of the sum
    if last is not None and len(orders) > len(last[0]) and last[1] is positions and last[2] is catalog \
            and last[3] == stamp and all(map(operator.is_, last[0].values(), values)):
        total = last[4]
        for order in islice(values, len(last[0]), None):
            total = _add_order_margin(total, order, positions, catalog, prices, asset)
    else:
        total = 0.0
        for order in values:
            total = _add_order_margin(total, order, positions, catalog, prices, asset)
    if len(_ORDER_MARGIN) >= 16:
        _ORDER_MARGIN.clear()
    _ORDER_MARGIN[key] = (orders, positions, catalog, stamp, total)
    return total


_ORDER_PART: dict[int, tuple] = memo()  # id(order) -> (order, held position, price, asset, its margin or None)


def _add_order_margin(total: float, order, positions, catalog, prices, asset: str) -> float:
    """`total` plus the order's reserved margin (when it counts for `asset`); the order's share is
    kept per (order, held position, price), so a book re-summed after a fill recomputes only the
    orders whose position or price moved."""
    held = positions.get(order.instrument)
    hit = _ORDER_PART.get(id(order))
    if hit is not None and hit[0] is order and hit[1] is held and hit[3] == asset:
        part = hit[4]
        if part is not None and order.order_type != "limit" \
                and float(prices[catalog.tradable(order.instrument).column]) != hit[2]:
            part = _order_part(order, held, catalog, prices, asset)
    else:
        part = _order_part(order, held, catalog, prices, asset)
    return total if part is None else total + part


def _order_part(order, held, catalog, prices, asset: str):
    """The order's reserved initial margin (None: it reserves nothing for `asset`)."""
    if len(_ORDER_PART) >= 4096:
        _ORDER_PART.clear()
    tradable = catalog.tradable(order.instrument)
    part = price = None
    if tradable.instrument.is_derivative and tradable.instrument.settle == asset and not order.reduce_only:
        held_quantity = held.quantity if held is not None else 0.0
        increase = abs(held_quantity + order.quantity) - abs(held_quantity)
        if increase > 0:
            price = order.limit_price if order.order_type == "limit" else float(prices[tradable.column])
            instrument = tradable.instrument
            part = margin.contract_notional(increase, price, instrument.is_inverse,
                                            instrument.contract_size) / order.leverage
    _ORDER_PART[id(order)] = (order, held, price, asset, part)
    return part


_ROW_MEMO: dict[int, tuple] = memo()  # id(position) -> (position, what else its row depends on, the row)
_ROW_MEMO_SIZE = 16_384


def build_unit(account, catalog, *, asset: str, name: str, isolated: bool, positions, base: float,
               collateral=(), scales=None, scale_columns=None) -> RiskUnit:
    """A unit of `positions` (ledger Positions) plus collateral legs ((column, haircut coin
    amount) pairs) on the constant `base`. `scales`: per position, the settle asset's price in
    the unit's currency (None: 1); `scale_columns`: per position, the feed column that price was
    read from (None: a constant scale), `RiskUnit.scale_columns`. Rows: `position_rows`."""
    rows = position_rows(account, catalog, positions, isolated, scales)
    for column, amount in collateral:
        rows.append((column, amount, 0.0, 0.0, None, math.inf, None, 1.0))
    moving = () if scale_columns is None else tuple(
        (leg, column) for leg, column in enumerate(scale_columns) if column is not None)
    return RiskUnit(account.exchange, asset, name, isolated, tuple([p.instrument for p in positions]), tuple(rows),
                    float(base), account.warning_levels.get(name, 0), len(positions), scale_columns=moving)


def position_rows(account, catalog, positions, isolated: bool, scales=None) -> list:
    """The kernel rows of `positions` in a unit (isolated or a pool; `scales` as `build_unit`). An
    isolated position of a rule set with maintenance basis "entry" gets its constant maintenance margin
    on its entry value, and so does a cross position in a single-asset pool, linear or inverse (Bybit
    classic's cross examples take MM on the entry value: help.bybit.com 900000181046, USDT contract,
    and 360039261334, inverse); a multi-asset pool's positions stay at the mark.

    A position's row is kept while the position (an immutable value) and its leverage, scale and
    kind of unit are unchanged, so a pool rebuilt after one fill shares the other positions' rows
    (and the kernel's per-row valuations)."""
    exchange = account.exchange
    entry_basis = catalog.venues[exchange].rules.liquidation.maintenance_basis == "entry"
    tradables = catalog.tradables
    default_leverage = catalog.venues[exchange].leverage
    leverages = account.leverage
    memo = _ROW_MEMO
    rows = []
    for n, position in enumerate(positions):
        leverage = leverages.get(position.instrument, default_leverage)
        scale = 1.0 if scales is None else scales[n]
        hit = memo.get(id(position))
        if hit is not None and hit[0] is position and hit[1] is catalog and hit[2] == leverage and hit[3] == scale \
                and hit[4] is isolated and hit[5] is (scales is None):
            rows.append(hit[6])
            continue
        tradable = tradables[position.instrument]
        instrument = tradable.instrument
        inverse = instrument.is_inverse
        table = tradable.brackets.for_quantity(position.quantity, instrument.contract_size if inverse else 0.0)
        fixed = None
        if entry_basis and (isolated or scales is None):  # a multi-asset pool's positions stay at the mark
            fixed = margin.entry_value_maintenance(position.quantity, position.entry_price, table, inverse,
                                                   instrument.contract_size)
        row = (tradable.column, position.quantity, position.entry_price, instrument.contract_size if inverse else 0.0,
               table, leverage, fixed, scale)
        if len(memo) >= _ROW_MEMO_SIZE:
            memo.clear()
        memo[id(position)] = (position, catalog, leverage, scale, isolated, scales is None, row)
        rows.append(row)
    return rows


def isolated_units(account, catalog, positions=None) -> list[RiskUnit]:
    """Every isolated position on its own margin (the same in every margin mode), by instrument
    (`positions`: the account's isolated positions in that order, when the caller has them)."""
    if positions is None:
        positions = [p for _, p in sorted(account.positions.items()) if p.margin_mode == ISOLATED]
    return [build_unit(account, catalog, asset=p.asset, name=p.instrument, isolated=True, positions=(p,),
                       base=p.isolated_margin) for p in positions]


def warned_pools(account) -> set:
    """Pools that carry a margin warning (their unit must exist so that the warning can clear)."""
    return {name[6:] for name, level in account.warning_levels.items() if level and name.startswith("cross:")}


def stack(units, reserved=None) -> Legs:
    """Many units' legs as one kernel `Legs` (unit k of the list is kernel unit k), built straight
    from their rows (one transpose, no numpy call per unit). `reserved`: per unit, the open-order
    initial margin to add (default none)."""
    rows = [row for unit in units for row in unit.rows]
    counts = [len(unit.rows) for unit in units]
    if not rows:  # units of cash only: each keeps its constant (a wallet balance, an isolated margin)
        legs = Legs.build([], [], (), base=[u.base for u in units] if units else np.zeros(0), reserved=reserved)
        return attrs.evolve(legs, requirements=_requirements(units, counts))
    _, quantity, entry, size, table_of, leverage, fixed, scale = zip(*rows)
    tables = [t for t in dict.fromkeys(table_of) if t is not None]  # tables hash by identity
    where = {t: i for i, t in enumerate(tables)}
    where[None] = COLLATERAL
    return Legs(quantity=np.array(quantity, dtype=np.float64), entry=np.array(entry, dtype=np.float64),
                size=np.array(size, dtype=np.float64), table=np.array([where[t] for t in table_of], dtype=np.int64),
                tables=tuple(tables), leverage=np.array(leverage, dtype=np.float64),
                fixed_maintenance=np.array([math.nan if f is None else f for f in fixed], dtype=np.float64),
                scale=np.array(scale, dtype=np.float64),
                unit=np.repeat(np.arange(len(units), dtype=np.int64), counts),
                base=np.array([u.base for u in units], dtype=np.float64),
                reserved=np.zeros(len(units)) if reserved is None else np.asarray(reserved, dtype=np.float64),
                requirements=_requirements(units, counts))


def distinct_objects(objects) -> tuple[np.ndarray, np.ndarray]:
    """(index of each distinct object's first listing, in listing order; the distinct object of
    each listing), by identity."""
    ids = np.fromiter(map(id, objects), dtype=np.uint64, count=len(objects))
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.reshape(-1)]


def _columns(units) -> np.ndarray:
    """The feed column of every leg of `units`, in `stack`'s order."""
    return np.fromiter((row[0] for unit in units for row in unit.rows), dtype=np.int64,
                       count=sum(len(unit.rows) for unit in units))


def stack_repeated(units, reserved=None) -> tuple[Legs, np.ndarray]:
    """(`stack(units, reserved)`, each leg's feed column) when one unit object is listed many
    times (the units of one account state, valued at each of its snapshots): each distinct unit's
    rows are read once and its legs gathered for every listing. Same arrays as `stack`."""
    first, of = distinct_objects(units)
    if len(first) == len(units):
        return stack(units, reserved), _columns(units)
    distinct = [units[k] for k in first.tolist()]
    once = stack(distinct)
    counts = np.bincount(once.unit, minlength=once.units)
    starts = np.cumsum(counts) - counts
    per_listing = counts[of]
    leg = concatenated_ranges(starts[of], per_listing)
    with_model = {u: model for u, _, model in once.requirements}
    listing_first = np.cumsum(per_listing) - per_listing
    requirements = tuple((k, np.arange(listing_first[k], listing_first[k] + per_listing[k]), with_model[d])
                         for k, d in enumerate(of.tolist()) if d in with_model) if with_model else ()
    legs = Legs(quantity=once.quantity[leg], entry=once.entry[leg], size=once.size[leg], table=once.table[leg],
                tables=once.tables, leverage=once.leverage[leg], fixed_maintenance=once.fixed_maintenance[leg],
                scale=once.scale[leg], unit=np.repeat(np.arange(len(units), dtype=np.int64), per_listing),
                base=once.base[of], reserved=np.zeros(len(units)) if reserved is None else
                np.asarray(reserved, dtype=np.float64), requirements=requirements)
    return legs, _columns(distinct)[leg]


def _requirements(units, counts) -> tuple:
    """The kernel's (unit, leg indices, model) of the units margined as a whole (portfolio margin)."""
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return tuple((u, np.arange(starts[u], starts[u + 1]), unit.requirement)
                 for u, unit in enumerate(units) if unit.requirement is not None)
