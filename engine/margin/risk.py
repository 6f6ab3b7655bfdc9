"""Vectorised margin surveillance between the moments that need per-event Python work.

Between two state changes an account's positions are fixed, so its margin over a run of bars is
an array expression of the mark prices. `scan` evaluates every risk unit (a cross pool per
settlement asset; each isolated position on its own) along the intrabar price path and returns the
first point where a unit reaches maintenance (liquidation) or changes margin-warning level.

Intrabar path (design decision 5): `path` walks each bar as open, the extreme nearer the open,
the other extreme, close, in step across instruments; `worst-case` puts every position at its own
adverse extreme (low for longs, high for shorts); `close` looks at closes only.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from xmargin.margin import formulas as margin
from xmargin.margin.accounting import MULTI_ASSET_POOL, is_multi_asset
from xmargin.margin.collateral import STABLECOINS, collateral_value, effective_quantity, schedule_for

POINTS = {"path": 4, "worst-case": 3, "close": 1}


@attrs.frozen(eq=False)
class RiskUnit:
    """What one liquidation decision covers: a cross pool (`isolated=False`) or one isolated
    position. The first `positions` columns are positions (quantity, entry); in multi-asset mode
    the rest are collateral legs: a non-stable balance as a "position" of its haircut coin amount
    with entry 0, so its value moves with its price. `equity_base` is the constant rest: the
    cross wallet balance, the stablecoins' collateral value, or the isolated margin."""

    exchange: str
    asset: str
    name: str
    isolated: bool
    instruments: tuple[str, ...]
    columns: np.ndarray
    quantities: np.ndarray
    entries: np.ndarray
    tables: tuple
    equity_base: float
    level: int
    positions: int
    inverse: np.ndarray | None = None  # per column: an inverse contract (None: all linear)
    sizes: np.ndarray | None = None  # per column: contract size (inverse: quote units per contract)
    fixed_maintenance: float | None = None  # an isolated position margined on its entry value (Bybit)


@attrs.frozen(eq=False)
class Breach:
    """The first point of a scan where a unit needs attention."""

    unit: RiskUnit
    row: int
    point: int
    liquidation: bool
    level: int
    margin_ratio: float
    prices: np.ndarray


def cross_unit_name(asset: str) -> str:
    return f"cross:{asset}"


def risk_units(ledger, catalog, prices: np.ndarray | None = None) -> list[RiskUnit]:
    """The risk units of every account, in a stable order (exchange, cross pools, isolated).
    `prices` (marks at the start of the stretch) set the effective amount of USD-tiered collateral."""
    units = []
    for exchange in sorted(ledger.accounts):
        account = ledger.accounts[exchange]
        multi_asset = is_multi_asset(catalog, exchange)
        pools: dict[str, list] = {}
        isolated = []
        for key in sorted(account.positions):
            position = account.positions[key]
            if position.margin_mode == "isolated":
                isolated.append(position)
            else:
                pools.setdefault(MULTI_ASSET_POOL if multi_asset else position.asset, []).append(position)
        if multi_asset and (pools or account.warning_levels.get(cross_unit_name(MULTI_ASSET_POOL))):
            positions = pools.pop(MULTI_ASSET_POOL, [])
            name = cross_unit_name(MULTI_ASSET_POOL)
            units.append(_multi_asset_unit(account, catalog, positions, prices, account.warning_levels.get(name, 0)))
        for name, level in account.warning_levels.items():  # a pool whose warning must be able to clear
            if level and name.startswith("cross:") and name[6:] not in pools and not multi_asset:
                pools[name[6:]] = []
        for asset in sorted(pools):
            positions = pools[asset]
            name = cross_unit_name(asset)
            units.append(_unit(exchange, asset, name, False, positions, catalog, account.balance(asset),
                               account.warning_levels.get(name, 0)))
        entry_basis = catalog.venues[exchange].rules.liquidation.maintenance_basis == "entry"
        for position in isolated:
            unit = _unit(exchange, position.asset, position.instrument, True, [position], catalog,
                         position.isolated_margin, account.warning_levels.get(position.instrument, 0))
            if entry_basis and unit.inverse is None:
                fixed = margin.maintenance_margin(abs(position.quantity) * position.entry_price, unit.tables[0])
                unit = attrs.evolve(unit, fixed_maintenance=fixed)
            units.append(unit)
    return units


def _unit(exchange, asset, name, isolated, positions, catalog, equity_base, level, legs=()) -> RiskUnit:
    """`legs`: (column, effective quantity) collateral legs appended after the positions."""
    tradables = [catalog.tradable(p.instrument) for p in positions]
    inverse = [t.instrument.is_inverse for t in tradables]
    return RiskUnit(exchange=exchange, asset=asset, name=name, isolated=isolated,
                    instruments=tuple(p.instrument for p in positions),
                    columns=np.array([t.column for t in tradables] + [c for c, _ in legs], dtype=np.int64),
                    quantities=np.array([p.quantity for p in positions] + [q for _, q in legs], dtype=np.float64),
                    entries=np.array([p.entry_price for p in positions] + [0.0] * len(legs), dtype=np.float64),
                    tables=tuple(t.brackets for t in tradables), equity_base=equity_base, level=level,
                    positions=len(positions),
                    inverse=np.array(inverse + [False] * len(legs), dtype=bool) if any(inverse) else None,
                    sizes=np.array([t.instrument.contract_size for t in tradables] + [1.0] * len(legs))
                    if any(inverse) else None)


def _multi_asset_unit(account, catalog, positions, prices, level) -> RiskUnit:
    """One USD pool: stablecoins at their collateral value (constant), every other balance as a
    collateral leg priced from the feed, and every cross position of any settlement asset."""
    rules = catalog.venues[account.exchange].rules
    base = 0.0
    legs = []
    for asset in sorted(account.balances):
        balance = account.balances[asset]
        if balance == 0:
            continue
        schedule = schedule_for(rules, asset)
        if asset in STABLECOINS:
            base += collateral_value(balance, 1.0, schedule)
            continue
        column = catalog.asset_columns.get((account.exchange, asset))
        if column is None:
            continue
        price = float(prices[column]) if prices is not None else math.nan
        legs.append((column, effective_quantity(balance, price, schedule)))
    name = cross_unit_name(MULTI_ASSET_POOL)
    return _unit(account.exchange, MULTI_ASSET_POOL, name, False, positions, catalog, base, level, legs)


def path_prices(feed, start: int, stop: int, columns: np.ndarray, quantities: np.ndarray, mode: str) -> np.ndarray:
    """Mark prices along the intrabar path: shape (bars, points, positions)."""
    close = feed.mark_close[start:stop][:, columns]
    if mode == "close":
        return close[:, None, :]
    high = feed.mark_high[start:stop][:, columns]
    low = feed.mark_low[start:stop][:, columns]
    open_ = feed.mark_open[start:stop][:, columns]
    if mode == "worst-case":
        adverse = np.where(quantities > 0, low, high)
        return np.stack((open_, adverse, close), axis=1)
    high_first = (high - open_) <= (open_ - low)
    near = np.where(high_first, high, low)
    far = np.where(high_first, low, high)
    return np.stack((open_, near, far, close), axis=1)


def unit_curves(unit: RiskUnit, prices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(equity, maintenance margin) along flattened path points: equity = base + unrealised PnL."""
    flat = prices.reshape(-1, prices.shape[-1])
    maintenance = np.zeros(flat.shape[0])  # collateral legs (after the positions) need none
    if unit.fixed_maintenance is not None:
        equity = unit.equity_base + (flat - unit.entries) @ unit.quantities
        return equity, maintenance + unit.fixed_maintenance
    if unit.inverse is None:
        equity = unit.equity_base + (flat - unit.entries) @ unit.quantities
        for k, table in enumerate(unit.tables):
            maintenance += margin.maintenance_margin_array(flat[:, k] * abs(unit.quantities[k]), table)
        return equity, maintenance
    equity = np.full(flat.shape[0], unit.equity_base)
    for k in range(len(unit.columns)):
        inverse, size = bool(unit.inverse[k]), float(unit.sizes[k])
        equity += margin.contract_pnl(unit.quantities[k], unit.entries[k], flat[:, k], inverse, size)
        if k < unit.positions:
            notional = margin.contract_notional(unit.quantities[k], flat[:, k], inverse, size)
            maintenance += margin.maintenance_margin_array(notional, unit.tables[k])
    return equity, maintenance


def provably_quiet(unit: RiskUnit, feed, start: int, stop: int, thresholds: np.ndarray) -> bool:
    """True when no path point in bars [start, stop) can breach or warn, by a cheap bound: every
    holding at its own worst mark of the whole stretch (longs and collateral at the lowest low,
    shorts at the highest high) against maintenance at every position's highest notional. The
    bound is looser than any intrabar path, so True is exact; False sends the unit to the full scan.
    Only used while the unit carries no warning (a warned unit must also be able to clear)."""
    if unit.level:
        return False
    lows, highs = feed.mark_low, feed.mark_high
    equity = unit.equity_base
    maintenance = 0.0
    for k in range(len(unit.columns)):
        column, quantity = int(unit.columns[k]), float(unit.quantities[k])
        high = float(highs[start:stop, column].max())
        low = float(lows[start:stop, column].min())
        worst = low if quantity > 0 else high  # PnL rises with the price for longs, linear or inverse
        if unit.inverse is not None and unit.inverse[k]:
            size = float(unit.sizes[k])
            equity += margin.contract_pnl(quantity, float(unit.entries[k]), worst, True, size)
            if k < unit.positions:  # a coin notional is largest at the lowest price
                maintenance += margin.maintenance_margin(margin.contract_notional(quantity, low, True, size),
                                                         unit.tables[k])
            continue
        equity += quantity * (worst - float(unit.entries[k]))
        if k < unit.positions:
            maintenance += margin.maintenance_margin(abs(quantity) * high, unit.tables[k])
    if unit.fixed_maintenance is not None:
        maintenance = unit.fixed_maintenance
    limit = float(thresholds[0]) if len(thresholds) else 1.0
    return equity > 0 and maintenance < limit * equity  # False for nan prices: the full scan decides


def scan(units, feed, start: int, stop: int, first_point: int, mode: str, thresholds: np.ndarray) -> list[Breach]:
    """Breaches at the earliest path point in bars [start, stop), from `first_point` of bar `start`.

    Returns every unit breaching at that same point (an empty list when the range is quiet).
    """
    if stop <= start or not units:
        return []
    points = POINTS[mode]
    candidates = []
    for unit in units:
        if unit.positions == 0:  # no position at risk: a warning left over clears at once
            if unit.level:
                candidates.append((start * points + first_point, unit, False, 0, 0.0, None, None))
            continue
        if provably_quiet(unit, feed, start, stop, thresholds):
            continue
        prices = path_prices(feed, start, stop, unit.columns, unit.quantities, mode)
        equity, maintenance = unit_curves(unit, prices)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(equity > 0, maintenance / equity, np.inf)
        levels = np.searchsorted(thresholds, ratio, side="right")
        flags = (equity <= maintenance) | (levels != unit.level)
        flags[:first_point] = False
        hits = np.flatnonzero(flags)
        if hits.size:
            point = int(hits[0])
            candidates.append((start * points + point, unit, bool(equity[point] <= maintenance[point]),
                               int(levels[point]), float(ratio[point]), prices, (equity, maintenance, point)))
    if not candidates:
        return []
    earliest = min(c[0] for c in candidates)
    found = [c for c in candidates if c[0] == earliest]
    out = []
    for flat_point, unit, liquidation, level, ratio, prices, curves in found:
        row, point = divmod(flat_point, points)
        trigger = None
        if liquidation:
            trigger = trigger_prices(unit, feed, prices, curves, row - start, point, points)
        out.append(Breach(unit, row, point, liquidation, level, ratio, trigger))
    return out


def trigger_prices(unit: RiskUnit, feed, prices, curves, bar: int, point: int, points: int) -> np.ndarray:
    """The marks at which the unit reached maintenance. A bar opening beyond it (a gap) triggers at
    the open; otherwise at the exact liquidation price for one position, and by linear
    interpolation of (equity - maintenance) along the path for several."""
    current = prices[bar, point]
    if point == 0:
        return current.copy()
    previous = prices[bar, point - 1]
    if len(unit.columns) == 1:
        quantity, entry, table = float(unit.quantities[0]), float(unit.entries[0]), unit.tables[0]
        inverse = unit.inverse is not None and bool(unit.inverse[0])
        size = float(unit.sizes[0]) if inverse else 1.0
        if unit.fixed_maintenance is not None:
            exact = margin.isolated_liquidation_price_entry_mm(quantity, entry, unit.equity_base, table)
        else:
            exact = margin.contract_liquidation_price(quantity, entry, unit.equity_base, table, inverse, size)
        low, high = sorted((float(previous[0]), float(current[0])))
        if math.isfinite(exact) and exact > 0:
            return np.array([min(max(exact, low), high)])
    equity, maintenance, flat = curves
    gap_before = equity[flat - 1] - maintenance[flat - 1]
    gap_now = equity[flat] - maintenance[flat]
    fraction = gap_before / (gap_before - gap_now) if gap_before != gap_now else 1.0
    return previous + fraction * (current - previous)
