"""Risk units: what one liquidation decision covers, as legs for the valuation kernel.

A margin mode (`xmargin.margin.modes`) turns an account into risk units: a cross pool (one per
settlement asset, or one "USD" pool of every asset in multi-asset mode) or one isolated position.
This module holds the record and the builders the modes share; the numbers come from
`xmargin.margin.kernel`.
"""

from __future__ import annotations

import functools
import math

import attrs
import numpy as np

from xmargin.margin import formulas as margin
from xmargin.margin.collateral import STABLECOINS
from xmargin.margin.kernel import COLLATERAL, Legs, ScalarLegs

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
    `rows` (column, quantity, entry, size, table, leverage, fixed maintenance, scale) per leg,
    its positions first, then collateral legs, on the constant `base` plus `reserved` open-order
    margin. `legs` (numpy, `xmargin.margin.kernel.valuate`) and `scalar` (Python floats,
    `valuate_one`) are two views of the same rows, built when first read."""

    exchange: str
    asset: str
    name: str
    isolated: bool
    instruments: tuple[str, ...]
    rows: tuple
    base: float
    reserved: float
    level: int
    positions: int
    requirement: object = None  # a whole-unit margin model (portfolio margin); None: per-leg brackets

    @functools.cached_property
    def legs(self) -> Legs:
        rows = self.rows
        tables, where, table_index = [], {}, []
        for row in rows:
            table = row[4]
            if table is None:
                table_index.append(COLLATERAL)
                continue
            if id(table) not in where:
                where[id(table)] = len(tables)
                tables.append(table)
            table_index.append(where[id(table)])
        return Legs.build([r[1] for r in rows], [r[2] for r in rows], tables, size=[r[3] for r in rows],
                          table=table_index, leverage=[r[5] for r in rows],
                          fixed_maintenance=[math.nan if r[6] is None else r[6] for r in rows],
                          scale=[r[7] for r in rows], base=(self.base,), reserved=(self.reserved,),
                          requirement=self.requirement)

    @functools.cached_property
    def scalar(self) -> ScalarLegs:
        return ScalarLegs(tuple(r[1:] for r in self.rows), self.base, self.reserved, self.requirement)

    @functools.cached_property
    def columns(self) -> np.ndarray:
        """The feed column of each leg's price."""
        return np.array([r[0] for r in self.rows], dtype=np.int64)

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


def leverage_for(account, catalog, instrument: str) -> float:
    """The position's leverage: its own setting, else the venue's default."""
    return account.leverage.get(instrument, catalog.venues[account.exchange].leverage)


def order_margin(account, catalog, prices, asset: str) -> float:
    """Initial margin reserved by open orders that would increase exposure (settle `asset`);
    market orders at `prices` (last closes), limits at their limit price."""
    total = 0.0
    for order in account.orders.values():
        tradable = catalog.tradable(order.instrument)
        if not tradable.instrument.is_derivative or tradable.instrument.settle != asset or order.reduce_only:
            continue
        held = account.positions.get(order.instrument)
        held_quantity = held.quantity if held is not None else 0.0
        increase = abs(held_quantity + order.quantity) - abs(held_quantity)
        if increase > 0:
            price = order.limit_price if order.order_type == "limit" else float(prices[tradable.column])
            instrument = tradable.instrument
            total += margin.contract_notional(increase, price, instrument.is_inverse,
                                              instrument.contract_size) / order.leverage
    return total


def build_unit(account, catalog, *, asset: str, name: str, isolated: bool, positions, base: float,
               collateral=(), scales=None, reserved: float = 0.0) -> RiskUnit:
    """A unit of `positions` (ledger Positions) plus collateral legs ((column, haircut coin
    amount) pairs) on the constant `base`. `scales`: per position, the settle asset's price in
    the unit's currency (None: 1). An isolated position of a rule set with maintenance basis
    "entry" (linear contracts) gets its constant maintenance margin."""
    exchange = account.exchange
    entry_basis = isolated and catalog.venues[exchange].rules.liquidation.maintenance_basis == "entry"
    rows = []
    for n, position in enumerate(positions):
        tradable = catalog.tradable(position.instrument)
        instrument = tradable.instrument
        fixed = (margin.maintenance_margin(abs(position.quantity) * position.entry_price, tradable.brackets)
                 if entry_basis and not instrument.is_inverse else None)
        rows.append((tradable.column, position.quantity, position.entry_price,
                     instrument.contract_size if instrument.is_inverse else 0.0, tradable.brackets,
                     leverage_for(account, catalog, position.instrument), fixed,
                     1.0 if scales is None else scales[n]))
    rows.extend((column, amount, 0.0, 0.0, None, math.inf, None, 1.0) for column, amount in collateral)
    return RiskUnit(exchange=exchange, asset=asset, name=name, isolated=isolated,
                    instruments=tuple(p.instrument for p in positions), rows=tuple(rows), base=float(base),
                    reserved=float(reserved), level=account.warning_levels.get(name, 0), positions=len(positions))


def isolated_units(account, catalog) -> list[RiskUnit]:
    """Every isolated position on its own margin (the same in every margin mode), by instrument."""
    return [build_unit(account, catalog, asset=p.asset, name=p.instrument, isolated=True, positions=[p],
                       base=p.isolated_margin)
            for key, p in sorted(account.positions.items()) if p.margin_mode == ISOLATED]


def warned_pools(account) -> set:
    """Pools that carry a margin warning (their unit must exist so that the warning can clear)."""
    return {name[6:] for name, level in account.warning_levels.items() if level and name.startswith("cross:")}
