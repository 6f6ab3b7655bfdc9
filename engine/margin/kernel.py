"""The valuation kernel: equity, maintenance and initial margin of risk units at price cases.

Every margin figure of the engine comes from here: the View and `decide` (one case, scalar fast
path `unit_one` / `valuate_one`), the surveillance scan (the intrabar path points of a stretch of
bars), the equity / positions / collateral tables (one case per snapshot), distance to liquidation
(shocked moves) and liquidation sizing. A margin mode (`xmargin.margin.modes`) only turns an account into
risk units; what a unit is worth at some prices is decided once, here.

Legs
----
A risk unit is a list of legs plus a constant (`base`: the cross wallet balance, the stablecoins'
collateral value, or an isolated position's margin). A leg is

* a position of a linear contract: PnL quantity x (price - entry), notional |quantity| x price;
* a position of an inverse contract (`size` > 0, the contract's quote value): PnL quantity x size x
  (1/entry - 1/price) and notional |quantity| x size / price, in the coin;
* a collateral leg (`table` -1, entry 0): a non-stable balance held as its haircut coin amount, so
  its "PnL" is its collateral value; it carries no margin.

`scale` converts a leg's money into the unit's currency (a multi-asset pool values positions
settled in another asset at that asset's price; 1 elsewhere). A position's maintenance margin is
the bracket formula at its (scaled) notional, or a constant (`fixed_maintenance`, not nan: an
isolated position margined on its entry value, Bybit). Initial margin = scaled notional /
leverage, plus the unit's `reserved` open-order margin.

A unit may instead carry a *requirement*: a model of the whole unit (portfolio margin,
`xmargin.margin.portfolio`) called with its legs' prices (C, L_unit) that returns its maintenance
and initial margin per case; the per-leg bracket figures are then not summed for that unit.

Units are numbered: `unit[k]` says which unit leg k belongs to, so one call can value many units
at once (every snapshot of a run, every shocked case of a distance search). Prices are one per leg
(shape (L,)), or one row per case (shape (C, L)); the results then have shape (U,) or (C, U).
"""

from __future__ import annotations

import math
from bisect import bisect_right

import attrs
import numpy as np

from xmargin._memos import memo
from xmargin.margin import formulas as margin

COLLATERAL = -1  # `Legs.table` of a collateral leg: no margin


@attrs.frozen(eq=False)
class Legs:
    """The legs of one or more risk units (columnar; see the module docstring). Money in the
    unit's currency (quote units, the coin for inverse pools, USD for a multi-asset pool)."""

    quantity: np.ndarray  # signed: base units (linear), contracts (inverse), haircut coins (collateral)
    entry: np.ndarray  # entry price (0 for a collateral leg)
    size: np.ndarray  # inverse contract size (quote units per contract); 0: linear or collateral
    table: np.ndarray  # index into `tables`; COLLATERAL (-1): a collateral leg
    tables: tuple  # BracketTable per index
    leverage: np.ndarray  # position leverage (inf for a collateral leg)
    fixed_maintenance: np.ndarray  # constant maintenance margin, nan: the bracket at the price
    scale: np.ndarray  # price of the settle asset in the unit's currency (1 almost everywhere)
    unit: np.ndarray  # unit index of each leg
    base: np.ndarray  # per unit: constant equity (wallet / stable collateral / isolated margin)
    reserved: np.ndarray  # per unit: initial margin of open orders
    requirements: tuple = ()  # (unit index, leg indices, model): units margined as a whole

    @property
    def units(self) -> int:
        return len(self.base)

    @classmethod
    def build(cls, quantity, entry, tables, *, size=None, table=None, leverage=None, fixed_maintenance=None,
              scale=None, unit=None, base=(0.0,), reserved=None, requirement=None) -> "Legs":
        """Legs from lists; defaults: linear, one table per leg in order, leverage inf, moving
        maintenance, scale 1, a single unit."""
        n = len(quantity)
        base = np.asarray(base, dtype=np.float64).reshape(-1)

        def floats(values, default):
            return np.full(n, default) if values is None else np.asarray(values, dtype=np.float64).reshape(n)

        return cls(quantity=floats(quantity, 0.0), entry=floats(entry, 0.0), size=floats(size, 0.0),
                   table=np.arange(n, dtype=np.int64) if table is None else np.asarray(table, dtype=np.int64),
                   tables=tuple(tables), leverage=floats(leverage, math.inf),
                   fixed_maintenance=floats(fixed_maintenance, math.nan), scale=floats(scale, 1.0),
                   unit=np.zeros(n, dtype=np.int64) if unit is None else np.asarray(unit, dtype=np.int64),
                   base=base, reserved=np.zeros(len(base)) if reserved is None else
                   np.asarray(reserved, dtype=np.float64).reshape(len(base)),
                   requirements=() if requirement is None else ((0, np.arange(n), requirement),))

    @classmethod
    def concat(cls, parts) -> "Legs":
        """Many units' legs as one set (units renumbered in order, tables merged by identity)."""
        parts = list(parts)
        tables: list = []
        where: dict = {}
        remapped, units, offset = [], [], 0
        for part in parts:
            index = np.empty(len(part.tables) + 1, dtype=np.int64)
            index[-1] = COLLATERAL
            for t, table in enumerate(part.tables):
                if id(table) not in where:
                    where[id(table)] = len(tables)
                    tables.append(table)
                index[t] = where[id(table)]
            remapped.append(index[part.table])
            units.append(part.unit + offset)
            offset += part.units

        def joined(name, dtype=np.float64):
            arrays = [getattr(p, name) for p in parts]
            return np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)

        return cls(quantity=joined("quantity"), entry=joined("entry"), size=joined("size"),
                   table=np.concatenate(remapped) if parts else np.zeros(0, dtype=np.int64), tables=tuple(tables),
                   leverage=joined("leverage"), fixed_maintenance=joined("fixed_maintenance"), scale=joined("scale"),
                   unit=np.concatenate(units) if parts else np.zeros(0, dtype=np.int64), base=joined("base"),
                   reserved=joined("reserved"), requirements=joined_requirements(parts))


_BATCHES: dict = memo()  # "last": (requirements tuple, its batches) (the distance search reuses one Legs)


def _requirement_batches(requirements) -> list:
    """[(batch function or None, unit indices, models, leg indices)] grouped by the models' type.
    (The memo is read in one lookup: another run's thread may replace or clear it at any moment.)"""
    last = _BATCHES.get("last")
    if last is not None and last[0] is requirements:
        return last[1]
    grouped: dict = {}
    for u, index, model in requirements:
        grouped.setdefault(getattr(type(model), "evaluate_many", None), []).append((u, index, model))
    batches = [(batch, np.array([u for u, _, _ in members], dtype=np.int64), [m for _, _, m in members],
                [index for _, index, _ in members]) for batch, members in grouped.items()]
    _BATCHES["last"] = (requirements, batches)
    return batches


def joined_requirements(parts) -> tuple:
    """The parts' unit requirements with their unit and leg indices shifted into the joined set."""
    out, units, legs = [], 0, 0
    for part in parts:
        out.extend((u + units, index + legs, model) for u, index, model in part.requirements)
        units += part.units
        legs += len(part.quantity)
    return tuple(out)


@attrs.frozen(eq=False)
class Valuation:
    """Per unit (shape (U,) or (C, U)): `equity` = base + every leg's PnL (the margin balance),
    `maintenance_margin`, `initial_margin` (positions plus open orders). Per leg (shape of the
    prices): `notional`, `unrealized_pnl` (collateral legs: their collateral value),
    `leg_maintenance`, `leg_initial`, all in the unit's currency except `notional` and
    `unrealized_pnl`, which are in the leg's settle asset (multiply by `Legs.scale`)."""

    equity: np.ndarray
    maintenance_margin: np.ndarray
    initial_margin: np.ndarray
    notional: np.ndarray
    unrealized_pnl: np.ndarray
    leg_maintenance: np.ndarray
    leg_initial: np.ndarray


def leg_values(legs: Legs, prices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(notional, PnL) of every leg at `prices` (shape (L,) or (C, L)), in each leg's settle asset."""
    prices = np.asarray(prices, dtype=np.float64)
    pnl = legs.quantity * (prices - legs.entry)
    notional = np.abs(legs.quantity) * prices
    inverse = legs.size > 0
    if inverse.any():
        safe_price = np.where(inverse, np.maximum(prices, 1e-300), 1.0)
        safe_entry = np.where(inverse, legs.entry, 1.0)
        pnl = np.where(inverse, legs.quantity * legs.size * (1.0 / safe_entry - 1.0 / safe_price), pnl)
        notional = np.where(inverse, np.abs(legs.quantity) * legs.size / safe_price, notional)
    return notional, pnl


def _per_unit(legs: Legs, values: np.ndarray) -> np.ndarray:
    """Sum a per-leg array (L,) or (C, L) into units: (U,) or (C, U)."""
    if legs.units == 1:
        return values.sum(axis=-1, keepdims=True)
    if values.ndim == 1:
        return np.bincount(legs.unit, values, minlength=legs.units)
    return np.stack([np.bincount(legs.unit, row, minlength=legs.units) for row in values])


def _table_legs(legs: Legs) -> tuple[list, np.ndarray | None]:
    """([(bracket table, leg indices)] of the tables some leg uses, mask of the legs with a fixed
    maintenance margin or None): what `_leg_maintenance` needs besides the notionals."""
    by_table = [(table, idx) for t, table in enumerate(legs.tables) if (idx := np.flatnonzero(legs.table == t)).size]
    fixed = ~np.isnan(legs.fixed_maintenance)
    return by_table, (fixed if fixed.any() else None)


def _leg_maintenance(legs: Legs, scaled: np.ndarray, by_table: list, fixed: np.ndarray | None) -> np.ndarray:
    """Maintenance margin of every leg at its scaled notional (`_table_legs` gives the rest)."""
    covered = sum(idx.size for _, idx in by_table) == len(legs.table)
    maintenance = np.empty_like(scaled) if covered else np.zeros_like(scaled)  # collateral legs: 0
    for table, idx in by_table:
        maintenance[..., idx] = margin.maintenance_margin_array(scaled[..., idx], table)
    if fixed is not None:
        maintenance = np.where(fixed, legs.fixed_maintenance, maintenance)
    return maintenance


def margin_parts(legs: Legs):
    """f(prices) -> (equity, maintenance margin) per unit, the same arithmetic as `valuate`'s (bit
    for bit) without the initial margin and with the per-table legs found once: for searches that
    value the same legs at many prices (xmargin.analysis.distance)."""
    if legs.requirements:  # units margined as a whole: `valuate`'s batch path
        def whole(prices):
            value = valuate(legs, prices)
            return value.equity, value.maintenance_margin
        return whole
    by_table, fixed = _table_legs(legs)

    def parts(prices):
        notional, pnl = leg_values(legs, prices)
        maintenance = _leg_maintenance(legs, notional * legs.scale, by_table, fixed)
        return legs.base + _per_unit(legs, pnl * legs.scale), _per_unit(legs, maintenance)
    return parts


def margin_gap(legs: Legs, k: float):
    """f(prices) -> k x equity - maintenance margin per unit (`margin_parts`)."""
    parts = margin_parts(legs)

    def gap(prices):
        equity, maintenance = parts(prices)
        return k * equity - maintenance
    return gap


def valuate(legs: Legs, prices: np.ndarray) -> Valuation:
    """Equity, maintenance and initial margin of every unit at every price case (vectorised)."""
    notional, pnl = leg_values(legs, prices)
    scaled = notional * legs.scale
    maintenance = _leg_maintenance(legs, scaled, *_table_legs(legs))
    initial = scaled / legs.leverage
    unit_maintenance = _per_unit(legs, maintenance)
    unit_initial = legs.reserved + _per_unit(legs, initial)
    if legs.requirements:  # units margined as a whole (portfolio margin); a model type with
        # `evaluate_many(models, prices, leg indices) -> (maintenance, initial)` of shape (C, K) values
        # all its units in one call
        p = np.asarray(prices, dtype=np.float64)
        one = unit_maintenance.ndim == 1
        for batch, units, models, indices in _requirement_batches(legs.requirements):
            if batch is not None:
                required_maintenance, required_initial = batch(models, p, indices)
            else:
                results = [model(p[..., index]) for model, index in zip(models, indices)]
                required_maintenance = np.stack([np.atleast_1d(r[0]) for r in results], axis=-1)
                required_initial = np.stack([np.atleast_1d(r[1]) for r in results], axis=-1)
            unit_maintenance[..., units] = required_maintenance[0] if one else required_maintenance
            unit_initial[..., units] = legs.reserved[units] + (required_initial[0] if one else required_initial)
    return Valuation(equity=legs.base + _per_unit(legs, pnl * legs.scale),
                     maintenance_margin=unit_maintenance, initial_margin=unit_initial,
                     notional=notional, unrealized_pnl=pnl, leg_maintenance=maintenance, leg_initial=initial)


# ------------------------------------------------------------------------------------------ scalar
# The scalar path takes one unit's legs as rows of Python values, the fields of `Legs` per leg:
# (feed column, quantity, entry, size, BracketTable or None for a collateral leg, leverage, fixed
# maintenance or None, scale); the column is the caller's and unused here. Per-event callers value
# one unit at one case, where numpy's per-call cost would dominate.

def rows_of(legs: Legs, unit: int = 0) -> tuple:
    """The scalar-path rows of one unit of `legs` (column -1)."""
    rows = []
    for k in np.flatnonzero(legs.unit == unit).tolist():
        t = int(legs.table[k])
        fixed = float(legs.fixed_maintenance[k])
        rows.append((-1, float(legs.quantity[k]), float(legs.entry[k]), float(legs.size[k]),
                     legs.tables[t] if t >= 0 else None, float(legs.leverage[k]),
                     None if math.isnan(fixed) else fixed, float(legs.scale[k])))
    return tuple(rows)


def leg_value_one(quantity: float, entry: float, size: float, price: float) -> tuple[float, float]:
    """(notional, PnL) of one leg at `price` (Python floats; `leg_values` for one leg)."""
    if size > 0:
        price = max(price, 1e-300)
        return abs(quantity) * size / price, quantity * size * (1.0 / entry - 1.0 / price)
    return abs(quantity) * price, quantity * (price - entry)


def leg_maintenance_one(notional: float, table, fixed, scale: float) -> float:
    """Maintenance margin of one leg at its (unscaled) notional, in the unit's currency."""
    if table is None:
        return 0.0
    if fixed is not None:
        return fixed
    n = notional * scale
    i = bisect_right(table.floor_list, n) - 1
    i = i if i > 0 else 0
    return n * table.rate_list[i] - table.amount_list[i]


def leg_figures(row, price: float) -> tuple:
    """One leg at one price: (position leg?, (notional, PnL, maintenance), PnL x scale, maintenance,
    initial margin x scale); `unit_one` adds them up."""
    _, quantity, entry, size, table, leverage, fixed, scale = row
    if size > 0:
        price = max(price, 1e-300)
        notional, leg_pnl = abs(quantity) * size / price, quantity * size * (1.0 / entry - 1.0 / price)
    else:
        notional, leg_pnl = abs(quantity) * price, quantity * (price - entry)
    if table is None:
        return False, None, leg_pnl * scale, 0.0, 0.0
    if fixed is None:
        n = notional * scale
        i = bisect_right(table.floor_list, n) - 1
        i = i if i > 0 else 0
        leg_maintenance = n * table.rate_list[i] - table.amount_list[i]
    else:
        leg_maintenance = fixed
    return True, (notional, leg_pnl, leg_maintenance), leg_pnl * scale, leg_maintenance, notional * scale / leverage


def unit_one(rows, base: float, prices) -> tuple[list, float, float, float, float]:
    """One unit (`rows` on the constant `base`) at one price per leg, split as account tables need
    it: (per position leg (notional, PnL, maintenance), the positions' PnL, collateral = base +
    collateral legs' value, maintenance, initial margin). equity = PnL + collateral; `valuate_one`
    in parts.

    Each leg's figures are `leg_figures` (which `xmargin.margin.incremental` reuses leg by leg); the
    sums run in row order."""
    out = []
    pnl = maintenance = initial = 0.0
    collateral = base
    for row, price in zip(rows, prices):
        position, figures, scaled_pnl, leg_maintenance, leg_initial = leg_figures(row, price)
        if not position:
            collateral += scaled_pnl
            continue
        pnl += scaled_pnl
        maintenance += leg_maintenance
        initial += leg_initial
        out.append(figures)
    return out, pnl, collateral, maintenance, initial


def valuate_one(rows, base: float, prices, reserved: float = 0.0) -> tuple[float, float, float]:
    """(equity, maintenance margin, initial margin) of one unit at one price per leg: the same
    numbers as `valuate` (held equal by a property test), in plain Python floats."""
    _, pnl, collateral, maintenance, initial = unit_one(rows, base, prices)
    return collateral + pnl, maintenance, initial + reserved


def required_one(requirement, prices) -> tuple[float, float]:
    """(maintenance, initial margin before open orders) of a whole-unit model at one case (one
    price per leg of the unit)."""
    maintenance, initial = requirement(np.asarray(prices, dtype=np.float64)[None, :])
    return float(maintenance[0]), float(initial[0])


def equity_one(rows, base: float, prices) -> float:
    """Equity of one unit at one case (`valuate_one`'s first number, without the margins; the
    scan's cheap bound evaluates it every stretch)."""
    pnl, collateral = 0.0, base
    for (_, quantity, entry, size, table, _, _, scale), price in zip(rows, prices):
        if size > 0:
            price = max(price, 1e-300)
            leg_pnl = quantity * size * (1.0 / entry - 1.0 / price)
        else:
            leg_pnl = quantity * (price - entry)
        if table is None:
            collateral += leg_pnl * scale
        else:
            pnl += leg_pnl * scale
    return collateral + pnl


def maintenance_one(rows, prices) -> float:
    """Maintenance margin of one unit at one case (`valuate_one`'s second number)."""
    maintenance = 0.0
    for (_, quantity, entry, size, table, _, fixed, scale), price in zip(rows, prices):
        if table is None:
            continue
        if fixed is not None:
            maintenance += fixed
            continue
        n = (abs(quantity) * size / max(price, 1e-300) if size > 0 else abs(quantity) * price) * scale
        i = bisect_right(table.floor_list, n) - 1
        i = i if i > 0 else 0
        maintenance += n * table.rate_list[i] - table.amount_list[i]
    return maintenance
