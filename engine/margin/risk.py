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
from bisect import bisect_left

import attrs
import numpy as np

from xmargin._arrays import sorted_unique
from xmargin.margin import formulas as margin
from xmargin.margin.kernel import equity_one, leg_value_one, maintenance_one, valuate
from xmargin.margin.modes import account_units
from xmargin.margin.units import RiskUnit

POINTS = {"path": 4, "worst-case": 3, "close": 1}

# The moments of a bar a snapshot can be valued at (`xmargin.output.snapshots`, the tables' `valued_at`),
# and which of them each path point of an intrabar mode is (`path_prices` orders its points so).
VALUED_AT = ("open", "near extreme", "far extreme", "adverse extreme", "close")
MOMENTS = {"path": ("open", "near extreme", "far extreme", "close"), "worst-case": ("open", "adverse extreme", "close"),
           "close": ("close",)}
_OPEN, _NEAR, _FAR, _ADVERSE, _CLOSE = range(len(VALUED_AT))


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


def risk_units(ledger, catalog, prices: np.ndarray | None = None, now_ns: int | None = None) -> list[RiskUnit]:
    """The risk units of every account, in a stable order (exchange, then as its margin mode
    lists them: pools, isolated positions). `prices` (marks at the start of the stretch) value
    the collateral legs of modes whose units move with collateral prices; `now_ns` is the time of
    the stretch's start (portfolio margin: a dated future's time to expiry)."""
    units = []
    for exchange in sorted(ledger.accounts):
        units.extend(account_units(catalog, ledger.accounts[exchange], prices, now_ns))
    return units


def path_prices(feed, start: int, stop: int, columns: np.ndarray, quantities: np.ndarray, mode: str) -> np.ndarray:
    """Mark prices along the intrabar path: shape (bars, points, positions)."""
    close = feed.mark_close[start:stop][:, columns]
    if mode == "close":
        return close[:, None, :]
    high = feed.mark_high[start:stop][:, columns]
    low = feed.mark_low[start:stop][:, columns]
    open_ = feed.mark_open[start:stop][:, columns]
    if mode == "worst-case":
        return np.stack((open_, _adverse(high, low, quantities), close), axis=1)
    return np.stack((open_, *_near_far(open_, high, low), close), axis=1)


def _near_far(open_, high, low) -> tuple[np.ndarray, np.ndarray]:
    """The path's second and third points: the extreme nearer the open first (the high on a tie)."""
    high_first = (high - open_) <= (open_ - low)
    return np.where(high_first, high, low), np.where(high_first, low, high)


def _adverse(high, low, quantities) -> np.ndarray:
    """Each holding's adverse extreme: the low for a long (a positive quantity), else the high."""
    return np.where(quantities > 0, low, high)


def moment_prices(feed, rows: np.ndarray, columns: np.ndarray, moments: np.ndarray, holdings: np.ndarray,
                  lasts: bool = False) -> np.ndarray:
    """Per element k: feed column `columns[k]`'s mark (`lasts`: last price) at moment `moments[k]`
    (an index of `VALUED_AT`) of bar `rows[k]`, as the margin watch's path has it (`path_prices`):
    the open, the extreme nearer the open, the other extreme, the adverse extreme of a holding of
    `holdings[k]` (the low when positive, else the high), or the close. Last prices follow the same
    rules on their own open, high and low. Gathered at once (one fancy index per moment present)."""
    o, h, l, c = (feed.open, feed.high, feed.low, feed.close) if lasts else (
        feed.mark_open, feed.mark_high, feed.mark_low, feed.mark_close)
    out = np.asarray(c[rows, columns], dtype=np.float64)
    opened = moments == _OPEN
    if opened.any():
        out[opened] = o[rows[opened], columns[opened]]
    inside = ~opened & (moments != _CLOSE)
    if inside.any():
        r, k, m = rows[inside], columns[inside], moments[inside]
        open_, high, low = o[r, k], h[r, k], l[r, k]
        near, far = _near_far(open_, high, low)
        out[inside] = np.select([m == _NEAR, m == _FAR], [near, far], _adverse(high, low, holdings[inside]))
    return out


def _holdings(catalog, account, width: int) -> np.ndarray:
    """Per feed column, the quantity `account` holds at that price (a coin's balance at its price
    column, else a position's quantity; 1 where it holds nothing): what an adverse extreme reads."""
    out = np.ones(width)
    for key, position in account.positions.items():
        out[catalog.tradable(key).column] = position.quantity
    for asset, amount in account.balances.items():
        column = catalog.asset_columns.get((account.exchange, asset))
        if column is not None and amount:
            out[column] = amount
    return out


def account_prices_at(feed, catalog, account, row: int, moment: int, lasts: bool = False) -> np.ndarray:
    """Every feed column's mark (`lasts`: last price) at moment `moment` (a `VALUED_AT` index) of
    bar `row`, as `account` sees it there (an adverse extreme: at its own holdings' adverse side,
    `moment_prices`): what a snapshot, or an auto-exchange, at that moment values at."""
    if moment == _CLOSE:
        return (feed.close if lasts else feed.mark_close)[row]
    if moment == _OPEN:
        return (feed.open if lasts else feed.mark_open)[row]
    width = len(feed.keys)
    return moment_prices(feed, np.full(width, row), np.arange(width), np.full(width, moment),
                         _holdings(catalog, account, width), lasts)


def scale_path(unit: RiskUnit, feed, start: int, stop: int, mode: str) -> np.ndarray | None:
    """Every leg's scale along the intrabar path, shape (bars, points, legs) as `path_prices`: a
    `RiskUnit.scale_columns` leg's is its coin's mark on the same path (the worst-case mode's adverse
    extreme picked by the leg's own quantity: for a long inverse leg the coin falling is adverse too),
    every other leg keeps its constant. None when the unit has no such leg (every scale constant)."""
    if not unit.scale_columns:
        return None
    legs, columns = (np.array(v, dtype=np.int64) for v in zip(*unit.scale_columns))
    coins = path_prices(feed, start, stop, columns, unit.quantities[legs], mode)
    scales = np.empty((*coins.shape[:2], len(unit.rows)))
    scales[...] = unit.legs.scale
    scales[..., legs] = coins
    return scales


def unit_curves(unit: RiskUnit, prices: np.ndarray, scales: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(equity, maintenance margin) along flattened path points (the valuation kernel); `scales`
    (shape of `prices`, `scale_path`): each leg's scale at each point (None: the unit's constants)."""
    legs = unit.legs
    if scales is not None:
        legs = attrs.evolve(legs, scale=scales.reshape(-1, scales.shape[-1]))
    value = valuate(legs, prices.reshape(-1, prices.shape[-1]))
    return value.equity[:, 0], value.maintenance_margin[:, 0]


def provably_quiet(unit: RiskUnit, extremes: tuple[list, list], thresholds: np.ndarray) -> bool:
    """True when no path point in bars [start, stop) can breach or warn, by a cheap bound: every
    holding at its own worst mark of the whole stretch (longs and collateral at the lowest low,
    shorts at the highest high) against maintenance at every position's largest notional (linear:
    highest high; inverse: lowest low). The bound is looser than any intrabar path, so True is
    exact; False sends the unit to the full scan. Only used while the unit carries no warning (a
    warned unit must also be able to clear). Valued with the kernel's scalar path. `extremes`: the
    stretch's (highest mark high, lowest mark low) per feed column (`stretch_extremes`). A leg whose
    scale moves with a coin's price (`RiskUnit.scale_columns`) takes the end of that coin's range
    that is worst for it (`_bounding_scales`)."""
    if unit.level or unit.requirement is not None:  # a whole-unit model has no monotone bound
        return False
    highs, lows = extremes
    worst, largest = [], []
    for row in unit.rows:
        low, high = lows[row[0]], highs[row[0]]
        worst.append(low if row[1] > 0 else high)
        largest.append(low if row[3] > 0 else high)  # an inverse (coin) notional is largest at the low
    rows = for_maintenance = unit.rows
    if unit.scale_columns:
        rows, for_maintenance = _bounding_scales(unit, worst, extremes)
    equity = equity_one(rows, unit.base, worst)
    maintenance = maintenance_one(for_maintenance, largest)
    limit = float(thresholds[0]) if len(thresholds) else 1.0
    return equity > 0 and maintenance < limit * equity  # False for nan prices: the full scan decides


def _bounding_scales(unit: RiskUnit, worst: list, extremes: tuple[list, list]) -> tuple[tuple, tuple]:
    """(rows for the equity bound, rows for the maintenance bound) of `provably_quiet`: each
    `RiskUnit.scale_columns` leg with its scale (a coin's price, positive) at the end of the coin's
    range over the stretch [lowest low, highest high] that is worst for it, whatever its own mark does:
    for equity, with the leg's PnL (in its coin) at its worst mark `worst[leg]` (the low for a long,
    the high for a short: its least over the stretch), the low when that PnL is a gain, else the high
    (the least of PnL x price over the two ranges); for maintenance, the high (the largest coin
    notional x the largest price). Nan prices stay nan (the bound then says False)."""
    highs, lows = extremes
    for_equity, for_maintenance = list(unit.rows), list(unit.rows)
    for leg, column in unit.scale_columns:
        row = unit.rows[leg]
        pnl = leg_value_one(row[1], row[2], row[3], worst[leg])[1]
        for_equity[leg] = (*row[:7], lows[column] if pnl >= 0 else highs[column])
        for_maintenance[leg] = (*row[:7], highs[column])
    return tuple(for_equity), tuple(for_maintenance)


def stretch_extremes(feed, start: int, stop: int) -> tuple[list, list]:
    """(highest mark high, lowest mark low) of bars [start, stop) per feed column, as lists."""
    return feed.mark_high[start:stop].max(axis=0).tolist(), feed.mark_low[start:stop].min(axis=0).tolist()


class PlannedExtremes:
    """`stretch_extremes` of the stretches a run will scan, computed in one pass: the segments between
    consecutive `boundaries` (rows where the loop stops anyway: wakes, funding, expiries). Any other
    [start, stop) is computed when asked. Same numbers either way (max / min, nan propagating). Built
    at the first question, and not at all when the planned stretches average under `MIN_ROWS` rows (a
    strategy woken at every bar: the direct max of a row or two is as cheap as a lookup, and the plan
    would copy the marks)."""

    MIN_ROWS = 8
    PLAN_ROWS = 262_144  # rows of marks read per block while planning

    def __init__(self, feed, boundaries):
        self._feed = feed
        self._boundaries = boundaries
        self._starts = None

    def _plan(self) -> None:
        feed = self._feed
        total = len(feed.ts)
        starts = sorted_unique(np.asarray(list(self._boundaries), dtype=np.int64))
        starts = starts[(starts >= 0) & (starts < total)]
        self._boundaries = None
        if not len(starts) or total / len(starts) < self.MIN_ROWS:
            self._starts = []
            return
        self._starts = starts.tolist()
        self._stops = [*self._starts[1:], total]
        # in blocks of about PLAN_ROWS rows, each block's pages given back after it (a paged feed)
        highs, lows = [], []
        release = getattr(feed, "release", None)  # (a Feed; a stand-in with bare arrays has nothing to give back)
        first = 0
        while first < len(starts):
            last = int(np.searchsorted(starts, starts[first] + self.PLAN_ROWS, side="right"))
            last = max(last, first + 1)
            begin, end = int(starts[first]), int(starts[last]) if last < len(starts) else total
            offsets = starts[first:last] - begin
            highs.append(np.maximum.reduceat(feed.mark_high[begin:end], offsets, axis=0))
            lows.append(np.minimum.reduceat(feed.mark_low[begin:end], offsets, axis=0))
            if release is not None:
                release(end)
            first = last
        self._highs = np.concatenate(highs)
        self._lows = np.concatenate(lows)

    def __call__(self, start: int, stop: int) -> tuple[list, list]:
        if self._starts is None:
            self._plan()
        starts = self._starts
        n = bisect_left(starts, start)
        if n < len(starts) and starts[n] == start and self._stops[n] == stop:
            return self._highs[n].tolist(), self._lows[n].tolist()
        return stretch_extremes(self._feed, start, stop)


def scan(units, feed, start: int, stop: int, first_point: int, mode: str, thresholds: np.ndarray,
         extremes=None) -> list[Breach]:
    """Breaches at the earliest path point in bars [start, stop), from `first_point` of bar `start`.

    Returns every unit breaching at that same point (an empty list when the range is quiet).
    `extremes(start, stop)`: the stretch's extremes for the quiet bound (default `stretch_extremes`).
    """
    if stop <= start or not units:
        return []
    points = POINTS[mode]
    candidates = []
    bound = None
    for unit in units:
        if unit.positions == 0:  # no position at risk: a warning left over clears at once
            if unit.level:
                candidates.append((start * points + first_point, unit, False, 0, 0.0, None, None))
            continue
        if bound is None:  # one look at the stretch's extremes serves every unit
            bound = extremes(start, stop) if extremes is not None else stretch_extremes(feed, start, stop)
        if provably_quiet(unit, bound, thresholds):
            continue
        prices = path_prices(feed, start, stop, unit.columns, unit.quantities, mode)
        scales = scale_path(unit, feed, start, stop, mode)
        equity, maintenance = unit_curves(unit, prices, scales)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(equity > 0, maintenance / equity, np.inf)
        levels = np.searchsorted(thresholds, ratio, side="right")
        flags = (equity <= maintenance) | (levels != unit.level)
        flags[:first_point] = False
        hits = np.flatnonzero(flags)
        if hits.size:
            point = int(hits[0])
            candidates.append((start * points + point, unit, bool(equity[point] <= maintenance[point]),
                               int(levels[point]), float(ratio[point]), (prices, scales),
                               (equity, maintenance, point)))
    if not candidates:
        return []
    earliest = min(c[0] for c in candidates)
    found = [c for c in candidates if c[0] == earliest]
    out = []
    for flat_point, unit, liquidation, level, ratio, paths, curves in found:
        row, point = divmod(flat_point, points)
        trigger = None
        if liquidation:
            prices, scales = paths
            trigger = trigger_prices(unit, feed, prices, curves, row - start, point, points)
            if scales is not None:  # the unit at the breach's coin prices, as its liquidation values it
                legs = [leg for leg, _ in unit.scale_columns]
                unit = unit.at_scales(_interpolated(scales, curves, row - start, point)[legs].tolist())
        out.append(Breach(unit, row, point, liquidation, level, ratio, trigger))
    return out


def breaches_at(units, marks: np.ndarray, row: int, thresholds: np.ndarray) -> list[Breach]:
    """The units at or beyond maintenance (equity <= maintenance margin, as `scan` flags a
    liquidation) at one set of marks: `marks` is one price per feed column, e.g. bar `row`'s open
    marks (point 0 of its path). Each breach triggers at those marks. Units without positions, and
    units with a nan price, are never breached. Valued with the kernel's scalar path (per-leg
    brackets) or `valuate` (a whole-unit model); `xmargin.sim.loop` asks it before an account's
    fills at a bar's open."""
    out = []
    for unit in units:
        if unit.positions == 0:
            continue
        if unit.requirement is None:
            price = marks.item
            prices = [price(r[0]) for r in unit.rows]
            equity, maintenance = equity_one(unit.rows, unit.base, prices), maintenance_one(unit.rows, prices)
        else:
            equity, maintenance = (float(v[0]) for v in unit_curves(unit, marks[unit.columns][None, None, :]))
        if not equity <= maintenance:  # (False for nan)
            continue
        ratio = maintenance / equity if equity > 0 else math.inf
        level = int(np.searchsorted(thresholds, ratio, side="right"))
        out.append(Breach(unit, row, 0, True, level, ratio, marks[unit.columns].copy()))
    return out


def trigger_prices(unit: RiskUnit, feed, prices, curves, bar: int, point: int, points: int) -> np.ndarray:
    """The marks at which the unit reached maintenance. A bar opening beyond it (a gap) triggers at
    the open; otherwise at the exact liquidation price for one position, and by linear
    interpolation of (equity - maintenance) along the path for several, or for a unit whose scales
    move (`RiskUnit.scale_columns`: the one-position formulas hold the coin's price fixed)."""
    if point == 0:
        return prices[bar, point].copy()
    previous, current = prices[bar, point - 1], prices[bar, point]
    if len(unit.columns) == 1 and unit.requirement is None and not unit.scale_columns:
        legs = unit.legs
        quantity, entry, table = float(legs.quantity[0]), float(legs.entry[0]), unit.tables[0]
        inverse = bool(legs.size[0] > 0)
        size = float(legs.size[0]) if inverse else 1.0
        if unit.fixed and inverse:
            exact = margin.entry_value_liquidation_price(quantity, entry, unit.equity_base,
                                                         float(legs.fixed_maintenance[0]), True, size)
        elif unit.fixed:
            exact = margin.isolated_liquidation_price_entry_mm(quantity, entry, unit.equity_base, table)
        else:
            exact = margin.contract_liquidation_price(quantity, entry, unit.equity_base, table, inverse, size)
        low, high = sorted((float(previous[0]), float(current[0])))
        if math.isfinite(exact) and exact > 0:
            return np.array([min(max(exact, low), high)])
    return _interpolated(prices, curves, bar, point)


def _interpolated(values: np.ndarray, curves, bar: int, point: int) -> np.ndarray:
    """`values` (bars, points, legs: prices or scales along the path) where (equity - maintenance)
    reaches 0 between path point `point` - 1 and `point` of `bar`, by linear interpolation of it
    (`curves`: (equity, maintenance, flat index of the point)); at a bar's open (point 0: a gap) the
    open's."""
    current = values[bar, point]
    if point == 0:
        return current.copy()
    previous = values[bar, point - 1]
    equity, maintenance, flat = curves
    gap_before = equity[flat - 1] - maintenance[flat - 1]
    gap_now = equity[flat] - maintenance[flat]
    fraction = gap_before / (gap_before - gap_now) if gap_before != gap_now else 1.0
    return previous + fraction * (current - previous)
