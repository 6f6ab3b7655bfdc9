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

The search is vectorised over every (snapshot, unit, underlying) case at once, on the grid of a
bisection of [0, cap] in 48 halvings (cap = 1 when some leg moves down, since a price cannot fall
below zero, else `MAX_UP` = +1000 %): the answer is the first grid point at or past the crossing,
found by false position on the grid (two neighbouring points per round, Illinois weights), a few
kernel calls where the halvings took 48. equity - maintenance falls strictly along an adverse move
(maintenance rates are < 1), so the liquidation crossing is unique; the warning crossing is unique
too as long as the threshold is above every maintenance rate involved (true of every shipped rule
set). `inf`: no move up to the cap gets there (e.g. a long whose margin covers a fall to zero).
0.0: the unit is already there at the snapshot's marks.

Money and PnL follow the engine's conventions (the kernel's): linear legs `quantity x (mark -
entry)`, inverse (coin-margined) legs `quantity x contract size x (1/entry - 1/mark)` in the coin.
An inverse leg settled in its own underlying coin inside a unit of another currency (a multi-asset
"USD" pool) counts at the coin's USD price, which a move of that underlying moves too: its scale
moves with the leg's own mark (`_coin_priced_as_linear`; its USD notional, hence its maintenance,
then stays constant). Where the exchange reads the coin's price from another market than the leg's
(a spot pair next to the perp), their ratio at the snapshot is kept.
"""

from __future__ import annotations

import math
import operator

import attrs
import numpy as np
import polars as pl

from xmargin._memos import memo
from xmargin.margin.kernel import Legs, margin_parts, valuate
from xmargin.output.snapshots import run_stacked, stacked_units

MAX_UP = 10.0
ITERATIONS = 48  # the grid: cap / 2**48, so the move is known to 10 / 2**48 ~ 4e-14
SNAPSHOT_KEY = ("ts", "reason", "exchange", "events_applied")

SCHEMA = {"ts": pl.Datetime("ns", "UTC"), "reason": pl.String, "exchange": pl.String, "events_applied": pl.Int64,
          "valued_at": pl.String, "asset": pl.String, "unit": pl.String, "underlying": pl.String,
          "warning_distance": pl.Float64, "liquidation_distance": pl.Float64}


def first_crossing(legs: Legs, mark: np.ndarray, direction: np.ndarray, k: float,
                   constant_legs: int = 0) -> np.ndarray:
    """`first_crossings` for one k."""
    return first_crossings(legs, mark, direction, (k,), constant_legs)[0]


def first_crossings(legs: Legs, mark: np.ndarray, direction: np.ndarray, ks, constant_legs: int = 0
                    ) -> list[np.ndarray]:
    """Per k of `ks`: the smallest x >= 0 with k x equity(x) - maintenance(x) <= 0 per kernel unit (= case) of `legs`,
    every leg's price at mark x (1 + direction x x) (direction -1 down, +1 up, 0 does not move).
    k = 1: liquidation; k = threshold: warning.

    The answer is a point of the grid x_m = cap x m / 2**ITERATIONS (the grid a bisection of
    [0, cap] in ITERATIONS halvings walks): the m with gap(x_(m-1)) > 0 >= gap(x_m), found by
    `_grid_crossing` (false position on the grid, a few kernel calls instead of ITERATIONS).

    `constant_legs`: the last legs of `legs` that never move (quantity 0, a fixed maintenance
    margin, at most one per case): their maintenance is added to the kernel's sum of the case's
    other legs instead of being valued as legs (the same additions in the same order).

    The ends (no move, the cap) are valued once for every k."""
    n_cases = legs.units
    case = legs.unit
    parts = _crossing_parts(legs, mark, direction, constant_legs)
    down = np.bincount(case, direction < 0, minlength=n_cases) > 0
    cap = np.where(down, 1.0, MAX_UP)
    (equity_zero, maintenance_zero), (equity_cap, maintenance_cap) = parts(np.zeros(n_cases)), parts(cap)
    found_all = []
    for k in ks:
        at_zero, at_cap = k * equity_zero - maintenance_zero, k * equity_cap - maintenance_cap
        out = np.full(n_cases, math.inf)
        out[at_zero <= 0] = 0.0
        active = (at_zero > 0) & (at_cap <= 0)
        if active.any():
            cases = np.flatnonzero(active)
            step = cap[cases] / GRID
            found = _grid_crossing(_Search(legs, mark, direction, k, constant_legs, cap), cases, at_zero[cases],
                                   at_cap[cases])
            out[cases] = found * step
        found_all.append(out)
    return found_all


GRID = 2 ** ITERATIONS
FALSE_POSITION_ROUNDS = 12  # then plain halving of what is left (never more than ITERATIONS rounds)


def _crossing_parts(legs, mark, direction, constant_legs):
    """f(x) -> (equity, maintenance margin) of every case of `legs` at the moves x (shape (cases,)
    or (rows, cases))."""
    # Kept as legs: units margined as a whole (their model replaces the legs' maintenance) and a
    # single unit (the kernel then sums with numpy's pairwise sum, not bincount's running sum).
    if constant_legs and not legs.requirements and legs.units > 1:
        moving = len(legs.quantity) - constant_legs
        constant = np.bincount(legs.unit[moving:], legs.fixed_maintenance[moving:], minlength=legs.units)
        legs, mark, direction = _moving_legs(legs, moving), mark[:moving], direction[:moving]

        def parts(prices):  # the kernel's running sum per case, then its constant leg's maintenance
            value = valuate(legs, prices)
            return value.equity, value.maintenance_margin + constant
    else:
        parts = margin_parts(legs)
    unit = legs.unit

    def f(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return parts(mark * (1.0 + direction * x[..., unit]))
    return f


def _crossing(legs, mark, direction, k, constant_legs):
    """f(x) -> the gap k x equity - maintenance of every case of `legs` at the moves x."""
    parts = _crossing_parts(legs, mark, direction, constant_legs)

    def f(x: np.ndarray) -> np.ndarray:
        equity, maintenance = parts(x)
        return k * equity - maintenance
    return f


@attrs.frozen(eq=False)
class _Search:
    """The cases of a distance search: their legs, marks, directions, threshold and caps."""

    legs: Legs
    mark: np.ndarray
    direction: np.ndarray
    k: float
    constant_legs: int
    cap: np.ndarray

    def narrowed(self, cases: np.ndarray) -> tuple["_Search", object]:
        """(the search of `cases` only, renumbered in order; its gap function f(x))."""
        legs, keep = _subset(self.legs, cases)
        moving = len(self.legs.quantity) - self.constant_legs
        constant = int(np.count_nonzero(keep >= moving)) if self.constant_legs else 0
        search = _Search(legs, self.mark[keep], self.direction[keep], self.k, constant, self.cap[cases])
        return search, _crossing(search.legs, search.mark, search.direction, search.k, search.constant_legs)


def _grid_crossing(search: _Search, cases: np.ndarray, above: np.ndarray, below: np.ndarray) -> np.ndarray:
    """Per case of `cases` (gap(0) = `above` > 0 >= gap(cap) = `below`): the grid index m of the
    first grid point at or past the crossing, gap(x_(m-1)) > 0 >= gap(x_m).

    Each round values two neighbouring grid points per open case, around the false-position
    estimate inside the case's bracket [lo, hi] (gap(lo) > 0 >= gap(hi)): a gap that is linear
    between the bracket's ends (linear legs within one bracket of the maintenance table) is closed
    in one round. An end kept twice in a row has its gap halved for the next estimate (Illinois), so
    curved gaps (inverse legs, bracket changes) close in a few rounds; after
    `FALSE_POSITION_ROUNDS` the rest is halved. Cases still open are re-selected (their legs only)
    when they have become fewer than half of those valued."""
    n = len(cases)
    lo, hi = np.zeros(n, dtype=np.int64), np.full(n, GRID, dtype=np.int64)
    weight_lo, weight_hi = above.astype(np.float64), below.astype(np.float64)
    kept = np.zeros(n, dtype=np.int8)  # which end the last round kept: 1 lo, 2 hi
    ids = np.arange(n)  # the cases of `current` (positions in `cases`)
    current, f = search.narrowed(cases)
    for round_ in range(FALSE_POSITION_ROUNDS + ITERATIONS + 1):
        width = hi[ids] - lo[ids]
        open_ = width > 1
        if not open_.any():
            break
        if np.count_nonzero(open_) * 2 < len(ids):
            ids = ids[open_]
            current, f = current.narrowed(np.flatnonzero(open_))
            width = width[open_]
        low, high = lo[ids], hi[ids]
        if round_ < FALSE_POSITION_ROUNDS:
            w_lo, w_hi = weight_lo[ids], weight_hi[ids]
            with np.errstate(divide="ignore", invalid="ignore"):
                t = w_lo / (w_lo - w_hi)
            t = np.where(np.isfinite(t), np.clip(t, 0.0, 1.0), 0.5)
            a = low + np.floor(t * width).astype(np.int64)
        else:
            a = low + width // 2
        a = np.clip(a, low + 1, np.maximum(high - 1, low + 1))
        b = np.minimum(a + 1, np.maximum(high - 1, a))
        step = current.cap / GRID
        gaps = f(np.stack([a * step, b * step]))
        hit_a, hit_b = gaps[0] <= 0, gaps[1] <= 0
        closed = width <= 1
        new_hi = np.where(closed, high, np.where(hit_a, a, np.where(hit_b, b, high)))
        new_lo = np.where(closed, low, np.where(hit_a, low, np.where(hit_b, a, b)))
        keep_lo = ~closed & hit_a  # lo kept, hi moved
        keep_hi = ~closed & ~hit_a & ~hit_b
        g_hi = np.where(hit_a, gaps[0], gaps[1])
        # Illinois: the end kept again has its weight halved; an end that moved takes its new gap
        weight_lo[ids] = np.where(keep_lo, np.where(kept[ids] == 1, 0.5, 1.0) * weight_lo[ids], np.where(
            keep_hi, gaps[1], weight_lo[ids]))
        weight_hi[ids] = np.where(keep_hi, np.where(kept[ids] == 2, 0.5, 1.0) * weight_hi[ids], np.where(
            keep_lo, g_hi, weight_hi[ids]))
        kept[ids] = np.where(keep_lo, 1, np.where(keep_hi, 2, 0))
        lo[ids], hi[ids] = new_lo, new_hi
    return hi


def _moving_legs(legs: Legs, n: int) -> Legs:
    """The first `n` legs of `legs`, every unit kept."""
    return Legs(quantity=legs.quantity[:n], entry=legs.entry[:n], size=legs.size[:n], table=legs.table[:n],
                tables=legs.tables, leverage=legs.leverage[:n], fixed_maintenance=legs.fixed_maintenance[:n],
                scale=legs.scale[:n], unit=legs.unit[:n], base=legs.base, reserved=legs.reserved)


def _subset(legs: Legs, cases: np.ndarray) -> tuple[Legs, np.ndarray]:
    """(the units `cases` (sorted) with all their legs, renumbered 0..len(cases)-1 in order, the
    units margined as a whole with their models; the indices of those legs in `legs`)."""
    number = np.full(legs.units, -1, dtype=np.int64)
    number[cases] = np.arange(len(cases))
    keep = np.flatnonzero(number[legs.unit] >= 0)
    requirements = ()
    if legs.requirements:
        position = np.full(len(legs.quantity), -1, dtype=np.int64)
        position[keep] = np.arange(len(keep))
        requirements = tuple((int(number[u]), position[index], model) for u, index, model in legs.requirements
                             if number[u] >= 0)
    return Legs(quantity=legs.quantity[keep], entry=legs.entry[keep], size=legs.size[keep], table=legs.table[keep],
                tables=legs.tables, leverage=legs.leverage[keep], fixed_maintenance=legs.fixed_maintenance[keep],
                scale=legs.scale[keep], unit=number[legs.unit[keep]], base=legs.base[cases],
                reserved=legs.reserved[cases], requirements=requirements), keep


@attrs.frozen(eq=False)
class _Moving:
    """A whole-unit model (portfolio margin) of which only the legs at `positions` move: the others
    stay at `marks` (the unit's legs at the snapshot)."""

    model: object
    positions: np.ndarray
    marks: np.ndarray

    def __call__(self, prices):
        p = np.atleast_2d(np.asarray(prices, dtype=np.float64))
        full = np.repeat(self.marks[None, :], p.shape[0], axis=0)
        full[:, self.positions] = p
        return self.model(full)

    @staticmethod
    def evaluate_many(wrappers, prices, indices):
        """The kernel's batch entry: the wrapped models' own batch over full price rows (prepared
        once per list of wrappers: the search reuses it)."""
        last = _MOVING.get("last")  # one lookup: another run's thread may replace or clear it
        if last is None or last[0] is not wrappers:
            sizes = np.array([len(w.marks) for w in wrappers], dtype=np.int64)
            offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            last = _MOVING["last"] = (
                wrappers, [w.model for w in wrappers], np.concatenate([w.marks for w in wrappers]),
                np.concatenate([o + w.positions for w, o in zip(wrappers, offsets)]), np.concatenate(indices),
                [np.arange(o, o + n) for o, n in zip(offsets, sizes)], type(wrappers[0].model).evaluate_many)
        _, models, template, target, gather, model_indices, batch = last
        p = np.atleast_2d(np.asarray(prices, dtype=np.float64))
        full = np.repeat(template[None, :], p.shape[0], axis=0)
        full[:, target] = p[:, gather]
        return batch(models, full, model_indices)


_MOVING: dict = memo()  # "last": (wrappers, models, template, target, gather, indices, batch) of the last list


def _case_requirements(legs, keys, group, group_unit, case_of_group, moving, mark, n_legs) -> tuple:
    """The whole-unit models (portfolio margin) of the search's cases: an "all" case is its unit
    (legs in place); a single-underlying case sees its moving legs, the unit's others at the marks."""
    if not legs.requirements:
        return ()
    out = list(legs.requirements)
    whole = {u: (index, model) for u, index, model in legs.requirements}
    moving_group = group[moving]
    for g in range(len(keys)):
        found = whole.get(int(group_unit[g]))
        if found is None:
            continue
        index, model = found
        sel = np.flatnonzero(moving_group == g)
        out.append((int(case_of_group[g]), n_legs + sel,
                    _Moving(model, moving[sel] - int(index[0]), mark[index])))
    return tuple(out)


def distance_table(snapshots, catalog, feed, thresholds, units=None, stacked=None) -> pl.DataFrame:
    """One row per snapshot x risk unit holding positions x (each underlying, "all"): ts, reason,
    exchange, events_applied, asset (the unit's pool: the settlement asset, "USD" for a
    multi-asset account), unit (`cross:<pool>` or the isolated instrument), underlying (base
    asset or "all"), warning_distance, liquidation_distance (fractions; inf: never within the cap).

    The units are the margin modes' (`xmargin.margin.modes`, as the scan and the tables; `units`:
    the snapshots' `snapshot_units`, `stacked`: their `stacked_units`, when already built), valued
    by the kernel; snapshots with the same (ts, reason, exchange, events_applied) count once."""
    stacked = stacked if stacked is not None else stacked_units(snapshots, catalog, feed, units)
    moments = stacked.moments
    distinct = np.zeros(len(snapshots), dtype=bool)
    distinct[_first_of_each_moment(moments)] = True
    units, owner = stacked.units, stacked.owner
    holds = np.fromiter(map(operator.attrgetter("positions"), units), dtype=np.int64, count=len(units)) > 0
    chosen = np.flatnonzero(holds & distinct[owner]) if len(units) else np.zeros(0, dtype=np.int64)
    if not len(chosen):
        return pl.DataFrame(schema=SCHEMA)
    legs, keep = _subset(stacked.legs, chosen)
    columns, mark = stacked.columns[keep], stacked.marks[keep]
    units = [units[u] for u in chosen.tolist()]
    owner = owner[chosen]
    n_units, n_legs = legs.units, len(legs.quantity)
    underlying_of = {t.column: t.instrument.base for t in catalog.tradables.values()}
    present, column_code = np.unique(columns, return_inverse=True)  # names looked up per column, not per leg
    names, name_code = np.unique(np.array([underlying_of[c] for c in present.tolist()], dtype=object),
                                 return_inverse=True)
    code = name_code[column_code]
    exposure = np.where(legs.size > 0, legs.quantity * legs.size / mark, legs.quantity * mark)
    # cases: every unit with "all" (every leg adverse), then each (unit, underlying) in order of
    # first appearance, against the unit's net exposure to it. Only the legs on that underlying
    # move; the unit's other legs keep their PnL (added to the case's base) and their maintenance
    # margin (one constant leg), so the work grows with the legs, not legs x underlyings.
    group_key = legs.unit * len(names) + code
    keys, first, group = np.unique(group_key, return_index=True, return_inverse=True)
    appearance = np.argsort(first, kind="stable")  # groups by unit, then first appearance
    case_of_group = np.empty(len(keys), dtype=np.int64)
    case_of_group[appearance] = n_units + np.arange(len(keys))
    group_unit = legs.unit[first]
    net = np.sign(np.bincount(group, exposure, minlength=len(keys)))
    pnl = stacked.value.unrealized_pnl[keep] * legs.scale  # the legs at their marks
    leg_maintenance = stacked.value.leg_maintenance[keep]
    other_pnl = np.bincount(legs.unit, pnl, minlength=n_units)[group_unit] - np.bincount(group, pnl)
    other_mm = (np.bincount(legs.unit, leg_maintenance, minlength=n_units)[group_unit]
                - np.bincount(group, leg_maintenance))
    moving = np.argsort(case_of_group[group], kind="stable")  # legs of each single case, in leg order
    held = np.flatnonzero(np.bincount(legs.unit, minlength=n_units)[group_unit] > np.bincount(group))
    held = held[np.argsort(case_of_group[held], kind="stable")] if legs.tables else held[:0]
    n_cases = n_units + len(keys)
    constant = np.zeros(len(held))
    idx = np.concatenate([np.arange(n_legs), moving])
    requirements = _case_requirements(legs, keys, group, group_unit, case_of_group, moving, mark, n_legs)
    moved = _coin_priced_as_linear(legs, _coin_priced(legs, columns, units, catalog), mark, leg_maintenance)
    cases = Legs(quantity=np.concatenate([moved.quantity[idx], constant]),
                 entry=np.concatenate([legs.entry[idx], constant]),
                 size=np.concatenate([moved.size[idx], constant]),
                 table=np.concatenate([legs.table[idx], np.zeros(len(held), dtype=np.int64)]),
                 tables=legs.tables, leverage=np.concatenate([legs.leverage[idx], np.full(len(held), math.inf)]),
                 fixed_maintenance=np.concatenate([moved.fixed_maintenance[idx], other_mm[held]]),
                 scale=np.concatenate([moved.scale[idx], np.ones(len(held))]),
                 unit=np.concatenate([legs.unit, case_of_group[group[moving]], case_of_group[held]]),
                 base=np.concatenate([legs.base, np.empty(len(keys))]), reserved=np.zeros(n_cases),
                 requirements=requirements)
    cases.base[case_of_group] = legs.base[group_unit] + other_pnl
    direction = np.concatenate([-np.sign(legs.quantity), -net[group[moving]], constant])
    moves = dict(mark=np.concatenate([mark[idx], np.ones(len(held))]), direction=direction)
    thresholds = list(thresholds)
    found = first_crossings(cases, ks=(1.0, float(thresholds[0])) if thresholds else (1.0,),
                            constant_legs=len(held), **moves)
    liquidation = found[0]
    warning = found[1] if thresholds else np.full(n_cases, math.nan)
    # rows: per unit its single-underlying cases (in order of appearance), then "all"
    case_unit = np.concatenate([np.arange(n_units), np.empty(len(keys), dtype=np.int64)])
    case_unit[case_of_group] = group_unit
    case_name = np.concatenate([np.full(n_units, len(names)), np.empty(len(keys), dtype=np.int64)])
    case_name[case_of_group] = code[first]
    order = np.lexsort((np.arange(n_cases), case_name == len(names), case_unit))
    unit_of = case_unit[order]
    snapshot_of = np.asarray(owner, dtype=np.int64)[unit_of]
    pick = pl.Series(unit_of)
    return pl.DataFrame({
        "ts": moments.ts[snapshot_of],
        "reason": pl.Series(moments.reason, dtype=pl.String).gather(pl.Series(snapshot_of)),
        "exchange": pl.Series(moments.exchange, dtype=pl.String).gather(pl.Series(snapshot_of)),
        "events_applied": moments.events_applied[snapshot_of],
        "valued_at": pl.Series(moments.valued_at, dtype=pl.String).gather(pl.Series(snapshot_of)),
        "asset": pl.Series(list(map(operator.attrgetter("asset"), units)), dtype=pl.String).gather(pick),
        "unit": pl.Series(list(map(operator.attrgetter("name"), units)), dtype=pl.String).gather(pick),
        "underlying": pl.Series([*names.tolist(), "all"], dtype=pl.String).gather(pl.Series(case_name[order])),
        "warning_distance": warning[order], "liquidation_distance": liquidation[order],
    }, schema={**SCHEMA, "ts": pl.Int64}).with_columns(pl.col("ts").cast(SCHEMA["ts"]))


def _coin_priced(legs: Legs, columns: np.ndarray, units: list, catalog) -> np.ndarray:
    """Mask of the legs of `legs` (feed `columns`, unit `units[legs.unit]`) whose `scale` moves with
    their own mark: inverse legs settled in their underlying coin in a unit of another currency (a
    multi-asset "USD" pool), whose scale is that coin's price: the leg's mark, which a case moves."""
    if not (legs.size > 0).any():
        return np.zeros(len(legs.quantity), dtype=bool)
    coin = {t.column: t.instrument.settle for t in catalog.tradables.values()
            if t.instrument.settle == t.instrument.base}  # settled in its underlying
    settle = np.array([coin.get(c, "") for c in columns.tolist()], dtype=object)
    currency = np.array([u.asset for u in units], dtype=object)[legs.unit]
    return (legs.size > 0) & (settle != "") & (settle != currency)


def _coin_priced_as_linear(legs: Legs, mask: np.ndarray, mark: np.ndarray, leg_maintenance: np.ndarray) -> Legs:
    """`legs` with the `mask` legs (`_coin_priced`: an inverse leg of q contracts of size c, entry e,
    in a unit valuing its coin at scale s when the mark is m) rewritten as the same leg with its scale
    moving with its price p: s x p / m. In the unit's currency its PnL q c (1/e - 1/p) s p / m = q c s
    / (m e) x (p - e) is a linear leg's of q c s / (m e) at entry e (scale 1), and its notional
    |q| c / p x s p / m = |q| c s / m does not move, so neither does its maintenance margin: the
    snapshot's, `leg_maintenance` (a bracket at the notional, or the fixed one). A price of 0 is
    then a coin worth 0 (the whole notional lost), not a coin notional of |q| c / 0."""
    if not mask.any():
        return legs
    k = np.flatnonzero(mask)
    quantity, size, scale, fixed = (legs.quantity.copy(), legs.size.copy(), legs.scale.copy(),
                                    legs.fixed_maintenance.copy())
    quantity[k] = legs.quantity[k] * legs.size[k] * legs.scale[k] / (mark[k] * legs.entry[k])
    size[k], scale[k], fixed[k] = 0.0, 1.0, leg_maintenance[k]
    return attrs.evolve(legs, quantity=quantity, size=size, scale=scale, fixed_maintenance=fixed)


def _first_of_each_moment(moments) -> np.ndarray:
    """Indices of the first snapshot of each (ts, reason, exchange, events_applied), in order
    (`moments`: `xmargin.output.snapshots.Moments` of the snapshots)."""
    n, codes = len(moments.ts), {}
    ts, applied = moments.ts, moments.events_applied
    kind = np.fromiter(map(lambda pair: codes.setdefault(pair, len(codes)), zip(moments.reason, moments.exchange)),
                       dtype=np.int64, count=n)
    order = np.lexsort((np.arange(n), kind, applied, ts))  # stable: the first of equal moments leads
    new = np.ones(n, dtype=bool)
    new[1:] = (np.diff(ts[order]) != 0) | (np.diff(applied[order]) != 0) | (np.diff(kind[order]) != 0)
    return np.sort(order[new])


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


def run_distances(result) -> pl.DataFrame:
    """`distance_table` of a finished in-memory run (`xmargin.sim.loop.RunResult`; computed once per
    result and kept on it)."""
    if result.distances is None:
        result.distances = distance_table(result.snapshots, result.catalog, result.feed,
                                          result.config.warning_thresholds, stacked=run_stacked(result))
    return result.distances
