"""Distance to liquidation: how far the market must move before a risk unit warns or is liquidated.

For every snapshot of a run (the rows of the equity / positions tables) and every risk unit (a
cross pool per settlement asset, or in multi-asset mode one "USD" pool per account; each isolated
position on its own; the units of `xmargin.margin.modes`), this module finds the smallest relative
adverse move x (0.12 = 12 %) of

* each underlying alone (every leg of the unit on that base asset moves together, in the
  direction that hurts the unit's net holding of it: down for a net long, up for a net short;
  the unit's other legs stay at their marks and keep their PnL and maintenance margin), and
* all underlyings together ("all"): every long down and every short up by the same fraction,

at which the unit would raise its first margin warning (maintenance / equity >= the first
`run.warning_thresholds`) and at which it would be liquidated (equity <= maintenance), with the
unit's wallet (cross wallet balance or isolated margin) held fixed. Prices move from the
snapshot's mark: p = mark x (1 + direction x x); maintenance is re-evaluated with the bracket of
the moved notional (`xmargin.margin.formulas.maintenance_margin_array`), so bracket changes are exact.

The units and their legs are the margin modes' (`xmargin.margin.modes`), the same as the scan's
and the tables', and every case is valued by the valuation kernel (`xmargin.margin.kernel`): a
multi-asset pool's collateral legs (non-stable balances held as their haircut coin amount, entry
0) move with their underlying; an isolated position margined on its entry value keeps a constant
maintenance margin. "Adverse" for collateral: a holding is a long of its asset and a negative
balance (a liability) a short, so in the all-together move holdings fall and liabilities rise with
the positions' longs and shorts; alone, an underlying moves against the unit's net holding of it,
positions and collateral together (BTC collateral with no BTC position: BTC falls). Rows of a
multi-asset account carry asset "USD" (the pool of its equity rows).

The search is vectorised over every (snapshot, unit, underlying) case at once: a bisection on x
(60 halvings of [0, cap]; cap = 1 when some leg moves down, since a price cannot fall below
zero, else `MAX_UP` = +1000 %). equity - maintenance falls strictly along an adverse move
(maintenance rates are < 1), so the liquidation crossing is unique; the warning crossing is unique
too as long as the threshold is above every maintenance rate involved (true of every shipped rule
set). `inf`: no move up to the cap gets there (e.g. a long whose margin covers a fall to zero).
0.0: the unit is already there at the snapshot's marks.

Money and PnL follow the engine's conventions (the kernel's): linear legs `quantity x (mark -
entry)`, inverse (coin-margined) legs `quantity x contract size x (1/entry - 1/mark)` in the coin.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import polars as pl

from xmargin.margin.kernel import Legs, valuate
from xmargin.margin.units import stack
from xmargin.output.snapshots import snapshot_units

MAX_UP = 10.0
ITERATIONS = 48  # bisection steps: the move is then known to 10 / 2**48 ~ 4e-14
SNAPSHOT_KEY = ("ts", "reason", "exchange", "events_applied")

SCHEMA = {"ts": pl.Datetime("ns", "UTC"), "reason": pl.String, "exchange": pl.String, "events_applied": pl.Int64,
          "asset": pl.String, "unit": pl.String, "underlying": pl.String, "warning_distance": pl.Float64,
          "liquidation_distance": pl.Float64}


def first_crossing(legs: Legs, mark: np.ndarray, direction: np.ndarray, k: float) -> np.ndarray:
    """Smallest x >= 0 with k x equity(x) - maintenance(x) <= 0 per kernel unit (= case) of `legs`,
    every leg's price at mark x (1 + direction x x) (direction -1 down, +1 up, 0 does not move);
    a vectorised bisection over the valuation kernel. k = 1: liquidation; k = threshold: warning."""
    n_cases = legs.units
    case = legs.unit

    def f(x: np.ndarray) -> np.ndarray:
        value = valuate(legs, mark * (1.0 + direction * x[case]))
        return k * value.equity - value.maintenance_margin

    down = np.bincount(case, direction < 0, minlength=n_cases) > 0
    lo = np.zeros(n_cases)
    hi = np.where(down, 1.0, MAX_UP)
    at_zero, at_cap = f(lo), f(hi)
    out = np.full(n_cases, math.inf)
    out[at_zero <= 0] = 0.0
    active = (at_zero > 0) & (at_cap <= 0)
    if active.any():
        for _ in range(ITERATIONS):
            mid = 0.5 * (lo + hi)
            hit = f(mid) <= 0
            hi = np.where(hit, mid, hi)
            lo = np.where(hit, lo, mid)
        out[active] = hi[active]
    return out


def distance_table(snapshots, catalog, feed, thresholds) -> pl.DataFrame:
    """One row per snapshot x risk unit holding positions x (each underlying, "all"): ts, reason,
    exchange, events_applied, asset (the unit's pool: the settlement asset, "USD" for a
    multi-asset account), unit (`cross:<pool>` or the isolated instrument), underlying (base
    asset or "all"), warning_distance, liquidation_distance (fractions; inf: never within the cap).

    The units are the margin modes' (`xmargin.margin.modes`, as the scan and the tables), valued by
    the kernel; snapshots with the same (ts, reason, exchange, events_applied) count once."""
    seen, kept = set(), []
    for snapshot in snapshots:
        key = (snapshot.ts, snapshot.reason, snapshot.account.exchange, snapshot.events_applied)
        if key not in seen:
            seen.add(key)
            kept.append(snapshot)
    units, owner = snapshot_units(kept, catalog, feed)
    chosen = [u for u, unit in enumerate(units) if unit.positions]
    if not chosen:
        return pl.DataFrame(schema=SCHEMA)
    units = [units[u] for u in chosen]
    owner = [owner[u] for u in chosen]
    legs = stack(units)
    underlying_of = {t.column: t.instrument.base for t in catalog.tradables.values()}
    columns = [r[0] for unit in units for r in unit.rows]
    underlying = np.array([underlying_of[c] for c in columns], dtype=object)
    rows = np.array([kept[owner[u]].row for u in legs.unit.tolist()], dtype=np.int64)
    mark = feed.mark_close[rows, np.asarray(columns, dtype=np.int64)]
    exposure = np.where(legs.size > 0, legs.quantity * legs.size / mark, legs.quantity * mark)
    # cases: every unit with "all" (every leg adverse), then each (unit, underlying) with only the
    # legs on that underlying moving, against the unit's net exposure to it
    leg_index, case_of, direction, labels, requirements = [], [], [], [], []
    first = np.concatenate([[0], np.cumsum([len(unit.rows) for unit in units])]).astype(np.int64)

    def margined_as_a_whole(u: int, span) -> None:  # a portfolio unit's case keeps its requirement
        if units[u].requirement is not None:
            requirements.append((len(labels), np.arange(len(leg_index), len(leg_index) + len(span)),
                                 units[u].requirement))

    for u in range(len(units)):
        span = range(int(first[u]), int(first[u + 1]))
        margined_as_a_whole(u, span)
        leg_index.extend(span)
        case_of.extend([len(labels)] * len(span))
        direction.extend(-np.sign(legs.quantity[list(span)]))
        labels.append((u, "all"))
    for u in range(len(units)):
        span = list(range(int(first[u]), int(first[u + 1])))
        for name in dict.fromkeys(underlying[span].tolist()):
            on = [j for j in span if underlying[j] == name]
            net = float(np.sign(exposure[on].sum()))
            margined_as_a_whole(u, span)
            leg_index.extend(span)
            case_of.extend([len(labels)] * len(span))
            direction.extend(-net if underlying[j] == name else 0.0 for j in span)
            labels.append((u, name))
    idx = np.asarray(leg_index, dtype=np.int64)
    case_units = np.array([u for u, _ in labels], dtype=np.int64)
    cases = Legs(quantity=legs.quantity[idx], entry=legs.entry[idx], size=legs.size[idx], table=legs.table[idx],
                 tables=legs.tables, leverage=legs.leverage[idx], fixed_maintenance=legs.fixed_maintenance[idx],
                 scale=legs.scale[idx], unit=np.asarray(case_of, dtype=np.int64), base=legs.base[case_units],
                 reserved=np.zeros(len(labels)), requirements=tuple(requirements))
    moves = dict(mark=mark[idx], direction=np.asarray(direction, dtype=np.float64))
    liquidation = first_crossing(cases, k=1.0, **moves)
    thresholds = list(thresholds)
    warning = (first_crossing(cases, k=float(thresholds[0]), **moves) if thresholds
               else np.full(len(labels), math.nan))
    order = sorted(range(len(labels)), key=lambda c: (labels[c][0], labels[c][1] == "all", c))
    out = {name: [] for name in SCHEMA}
    for c in order:
        u, name = labels[c]
        unit, snapshot = units[u], kept[owner[u]]
        for column, value in (("ts", snapshot.ts), ("reason", snapshot.reason), ("exchange", unit.exchange),
                              ("events_applied", snapshot.events_applied), ("asset", unit.asset),
                              ("unit", unit.name), ("underlying", name), ("warning_distance", float(warning[c])),
                              ("liquidation_distance", float(liquidation[c]))):
            out[column].append(value)
    return pl.DataFrame(out, schema={**SCHEMA, "ts": pl.Int64}).with_columns(pl.col("ts").cast(SCHEMA["ts"]))


def equity_distances(equity: pl.DataFrame, distance: pl.DataFrame) -> pl.DataFrame:
    """The equity table with `warning_distance` and `liquidation_distance`: per pool row, the
    smallest all-together move that warns / liquidates any unit of that exchange and asset (the
    cross pool or one of its isolated positions); inf where nothing is at risk."""
    key = [*SNAPSHOT_KEY, "asset"]
    tightest = (distance.filter(pl.col("underlying") == "all").group_by(key)
                .agg(pl.col("warning_distance").min(), pl.col("liquidation_distance").min()))
    return (equity.join(tightest, on=key, how="left", maintain_order="left")
            .with_columns(pl.col("warning_distance").fill_null(math.inf),
                          pl.col("liquidation_distance").fill_null(math.inf)))


_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def run_distances(result) -> pl.DataFrame:
    """`distance_table` of a finished in-memory run (`xmargin.sim.loop.RunResult`; computed once per result)."""

    try:
        return _CACHE[result]
    except (KeyError, TypeError):
        pass
    table = distance_table(result.snapshots, result.catalog, result.feed, result.config.warning_thresholds)
    try:
        _CACHE[result] = table
    except TypeError:
        pass
    return table
