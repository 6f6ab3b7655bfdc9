"""Account snapshots and their projection into the equity, positions and collateral tables.

During a run a snapshot is only a record of *which* ledger state to value at *which* feed row
(accounts are immutable, so keeping a reference is free). The tables are computed once at the end:
each snapshot's account becomes risk units through its margin mode (`xmargin.margin.modes`; one
set per account state, reused by every snapshot of that state unless the units depend on the
row's prices), and one call of the valuation kernel (`xmargin.margin.kernel.valuate`) values every
unit of every snapshot at its row's marks: the same numbers as `xmargin.margin.accounting` gives
strategies for one account (tests/test_snapshots.py holds the two callers equal).

Row order: snapshots in the order taken; within one, pools by asset, positions in the account's
order, balances by asset.
"""

from __future__ import annotations

import attrs
import numpy as np
import polars as pl
import pyarrow as pa

from xmargin.errors import RunError
from xmargin.margin import formulas as margin
from xmargin.margin.accounting import CollateralMetrics, PoolMetrics, PositionMetrics
from xmargin.margin.kernel import COLLATERAL, valuate
from xmargin.margin.modes import account_units, venue_mode
from xmargin.margin.units import asset_price, asset_prices, stack
from xmargin.output.eventlog import TIMESTAMP, cast_to


@attrs.frozen(slots=True)
class Snapshot:
    """Value `account` at the marks of feed row `row`; stamped `ts` (ns) and `reason`
    (start | sample | event | final); `events_applied` is how much of the log it has seen.
    `units`: the account's risk units when the run already has them (modes whose units do not
    move with prices: the run values every state it snapshots, so they are built once)."""

    ts: int
    reason: str
    events_applied: int
    row: int
    account: object
    units: object = None


KEYS = ("ts", "reason", "exchange", "events_applied")
_FLOAT = pl.Float64


def snapshot_units(snapshots, catalog, feed) -> tuple[list, list]:
    """Every snapshot's risk units, flattened: (units, snapshot index of each unit); units are built
    once per account state unless the mode values collateral at the row's prices."""
    units, owner = [], []
    built: dict = {}  # units by the identity of the dicts they depend on (kept alive by the snapshots)
    for n, snapshot in enumerate(snapshots):
        account = snapshot.account
        key = (account.exchange, id(account.positions), id(account.balances), id(account.leverage),
               id(account.warning_levels))
        found = snapshot.units if snapshot.units is not None else built.get(key)
        if found is None:
            found = account_units(catalog, account, feed.mark_close[snapshot.row], snapshot.ts)
            if not venue_mode(catalog, account.exchange).revalue_each_stretch:
                built[key] = found
        units.extend(found)
        owner.extend([n] * len(found))
    return units, owner


def _order_margins(units, owner, snapshots, catalog, feed) -> list[float]:
    """Per unit: the initial margin its pool reserves for open orders (isolated units: none)."""
    out = []
    for unit, n in zip(units, owner):
        account = snapshots[n].account
        if unit.isolated or not account.orders:
            out.append(0.0)
            continue
        mode = venue_mode(catalog, account.exchange)
        out.append(mode.module.pool_order_margin(account, catalog, feed.close[snapshots[n].row], unit.asset))
    return out


def run_stacked(result) -> "Stacked":
    """`stacked_units` of a finished run's snapshots, computed once (the tables and distance share them)."""
    if result.units is None:
        result.units = stacked_units(result.snapshots, result.catalog, result.feed)
    return result.units


@attrs.frozen(eq=False)
class Stacked:
    """The snapshots' units as one kernel `Legs` (with their open-order margin), each leg's feed
    column and its mark at its snapshot's row, and their valuation there: what the tables and the
    distance search share."""

    units: list
    owner: np.ndarray  # snapshot index of each unit
    legs: object
    columns: np.ndarray
    marks: np.ndarray
    value: object  # xmargin.margin.kernel.Valuation of `legs` at `marks`


def stacked_units(snapshots, catalog, feed, units=None) -> Stacked:
    """Stack `snapshot_units` (`units`, when already built) of `snapshots` once."""
    units, owner = units if units is not None else snapshot_units(snapshots, catalog, feed)
    reserved = _order_margins(units, owner, snapshots, catalog, feed)
    legs = stack(units, reserved)
    owner = np.asarray(owner, dtype=np.int64)
    snapshot_rows = np.fromiter((s.row for s in snapshots), dtype=np.int64, count=len(snapshots))
    columns = np.fromiter((r[0] for u in units for r in u.rows), dtype=np.int64, count=len(legs.quantity))
    leg_rows = snapshot_rows[owner[legs.unit]] if len(legs.unit) else np.zeros(0, dtype=np.int64)
    marks = feed.mark_close[leg_rows, columns] if len(leg_rows) else np.zeros(0)
    return Stacked(units, owner, legs, columns, marks, valuate(legs, marks))


def project(snapshots, catalog, feed, units=None, stacked: Stacked | None = None
            ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(equity, positions, collateral) DataFrames for the recorded snapshots (`units`: their
    `snapshot_units`, `stacked`: their `stacked_units`, when already built)."""
    snaps = pl.DataFrame({
        "snapshot": np.arange(len(snapshots), dtype=np.int64),
        "ts": [s.ts for s in snapshots], "reason": [s.reason for s in snapshots],
        "exchange": [s.account.exchange for s in snapshots],
        "events_applied": [s.events_applied for s in snapshots],
    }, schema={"snapshot": pl.Int64, "ts": pl.Int64, "reason": pl.String, "exchange": pl.String,
               "events_applied": pl.Int64})
    stacked = stacked if stacked is not None else stacked_units(snapshots, catalog, feed, units)
    units, owner, legs, marks, value = stacked.units, stacked.owner, stacked.legs, stacked.marks, stacked.value

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
    isolated = unit_isolated = np.fromiter((u.isolated for u in units), dtype=bool, count=n_units)
    pool = [modes[u.exchange].pool_of(u.asset) if u.isolated else u.asset for u in units]
    # money of an isolated position counts in its pool's currency (1 when the pool is its asset)
    scale = np.array([1.0 if p == u.asset else asset_price(catalog, u.exchange, u.asset,
                                                           feed.mark_close[snapshots[n].row])
                      for p, u, n in zip(pool, units, owner.tolist())], dtype=np.float64)
    wallet = np.array([0.0 if u.isolated else u.base if modes[u.exchange].pools_are_assets else
                       modes[u.exchange].module.wallet_value(snapshots[n].account, catalog,
                                                             feed.mark_close[snapshots[n].row], u.asset)
                       for u, n in zip(units, owner.tolist())], dtype=np.float64)
    base = legs.base
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
    index, unit_of, leg, positions_of, instruments = _position_legs(snapshots, units, owner)
    quantity, entry = legs.quantity[leg], legs.entry[leg]
    notional, pnl, leg_mm = value.notional[leg], value.unrealized_pnl[leg], value.leg_maintenance[leg]
    isolated = unit_isolated[unit_of]
    isolated_margin = np.array([p.isolated_margin for p in positions_of], dtype=np.float64)
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
        liquidation[k] = margin.isolated_liquidation_price_entry_mm(quantity[k], entry[k], wallet[k],
                                                                    legs.tables[table_of[k]])
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
        "margin_mode": [p.margin_mode for p in positions_of], "isolated_margin": isolated_margin,
        "leverage": leverage, "liquidation_price": liquidation, "bankruptcy_price": bankruptcy,
        "asset": [p.asset for p in positions_of],
    }, schema_overrides={"snapshot": pl.Int64, "instrument": pl.String, "margin_mode": pl.String,
                         "asset": pl.String, **{c: _FLOAT for c in ("quantity", "entry_price", "mark_price",
                                                                      "notional", "unrealized_pnl", "initial_margin",
                                                                      "maintenance_margin", "isolated_margin",
                                                                      "leverage", "liquidation_price",
                                                                      "bankruptcy_price")}})

    collateral_frame = _collateral_rows(snapshots, catalog, feed)

    head = snaps.select("snapshot", "ts", "reason", "exchange", "events_applied")
    equity = head.join(equity, on="snapshot", how="inner", maintain_order="right")
    positions = head.join(positions, on="snapshot", how="inner", maintain_order="right")
    collateral_frame = head.join(collateral_frame, on="snapshot", how="inner", maintain_order="right")
    return equity, positions, collateral_frame


def _position_legs(snapshots, units, owner) -> tuple:
    """The positions table's rows, every snapshot's positions in its account's order: (snapshot
    index, unit, leg of the stacked units, Position, instrument) per row. A unit's k-th instrument
    is its leg first + k; rows and legs are matched by (snapshot, instrument) (in one pass when they
    come in the same order, as they do when an account's positions are in its units' order)."""
    picks = [(n, key, position) for n, snapshot in enumerate(snapshots)
             for key, position in snapshot.account.positions.items()]
    if not picks:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, [], []
    index, instruments, positions_of = (list(column) for column in zip(*picks))
    index = np.array(index, dtype=np.int64)
    counts = np.fromiter((len(u.rows) for u in units), dtype=np.int64, count=len(units))
    held = np.fromiter((len(u.instruments) for u in units), dtype=np.int64, count=len(units))
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    leg_unit = np.repeat(np.arange(len(units), dtype=np.int64), held)
    leg_of = first[leg_unit] + (np.arange(len(leg_unit)) - np.repeat(np.cumsum(held) - held, held))
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
    return index, leg_unit, leg_of, positions_of, instruments


def _collateral_rows(snapshots, catalog, feed) -> pl.DataFrame:
    """Every snapshot's balances by asset: amount, USD price (`asset_price`: stablecoins 1, a coin
    at its feed column's mark, nan unknown), value and collateral value as the account's margin
    mode counts it."""
    picks = [(n, snapshot.account.exchange, asset, snapshot.account.balances[asset])
             for n, snapshot in enumerate(snapshots) for asset in sorted(snapshot.account.balances)]
    schema = {"snapshot": pl.Int64, "asset": pl.String, "balance": _FLOAT, "price": _FLOAT, "value": _FLOAT,
              "collateral_value": _FLOAT}
    if not picks:
        return pl.DataFrame(schema=schema)
    index, exchanges, assets, balances = (list(column) for column in zip(*picks))
    index = np.array(index, dtype=np.int64)
    balance = np.array(balances, dtype=np.float64)
    price = np.empty(len(index))
    pairs: dict = {}
    for k, pair in enumerate(zip(exchanges, assets)):
        pairs.setdefault(pair, []).append(k)
    rows = np.fromiter((s.row for s in snapshots), dtype=np.int64, count=len(snapshots))
    counted = np.empty(len(index))
    for (exchange, asset), members in pairs.items():
        members = np.array(members, dtype=np.int64)
        price[members] = asset_prices(catalog, exchange, asset, feed.mark_close, rows[index[members]])
        count = venue_mode(catalog, exchange).module.counted_collateral
        rules = catalog.venues[exchange].rules
        counted[members] = [count(rules, asset, b, p) for b, p in zip(balance[members].tolist(),
                                                                       price[members].tolist())]
    return pl.DataFrame({"snapshot": index, "asset": assets, "balance": balance, "price": price,
                         "value": balance * price, "collateral_value": counted}, schema=schema)


# The snapshot tables with their explicit Arrow schemas.

def _metric_fields(cls, skip=()) -> list[pa.Field]:
    """Arrow fields from a metrics class's annotations: str -> string, everything else float64."""
    return [pa.field(f.name, pa.large_string() if f.type in ("str", str) else pa.float64())
            for f in attrs.fields(cls) if f.name not in skip]


_POOL_FIELDS = _metric_fields(PoolMetrics, skip=("exchange",))
_POSITION_FIELDS = _metric_fields(PositionMetrics)
_COLLATERAL_FIELDS = _metric_fields(CollateralMetrics)


_HEAD = [pa.field("ts", TIMESTAMP), pa.field("reason", pa.large_string()), pa.field("exchange", pa.large_string()),
         pa.field("events_applied", pa.int64())]


def _typed(frame: pl.DataFrame, fields) -> pa.Table:
    """Columns: ts, reason (start | sample | event | final), exchange, events_applied (how many events of
    the log the snapshot has seen), then the metrics' fields, with the explicit schema."""
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
