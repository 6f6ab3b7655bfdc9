"""Account snapshots and their projection into the equity, positions and collateral tables.

During a run a snapshot is only a record of *which* ledger state to value at *which* moment:
a feed row and the moment of that bar it was taken at, `valued_at` (accounts are immutable, so
keeping a reference is free). The tables are computed once at the end (or a chunk at a time):
each snapshot's account becomes risk units through its margin mode (`xmargin.margin.modes`; one
set per account state, reused by every snapshot of that state unless the units depend on the
moment's prices), and one call of the valuation kernel (`xmargin.margin.kernel.valuate`) values
every unit of every snapshot at its moment's marks: the same numbers as
`xmargin.margin.accounting` gives strategies for one account (tests/test_snapshots.py holds the
two callers equal).

Moments (`xmargin.margin.risk.VALUED_AT`): "open" (the state after a bar's open events: fills of
resting orders, funding, expiries, transfers landing, a liquidation at a gapped open; the start's
deposits) at the bar's open marks and open last prices; "close" (a strategy's orders, samples, the
end) at its closes; an intrabar point of the margin watch (a breach or a transfer landing inside
a bar) at that point's prices as `xmargin.margin.risk.path_prices` has them: "near extreme" /
"far extreme" (`path`), "adverse extreme" (`worst-case`: every position and collateral coin at its
own adverse mark, as the watch valued it there: the low for a long position or a positive
balance, the high for a short one or a debt; a price with no holding behind it at its low).

Row order: snapshots in the order taken; within one, pools by asset, positions in the account's
order, balances by asset.
"""

from __future__ import annotations

import math
import operator

import attrs
import numpy as np
import polars as pl
import pyarrow as pa

from xmargin._arrays import concatenated_ranges
from xmargin.errors import RunError
from xmargin.margin import formulas as margin
from xmargin.margin.accounting import CollateralMetrics, PoolMetrics, PositionMetrics
from xmargin.margin.kernel import COLLATERAL, valuate
from xmargin.margin.modes import account_units, venue_mode
from xmargin.margin.risk import VALUED_AT, account_prices_at, moment_prices
from xmargin.margin.collateral import STABLECOINS
from xmargin.margin.units import asset_price, distinct_objects, stack_repeated
from xmargin.output.eventlog import TIMESTAMP, cast_to


@attrs.frozen(slots=True)
class Snapshot:
    """Value `account` at the prices of moment `valued_at` (a name of `xmargin.margin.risk.VALUED_AT`:
    "open", "close" or an intrabar path point) of feed row `row`; stamped `ts` (ns) and `reason`
    (start | sample | event | final); `events_applied` is how much of the log it has seen.
    `units`: the account's risk units when the run already has them (modes whose units do not
    move with prices: the run values every state it snapshots, so they are built once)."""

    ts: int
    reason: str
    events_applied: int
    row: int
    account: object
    units: object = None
    valued_at: str = "close"


KEYS = ("ts", "reason", "exchange", "events_applied")
_FLOAT = pl.Float64
_MOMENT_CODE = {name: code for code, name in enumerate(VALUED_AT)}


def _moment_codes(names: list) -> np.ndarray:
    """The `VALUED_AT` index of each moment name (an unknown name: a bug of the snapshot's maker)."""
    try:
        return np.fromiter(map(_MOMENT_CODE.__getitem__, names), dtype=np.int8, count=len(names))
    except KeyError as exc:
        raise RunError(f"snapshot valued at {exc.args[0]!r}: not a moment of a bar ({', '.join(VALUED_AT)}); a bug "
                       "of the code that took the snapshot") from None


def moment_row(moments, n: int, catalog, feed, lasts: bool = False) -> np.ndarray:
    """Snapshot `n`'s prices of every feed column at its moment (`lasts`: last prices, else marks)."""
    return account_prices_at(feed, catalog, moments.accounts[moments.state[n]], int(moments.row[n]),
                             int(moments.moment[n]), lasts)


def snapshot_units(snapshots, catalog, feed, moments=None) -> tuple[list, np.ndarray]:
    """Every snapshot's risk units, flattened: (units, snapshot index of each unit); units are built
    once per account state unless the mode values collateral at the row's prices (`moments`: the
    snapshots' `snapshot_moments`, when already read)."""
    moments = snapshot_moments(snapshots) if moments is None else moments
    steady = {name: not venue_mode(catalog, name).revalue_each_stretch for name in catalog.venues}
    built: dict = {}  # units by the identity of the dicts they depend on (kept alive by the snapshots)
    per_state = []
    for state, account in enumerate(moments.accounts):
        found = None
        if steady[account.exchange]:
            n = int(moments.first[state])
            found = snapshots[n].units
            if found is None:
                key = (account.exchange, id(account.positions), id(account.balances), id(account.leverage),
                       id(account.warning_levels))
                found = built.get(key)
                if found is None:
                    found = built[key] = account_units(catalog, account, moment_row(moments, n, catalog, feed),
                                                       int(moments.ts[n]))
        per_state.append(found)
    if all(found is not None for found in per_state):
        owner, entry, flat = _expand(moments, per_state)
        return _taken(flat, entry), owner
    units, owner = [], []
    for n, snapshot in enumerate(snapshots):
        found = per_state[moments.state[n]]
        if found is None:
            found = snapshot.units if snapshot.units is not None else \
                account_units(catalog, snapshot.account, moment_row(moments, n, catalog, feed), snapshot.ts)
        units.extend(found)
        owner.extend([n] * len(found))
    return units, np.array(owner, dtype=np.int64)


def _order_margins(units, owner, isolated, moments, catalog, feed) -> np.ndarray:
    """Per unit: the initial margin its pool reserves for open orders (isolated units, accounts
    without orders: none)."""
    out = np.zeros(len(units))
    with_orders = np.fromiter((bool(a.orders) for a in moments.accounts), dtype=bool, count=len(moments.accounts))
    if not with_orders.any():
        return out
    for k in np.flatnonzero(with_orders[moments.state[owner]] & ~isolated).tolist():
        n = int(owner[k])
        account = moments.accounts[moments.state[n]]
        mode = venue_mode(catalog, account.exchange)
        out[k] = mode.module.pool_order_margin(account, catalog, moment_row(moments, n, catalog, feed, lasts=True),
                                               units[k].asset)
    return out


@attrs.frozen(eq=False)
class Moments:
    """What every valuation table repeats per snapshot, read once: its `ts` (ns), `reason`,
    `exchange`, `events_applied`, feed `row` and moment (`valued_at`; `moment`: its `VALUED_AT`
    index); and which distinct account state it values
    (`accounts[state[n]]`): two snapshots of one state (a sample, then the next event's) share the
    per-state work (positions, balances)."""

    ts: np.ndarray
    reason: list
    exchange: list
    events_applied: np.ndarray
    row: np.ndarray
    valued_at: list
    moment: np.ndarray
    state: np.ndarray  # per snapshot: its account state, numbered in order of first snapshot
    accounts: list  # per state
    first: np.ndarray  # per state: its first snapshot


_MOMENT = operator.attrgetter("ts", "reason", "account.exchange", "events_applied", "row", "valued_at", "account")


def snapshot_moments(snapshots) -> Moments:
    """The `Moments` of `snapshots`, in one pass."""
    if not len(snapshots):
        empty = np.zeros(0, dtype=np.int64)
        return Moments(empty, [], [], empty, empty, [], empty.astype(np.int8), empty, [], empty)
    ts, reason, exchange, applied, row, valued_at, account = zip(*map(_MOMENT, snapshots))
    first, state = distinct_objects(account)
    return Moments(np.array(ts, dtype=np.int64), list(reason), list(exchange), np.array(applied, dtype=np.int64),
                   np.array(row, dtype=np.int64), list(valued_at), _moment_codes(valued_at), state,
                   [account[k] for k in first.tolist()], first)


def run_stacked(result) -> "Stacked":
    """`stacked_units` of a finished run's snapshots, computed once (the tables and distance share them)."""
    if result.units is None:
        result.units = stacked_units(result.snapshots, result.catalog, result.feed)
    return result.units


@attrs.frozen(eq=False)
class Stacked:
    """The snapshots' units as one kernel `Legs` (with their open-order margin), each leg's feed
    column and its mark at its snapshot's moment, and their valuation there: what the tables and
    the distance search share."""

    units: list
    owner: np.ndarray  # snapshot index of each unit
    isolated: np.ndarray  # per unit: an isolated position's unit
    legs: object
    columns: np.ndarray
    marks: np.ndarray
    value: object  # xmargin.margin.kernel.Valuation of `legs` at `marks`
    moments: Moments  # of the snapshots


def stacked_units(snapshots, catalog, feed, units=None) -> Stacked:
    """Stack `snapshot_units` (`units`, when already built) of `snapshots` once."""
    moments = snapshot_moments(snapshots)
    units, owner = units if units is not None else snapshot_units(snapshots, catalog, feed, moments)
    owner = np.asarray(owner, dtype=np.int64)
    isolated = np.fromiter(map(operator.attrgetter("isolated"), units), dtype=bool, count=len(units))
    legs, columns = stack_repeated(units, _order_margins(units, owner, isolated, moments, catalog, feed))
    leg_owner = owner[legs.unit] if len(legs.unit) else np.zeros(0, dtype=np.int64)
    marks = (moment_prices(feed, moments.row[leg_owner], columns, moments.moment[leg_owner], legs.quantity)
             if len(leg_owner) else np.zeros(0))
    return Stacked(units, owner, isolated, legs, columns, marks, valuate(legs, marks), moments)


def project(snapshots, catalog, feed, units=None, stacked: Stacked | None = None
            ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(equity, positions, collateral) DataFrames for the recorded snapshots (`units`: their
    `snapshot_units`, `stacked`: their `stacked_units`, when already built)."""
    stacked = stacked if stacked is not None else stacked_units(snapshots, catalog, feed, units)
    units, owner, legs, marks, value = stacked.units, stacked.owner, stacked.legs, stacked.marks, stacked.value
    moments = stacked.moments
    snaps = pl.DataFrame({
        "snapshot": np.arange(len(snapshots), dtype=np.int64), "ts": moments.ts, "reason": moments.reason,
        "exchange": moments.exchange, "events_applied": moments.events_applied, "valued_at": moments.valued_at,
    }, schema={"snapshot": pl.Int64, "ts": pl.Int64, "reason": pl.String, "exchange": pl.String,
               "events_applied": pl.Int64, "valued_at": pl.String})

    # per unit: position PnL (unit currency) and collateral (constant + collateral legs)
    n_units = len(units)
    is_position = legs.table != COLLATERAL
    scaled_pnl = value.unrealized_pnl * legs.scale
    position_pnl = np.bincount(legs.unit[is_position], scaled_pnl[is_position], minlength=n_units)
    collateral = legs.base + np.bincount(legs.unit[~is_position], scaled_pnl[~is_position],
                                         minlength=n_units)
    maintenance = value.maintenance_margin
    initial = value.initial_margin

    # -- equity: one row per pool unit, with its snapshot's isolated positions of that pool -------
    modes = {name: venue_mode(catalog, name) for name in catalog.venues}
    isolated = unit_isolated = stacked.isolated
    base = legs.base
    pool = list(map(operator.attrgetter("asset"), units))
    # money of an isolated position counts in its pool's currency (1 when the pool is its asset)
    scale = np.ones(n_units)
    wallet = np.where(isolated, 0.0, base)  # a pool of one asset: its balance; else the mode's wallet value
    for k in np.flatnonzero(isolated).tolist():
        unit = units[k]
        pool[k] = modes[unit.exchange].pool_of(unit.asset)
        if pool[k] != unit.asset:
            prices = moment_row(moments, int(owner[k]), catalog, feed)
            scale[k] = asset_price(catalog, unit.exchange, unit.asset, prices)
    wallet_valued = [name for name, mode in modes.items() if not mode.pools_are_assets]
    if wallet_valued:
        for k in np.flatnonzero(~isolated).tolist():
            unit = units[k]
            if unit.exchange in wallet_valued:
                n = int(owner[k])
                wallet[k] = modes[unit.exchange].module.wallet_value(moments.accounts[moments.state[n]], catalog,
                                                                     moment_row(moments, n, catalog, feed), unit.asset)
    per_unit = pl.DataFrame({
        "snapshot": owner, "asset": pool, "isolated": isolated,
        "held": np.where(isolated, base * scale, 0.0), "held_pnl": np.where(isolated, position_pnl * scale, 0.0),
        "wallet": wallet, "collateral": np.where(isolated, 0.0, collateral),
        "pnl": np.where(isolated, 0.0, position_pnl), "maintenance": np.where(isolated, 0.0, maintenance),
        "initial": np.where(isolated, 0.0, initial), "reserved": np.where(isolated, 0.0, legs.reserved)},
        schema_overrides={"snapshot": pl.Int64, "asset": pl.String})
    margin_balance = pl.col("collateral") + pl.col("pnl")
    equity = (per_unit.group_by("snapshot", "asset").agg(pl.exclude("isolated").sum())
              .sort("snapshot", "asset")
              .select("snapshot", "asset",
                      (pl.col("wallet") + pl.col("held")).alias("wallet_balance"),
                      pl.col("wallet").alias("cross_wallet_balance"), pl.col("collateral").alias("collateral_value"),
                      pl.col("held").alias("isolated_margin"), (pl.col("pnl") + pl.col("held_pnl")).alias("unrealized_pnl"),
                      margin_balance.alias("margin_balance"), pl.col("initial").alias("initial_margin"),
                      pl.col("maintenance").alias("maintenance_margin"),
                      pl.when(margin_balance > 0).then(pl.col("maintenance") / margin_balance)
                      .when(pl.col("maintenance") > 0).then(float("inf")).otherwise(0.0).alias("margin_ratio"),
                      (margin_balance - pl.col("initial")).alias("free_collateral"),
                      pl.col("reserved").alias("open_order_margin")))
    # -- positions: in the account's order, with liquidation and bankruptcy prices ----------------
    index, unit_of, leg, instruments, isolated_margin, margin_mode, asset = _position_legs(moments, units, owner)
    quantity, entry = legs.quantity[leg], legs.entry[leg]
    notional, pnl, leg_mm = value.notional[leg], value.unrealized_pnl[leg], value.leg_maintenance[leg]
    isolated = unit_isolated[unit_of]
    wallet = np.where(isolated, isolated_margin, collateral[unit_of]) if len(leg) else np.zeros(0)
    other_mm = np.where(isolated, 0.0, maintenance[unit_of] - leg_mm) if len(leg) else np.zeros(0)
    other_pnl = (np.where(isolated, 0.0, position_pnl[unit_of] - pnl * legs.scale[leg]) if len(leg)
                 else np.zeros(0))
    liquidation = np.zeros(len(leg))
    table_of = legs.table[leg]
    for t in np.unique(table_of):
        members = np.flatnonzero(table_of == t)
        liquidation[members] = margin.cross_liquidation_price_array(quantity[members], entry[members],
                                                                    wallet[members], legs.tables[t],
                                                                    other_mm[members], other_pnl[members])
    bankruptcy = margin.bankruptcy_price_array(quantity, entry, wallet + other_pnl) if len(leg) else np.zeros(0)
    size = legs.size[leg]
    fixed = legs.fixed_maintenance[leg]
    for k in np.flatnonzero(~np.isnan(fixed) & (size <= 0)):  # margined on entry value: its own formula
        liquidation[k] = margin.entry_value_liquidation_price(quantity[k], entry[k], wallet[k], fixed[k], False, 1.0,
                                                              other_mm[k], other_pnl[k])
    for k in np.flatnonzero(size > 0):  # inverse positions: the scalar COIN-M formulas (entry basis: its own)
        if np.isnan(fixed[k]):
            liquidation[k] = margin.contract_liquidation_price(quantity[k], entry[k], wallet[k],
                                                               legs.tables[table_of[k]], True, size[k], other_mm[k],
                                                               other_pnl[k])
        else:
            liquidation[k] = margin.entry_value_liquidation_price(quantity[k], entry[k], wallet[k], fixed[k], True,
                                                                  size[k], other_mm[k], other_pnl[k])
        bankruptcy[k] = margin.contract_bankruptcy_price(quantity[k], entry[k], wallet[k] + other_pnl[k], True,
                                                         size[k])
    leverage = legs.leverage[leg]
    positions = pl.DataFrame({
        "snapshot": index, "instrument": instruments, "quantity": quantity, "entry_price": entry,
        "mark_price": marks[leg] if len(leg) else np.zeros(0), "notional": notional, "unrealized_pnl": pnl,
        "initial_margin": notional / leverage, "maintenance_margin": leg_mm,
        "margin_mode": margin_mode, "isolated_margin": isolated_margin,
        "leverage": leverage, "liquidation_price": liquidation, "bankruptcy_price": bankruptcy,
        "asset": asset,
    }, schema_overrides={"snapshot": pl.Int64, "instrument": pl.String, "margin_mode": pl.String,
                         "asset": pl.String, **{c: _FLOAT for c in ("quantity", "entry_price", "mark_price",
                                                                      "notional", "unrealized_pnl", "initial_margin",
                                                                      "maintenance_margin", "isolated_margin",
                                                                      "leverage", "liquidation_price",
                                                                      "bankruptcy_price")}})

    collateral_frame = _collateral_rows(moments, catalog, feed)

    head = snaps.select("snapshot", "ts", "reason", "exchange", "events_applied", "valued_at")
    equity = head.join(equity, on="snapshot", how="inner", maintain_order="right")
    positions = head.join(positions, on="snapshot", how="inner", maintain_order="right")
    collateral_frame = head.join(collateral_frame, on="snapshot", how="inner", maintain_order="right")
    return equity, positions, collateral_frame


def _expand(moments, per_state: list) -> tuple[np.ndarray, np.ndarray, list]:
    """Rows of a table that has its state's entries (`per_state`: a list per account state) per
    snapshot, each state's entries listed once: (snapshot of each row, entry of each row in the flat
    list, the flat list of every state's entries)."""
    flat = [entry for entries in per_state for entry in entries]
    count = np.fromiter(map(len, per_state), dtype=np.int64, count=len(per_state))
    start = np.cumsum(count) - count
    per_snapshot = count[moments.state]
    index = np.repeat(np.arange(len(moments.state), dtype=np.int64), per_snapshot)
    return index, concatenated_ranges(start[moments.state], per_snapshot), flat


def _taken(values: list, entry: np.ndarray) -> list:
    """`[values[e] for e in entry]`, through numpy's take."""
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column[entry].tolist()


def _position_legs(moments, units, owner) -> tuple:
    """The positions table's rows, every snapshot's positions in its account's order: (snapshot
    index, unit, leg of the stacked units, instrument, isolated margin, margin mode, asset) per row.
    A unit's k-th instrument is its leg first + k; rows and legs are matched by (snapshot,
    instrument) (in one pass when they come in the same order, as they do when an account's
    positions are in its units' order)."""
    index, entry, flat = _expand(moments, [list(account.positions.items()) for account in moments.accounts])
    if not len(index):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, [], np.zeros(0), [], []
    instruments = _taken([key for key, _ in flat], entry)
    isolated_margin = np.array([p.isolated_margin for _, p in flat], dtype=np.float64)[entry]
    margin_mode = _taken([p.margin_mode for _, p in flat], entry)
    asset = _taken([p.asset for _, p in flat], entry)
    counts = np.fromiter((len(u.rows) for u in units), dtype=np.int64, count=len(units))
    held = np.fromiter((len(u.instruments) for u in units), dtype=np.int64, count=len(units))
    leg_unit = np.repeat(np.arange(len(units), dtype=np.int64), held)
    leg_of = concatenated_ranges(np.cumsum(counts) - counts, held)  # a unit's position legs come first
    leg_instruments = [key for u in units for key in u.instruments]
    leg_snapshot = owner[leg_unit]
    if leg_instruments != instruments or not np.array_equal(leg_snapshot, index):
        code: dict = {}
        names = np.fromiter((code.setdefault(k, len(code)) for k in instruments), dtype=np.int64,
                            count=len(instruments))
        leg_names = np.fromiter((code.setdefault(k, len(code)) for k in leg_instruments), dtype=np.int64,
                                count=len(leg_instruments))
        wanted, have = index * len(code) + names, leg_snapshot * len(code) + leg_names
        order = np.argsort(have, kind="stable")
        at = order[np.minimum(np.searchsorted(have[order], wanted), len(order) - 1)] if len(order) else order
        missing = np.flatnonzero(have[at] != wanted) if len(order) else np.arange(len(wanted))
        if len(missing):  # a unit must hold every position: never another position's leg in its row
            n = int(missing[0])
            raise RunError(f"positions table: snapshot {int(index[n])}'s position {instruments[n]} is in none of its "
                           f"risk units ({len(missing)} such rows); the margin mode's units must cover every position "
                           "(a bug of xmargin.margin.modes or of the units passed to project)")
        leg_unit, leg_of = leg_unit[at], leg_of[at]
    return index, leg_unit, leg_of, instruments, isolated_margin, margin_mode, asset


def _collateral_rows(moments, catalog, feed) -> pl.DataFrame:
    """Every snapshot's balances by asset: amount, USD price (`asset_price`: stablecoins 1, a coin
    at its feed column's mark at the snapshot's moment, nan unknown), value and collateral value as
    the account's margin mode counts it."""
    index, entry, flat = _expand(moments, [[(account.exchange, *item) for item in sorted(account.balances.items())]
                                           for account in moments.accounts])
    schema = {"snapshot": pl.Int64, "asset": pl.String, "balance": _FLOAT, "price": _FLOAT, "value": _FLOAT,
              "collateral_value": _FLOAT}
    if not len(index):
        return pl.DataFrame(schema=schema)
    pairs: dict = {}
    pair_of = np.fromiter((pairs.setdefault((exchange, asset), len(pairs)) for exchange, asset, _ in flat),
                          dtype=np.int64, count=len(flat))[entry]
    assets = _taken([asset for _, asset, _ in flat], entry)
    balance = np.array([amount for _, _, amount in flat], dtype=np.float64)[entry]
    price = np.empty(len(index))
    counted = np.empty(len(index))
    for (exchange, asset), code in pairs.items():
        members = np.flatnonzero(pair_of == code)
        price[members] = _coin_prices(catalog, exchange, asset, feed, moments, index[members], balance[members])
        count = venue_mode(catalog, exchange).module.counted_collateral
        rules = catalog.venues[exchange].rules
        counted[members] = [count(rules, asset, b, p) for b, p in zip(balance[members].tolist(),
                                                                       price[members].tolist())]
    return pl.DataFrame({"snapshot": index, "asset": assets, "balance": balance, "price": price,
                         "value": balance * price, "collateral_value": counted}, schema=schema)


def _coin_prices(catalog, exchange: str, asset: str, feed, moments, snapshots: np.ndarray,
                 balances: np.ndarray) -> np.ndarray:
    """`asset_price` of `asset` at each of `snapshots`' moments, at once (a balance of `balances`
    held: its sign picks an adverse extreme)."""
    if asset in STABLECOINS:
        return np.ones(len(snapshots))
    column = catalog.asset_columns.get((exchange, asset))
    if column is None:
        return np.full(len(snapshots), math.nan)
    return moment_prices(feed, moments.row[snapshots], np.full(len(snapshots), column), moments.moment[snapshots],
                         np.where(balances == 0, 1.0, balances))


# The snapshot tables with their explicit Arrow schemas.

def _metric_fields(cls, skip=()) -> list[pa.Field]:
    """Arrow fields from a metrics class's annotations: str -> string, everything else float64."""
    return [pa.field(f.name, pa.large_string() if f.type in ("str", str) else pa.float64())
            for f in attrs.fields(cls) if f.name not in skip]


_POOL_FIELDS = _metric_fields(PoolMetrics, skip=("exchange",))
_POSITION_FIELDS = _metric_fields(PositionMetrics)
_COLLATERAL_FIELDS = _metric_fields(CollateralMetrics)


_HEAD = [pa.field("ts", TIMESTAMP), pa.field("reason", pa.large_string()), pa.field("exchange", pa.large_string()),
         pa.field("events_applied", pa.int64()), pa.field("valued_at", pa.large_string())]


def _typed(frame: pl.DataFrame, fields) -> pa.Table:
    """Columns: ts, reason (start | sample | event | final), exchange, events_applied (how many events of
    the log the snapshot has seen), valued_at (the moment of the bar whose prices value it: open |
    near extreme | far extreme | adverse extreme | close), then the metrics' fields, with the
    explicit schema."""
    schema = pa.schema([*_HEAD, *fields])
    frame = frame.with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")))
    return cast_to(frame.select(schema.names).to_arrow(), schema)


def snapshot_tables(snapshots, catalog, feed, units=None, stacked: Stacked | None = None
                    ) -> tuple[pa.Table, pa.Table, pa.Table]:
    """The equity (without distances), positions and collateral tables of `snapshots` (a whole
    run's or a consecutive part of them: rows never depend on another snapshot)."""
    equity, positions, collateral = project(snapshots, catalog, feed, units, stacked)
    return _typed(equity, _POOL_FIELDS), _typed(positions, _POSITION_FIELDS), _typed(collateral, _COLLATERAL_FIELDS)


def _projected(result):
    """The equity, positions and collateral frames of a run (computed once per result)."""
    if result.projected is None:
        result.projected = project(result.snapshots, result.catalog, result.feed, stacked=run_stacked(result))
    return result.projected


def equity_base_table(result) -> pa.Table:
    """One row per account pool per snapshot: wallet, collateral, PnL, margins, ratio, free collateral."""
    return _typed(_projected(result)[0], _POOL_FIELDS)


def positions_table(result) -> pa.Table:
    """One row per open position per snapshot, with its liquidation and bankruptcy prices."""
    return _typed(_projected(result)[1], _POSITION_FIELDS)


def collateral_table(result) -> pa.Table:
    """Per snapshot, every asset balance with its value before and after haircuts (USD)."""
    return _typed(_projected(result)[2], _COLLATERAL_FIELDS)
