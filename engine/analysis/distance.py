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
from xmargin.output.snapshots import run_units, snapshot_units

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


def _case_requirements(units, first, counts, pair_unit, spans, n_legs) -> tuple:
    """The whole-unit models (portfolio margin) of the search's cases: case u ("all") holds unit u's
    legs where they are, case n_units + k (one underlying) a copy of its unit's legs after them."""
    if not any(unit.requirement is not None for unit in units):
        return ()
    out = [(u, np.arange(first[u], first[u] + counts[u]), unit.requirement)
           for u, unit in enumerate(units) if unit.requirement is not None]
    starts = n_legs + np.concatenate([[0], np.cumsum(spans)[:-1]]).astype(np.int64)
    out.extend((len(units) + k, np.arange(starts[k], starts[k] + spans[k]), units[u].requirement)
               for k, u in enumerate(pair_unit.tolist()) if units[u].requirement is not None)
    return tuple(out)


def distance_table(snapshots, catalog, feed, thresholds, units=None) -> pl.DataFrame:
    """One row per snapshot x risk unit holding positions x (each underlying, "all"): ts, reason,
    exchange, events_applied, asset (the unit's pool: the settlement asset, "USD" for a
    multi-asset account), unit (`cross:<pool>` or the isolated instrument), underlying (base
    asset or "all"), warning_distance, liquidation_distance (fractions; inf: never within the cap).

    The units are the margin modes' (`xmargin.margin.modes`, as the scan and the tables; `units`:
    the snapshots' `snapshot_units` when already built), valued by the kernel; snapshots with the
    same (ts, reason, exchange, events_applied) count once."""
    seen, first = set(), set()
    for n, snapshot in enumerate(snapshots):
        key = (snapshot.ts, snapshot.reason, snapshot.account.exchange, snapshot.events_applied)
        if key not in seen:
            seen.add(key)
            first.add(n)
    units, owner = units if units is not None else snapshot_units(snapshots, catalog, feed)
    chosen = [u for u, (unit, n) in enumerate(zip(units, owner)) if unit.positions and n in first]
    if not chosen:
        return pl.DataFrame(schema=SCHEMA)
    units = [units[u] for u in chosen]
    owner = [owner[u] for u in chosen]
    legs = stack(units)
    n_units, n_legs = len(units), len(legs.quantity)
    underlying_of = {t.column: t.instrument.base for t in catalog.tradables.values()}
    columns = np.array([r[0] for unit in units for r in unit.rows], dtype=np.int64)
    names, code = np.unique(np.array([underlying_of[c] for c in columns.tolist()], dtype=object),
                            return_inverse=True)
    rows = np.array([snapshots[n].row for n in owner], dtype=np.int64)[legs.unit]
    mark = feed.mark_close[rows, columns]
    exposure = np.where(legs.size > 0, legs.quantity * legs.size / mark, legs.quantity * mark)
    counts = np.bincount(legs.unit, minlength=n_units)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # cases 0..n_units-1: every unit with "all" (every leg adverse); then each (unit, underlying),
    # in order of first appearance, with only the legs on that underlying moving, against the
    # unit's net exposure to it
    pair_key = legs.unit * len(names) + code
    keys, first_leg, pair_of_leg = np.unique(pair_key, return_index=True, return_inverse=True)
    order = np.argsort(first_leg, kind="stable")
    keys = keys[order]
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    net = np.sign(np.bincount(rank[pair_of_leg], exposure, minlength=len(keys)))
    pair_unit, pair_code = keys // len(names), keys % len(names)
    spans = counts[pair_unit]
    single_idx = np.repeat(first[pair_unit] - np.concatenate([[0], np.cumsum(spans)[:-1]]), spans) \
        + np.arange(int(spans.sum()))
    single_case = np.repeat(np.arange(len(keys)), spans)
    single_direction = np.where(code[single_idx] == pair_code[single_case], -net[single_case], 0.0)
    idx = np.concatenate([np.arange(n_legs), single_idx])
    case_units = np.concatenate([np.arange(n_units), pair_unit])
    cases = Legs(quantity=legs.quantity[idx], entry=legs.entry[idx], size=legs.size[idx], table=legs.table[idx],
                 tables=legs.tables, leverage=legs.leverage[idx], fixed_maintenance=legs.fixed_maintenance[idx],
                 scale=legs.scale[idx], unit=np.concatenate([legs.unit, n_units + single_case]),
                 base=legs.base[case_units], reserved=np.zeros(len(case_units)),
                 requirements=_case_requirements(units, first, counts, pair_unit, spans, n_legs))
    moves = dict(mark=mark[idx], direction=np.concatenate([-np.sign(legs.quantity), single_direction]))
    liquidation = first_crossing(cases, k=1.0, **moves)
    thresholds = list(thresholds)
    warning = (first_crossing(cases, k=float(thresholds[0]), **moves) if thresholds
               else np.full(len(case_units), math.nan))
    snapshot_of = [snapshots[n] for n in owner]
    per_unit = pl.DataFrame({
        "unit_index": np.arange(n_units), "ts": [s.ts for s in snapshot_of],
        "reason": [s.reason for s in snapshot_of], "exchange": [u.exchange for u in units],
        "events_applied": [s.events_applied for s in snapshot_of], "asset": [u.asset for u in units],
        "unit": [u.name for u in units]}, schema_overrides={"unit_index": pl.Int64, "ts": pl.Int64})
    per_case = pl.DataFrame({
        "unit_index": case_units, "case": np.arange(len(case_units)),
        "underlying": ["all"] * n_units + names[pair_code].tolist(),
        "warning_distance": warning, "liquidation_distance": liquidation},
        schema_overrides={"unit_index": pl.Int64, "underlying": pl.String})
    return (per_case.with_columns((pl.col("case") < n_units).alias("is_all"))
            .sort("unit_index", "is_all", "case")
            .join(per_unit, on="unit_index", how="left", maintain_order="left")
            .select(list(SCHEMA)).with_columns(pl.col("ts").cast(SCHEMA["ts"])).cast(SCHEMA))


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
    table = distance_table(result.snapshots, result.catalog, result.feed, result.config.warning_thresholds,
                           run_units(result))
    try:
        _CACHE[result] = table
    except TypeError:
        pass
    return table
