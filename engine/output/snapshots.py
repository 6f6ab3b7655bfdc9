"""Account snapshots and their projection into the equity, positions and collateral tables.

During a run a snapshot is only a record of *which* ledger state to value at *which* feed row
(accounts are immutable, so keeping a reference is free). The tables are computed once at the end,
column by column with numpy and polars: the same numbers as `xmargin.margin.accounting` computes for one
account (a test holds the two to 1e-12), without per-snapshot Python work in the event loop.

Row order: snapshots in the order taken; within one, pools by asset, positions in the account's
order, balances by asset.
"""

from __future__ import annotations

import math

import attrs
import numpy as np
import polars as pl
import pyarrow as pa

from xmargin.margin import formulas as margin
from xmargin.margin.accounting import (MULTI_ASSET_POOL, CollateralMetrics, PoolMetrics, PositionMetrics, leverage_for,
                                       order_margin)
from xmargin.margin.collateral import STABLECOINS, collateral_value, schedule_for
from xmargin.output.eventlog import TIMESTAMP


@attrs.frozen(slots=True)
class Snapshot:
    """Value `account` at the marks of feed row `row`; stamped `ts` (ns) and `reason`
    (start | sample | event | final); `events_applied` is how much of the log it has seen."""

    ts: int
    reason: str
    events_applied: int
    row: int
    account: object


KEYS = ("ts", "reason", "exchange", "events_applied")
_FLOAT = pl.Float64


def _prices(catalog, feed, exchanges, assets, rows) -> np.ndarray:
    """USD price of each (exchange, asset) at each row (stablecoins 1, unknown nan)."""
    out = np.full(len(rows), np.nan)
    stable = np.isin(np.asarray(assets, dtype=object), STABLECOINS)
    out[stable] = 1.0
    columns = np.array([catalog.asset_columns.get((e, a), -1) for e, a in zip(exchanges, assets)], dtype=np.int64)
    known = ~stable & (columns >= 0)
    out[known] = feed.mark_close[np.asarray(rows)[known], columns[known]]
    return out


def _flatten(snapshots, catalog, feed):
    """Python pass over the recorded states: one list entry per position / balance / pool."""
    positions = {k: [] for k in ("snapshot", "instrument", "column", "quantity", "entry_price", "margin_mode",
                                 "isolated_margin", "asset", "leverage", "pool", "table", "inverse", "size")}
    balances = {k: [] for k in ("snapshot", "asset", "balance", "pool")}
    reserved = {}
    for n, snapshot in enumerate(snapshots):
        account = snapshot.account
        exchange = account.exchange
        multi = catalog.venues[exchange].margin_mode == "multi-asset"
        for key, position in account.positions.items():
            tradable = catalog.tradable(key)
            positions["snapshot"].append(n)
            positions["instrument"].append(key)
            positions["column"].append(tradable.column)
            positions["quantity"].append(position.quantity)
            positions["entry_price"].append(position.entry_price)
            positions["margin_mode"].append(position.margin_mode)
            positions["isolated_margin"].append(position.isolated_margin)
            positions["asset"].append(position.asset)
            positions["leverage"].append(leverage_for(account, catalog, key))
            positions["pool"].append(MULTI_ASSET_POOL if multi else position.asset)
            positions["table"].append(tradable.brackets)
            positions["inverse"].append(tradable.instrument.is_inverse)
            positions["size"].append(tradable.instrument.contract_size)
        for asset in sorted(account.balances):
            balances["snapshot"].append(n)
            balances["asset"].append(asset)
            balances["balance"].append(account.balances[asset])
            balances["pool"].append(MULTI_ASSET_POOL if multi else asset)
        if account.orders:
            assets = STABLECOINS if multi else {catalog.tradable(o.instrument).instrument.settle
                                                for o in account.orders.values()}
            for asset in assets:
                amount = order_margin(account, catalog, feed.close[snapshot.row], asset)
                if amount:
                    pool = MULTI_ASSET_POOL if multi else asset
                    reserved[(n, pool)] = reserved.get((n, pool), 0.0) + amount
    return positions, balances, reserved


def project(snapshots, catalog, feed) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(equity, positions, collateral) DataFrames for the recorded snapshots."""
    snaps = pl.DataFrame({
        "snapshot": np.arange(len(snapshots), dtype=np.int64),
        "ts": [s.ts for s in snapshots], "reason": [s.reason for s in snapshots],
        "exchange": [s.account.exchange for s in snapshots],
        "events_applied": [s.events_applied for s in snapshots], "row": [s.row for s in snapshots],
    }, schema={"snapshot": pl.Int64, "ts": pl.Int64, "reason": pl.String, "exchange": pl.String,
               "events_applied": pl.Int64, "row": pl.Int64})
    snapshot_rows = snaps["row"].to_numpy()
    snapshot_exchange = snaps["exchange"].to_list()
    multi_exchanges = [e for e, v in catalog.venues.items() if v.margin_mode == "multi-asset"]
    p, b, reserved = _flatten(snapshots, catalog, feed)

    # -- positions -------------------------------------------------------------------------------
    index = np.asarray(p["snapshot"], dtype=np.int64)
    rows = snapshot_rows[index] if len(index) else np.zeros(0, dtype=np.int64)
    columns = np.asarray(p["column"], dtype=np.int64)
    quantity = np.asarray(p["quantity"], dtype=np.float64)
    entry = np.asarray(p["entry_price"], dtype=np.float64)
    mark = feed.mark_close[rows, columns] if len(index) else np.zeros(0)
    inverse = np.asarray(p["inverse"], dtype=bool)
    size = np.asarray(p["size"], dtype=np.float64)
    notional = np.abs(quantity) * mark
    upnl = quantity * (mark - entry)
    if inverse.any():  # coin-margined: value and PnL in the coin
        notional[inverse] = margin.contract_notional(quantity[inverse], mark[inverse], True, size[inverse])
        upnl[inverse] = margin.contract_pnl(quantity[inverse], entry[inverse], mark[inverse], True, size[inverse])
    maintenance = np.zeros(len(index))
    tables = p["table"]
    groups: dict[int, list] = {}
    for k, table in enumerate(tables):
        groups.setdefault(id(table), []).append(k)
    for members in groups.values():
        members = np.asarray(members)
        maintenance[members] = margin.maintenance_margin_array(notional[members], tables[members[0]])
    leverage = np.asarray(p["leverage"], dtype=np.float64)
    isolated = np.asarray([m == "isolated" for m in p["margin_mode"]], dtype=bool)
    isolated_margin = np.asarray(p["isolated_margin"], dtype=np.float64)
    position_exchange = [snapshot_exchange[i] for i in index]
    settle_price = _prices(catalog, feed, position_exchange, p["asset"], rows) if len(index) else np.zeros(0)
    in_multi = np.isin(np.asarray(position_exchange, dtype=object), multi_exchanges) if len(index) else isolated
    # pool valuation scales by the settle asset's price only in multi-asset pools (USD)
    scale = np.where(in_multi, settle_price, 1.0)
    positions = pl.DataFrame({
        "snapshot": index, "pool": p["pool"], "instrument": p["instrument"], "quantity": quantity,
        "entry_price": entry, "mark_price": mark, "notional": notional, "unrealized_pnl": upnl,
        "initial_margin": notional / leverage, "maintenance_margin": maintenance, "margin_mode": p["margin_mode"],
        "isolated_margin": isolated_margin, "leverage": leverage, "asset": p["asset"],
        "is_isolated": isolated, "pool_pnl": upnl * scale, "pool_isolated": isolated_margin * scale,
        "pool_initial": notional * scale / leverage, "pool_maintenance": maintenance,
    }, schema_overrides={"snapshot": pl.Int64, "pool": pl.String, "instrument": pl.String,
                         "margin_mode": pl.String, "asset": pl.String})

    # -- balances / collateral -------------------------------------------------------------------
    bindex = np.asarray(b["snapshot"], dtype=np.int64)
    brows = snapshot_rows[bindex] if len(bindex) else np.zeros(0, dtype=np.int64)
    bexchange = [snapshot_exchange[i] for i in bindex]
    price = _prices(catalog, feed, bexchange, b["asset"], brows) if len(bindex) else np.zeros(0)
    balance = np.asarray(b["balance"], dtype=np.float64)
    value = balance * price
    counted = np.where(np.isin(np.asarray(b["asset"], dtype=object), STABLECOINS), value, 0.0) \
        if len(bindex) else np.zeros(0)
    for k in range(len(bindex)):
        if bexchange[k] in multi_exchanges:
            rules = catalog.venues[bexchange[k]].rules
            counted[k] = (collateral_value(balance[k], price[k], schedule_for(rules, b["asset"][k]))
                          if math.isfinite(price[k]) else 0.0)
    collateral = pl.DataFrame({"snapshot": bindex, "pool": b["pool"], "asset": b["asset"], "balance": balance,
                               "price": price, "value": value, "collateral_value": counted},
                              schema_overrides={"snapshot": pl.Int64, "pool": pl.String, "asset": pl.String})

    # -- pools ------------------------------------------------------------------------------------
    in_multi_balance = pl.col("snapshot").is_in(
        snaps.filter(pl.col("exchange").is_in(multi_exchanges))["snapshot"].implode())
    wallets = collateral.group_by("snapshot", "pool").agg(
        pl.when(in_multi_balance).then(pl.when(pl.col("price").is_nan()).then(0.0).otherwise(pl.col("value")))
        .otherwise(pl.col("balance")).sum().alias("cross_wallet_balance"),
        pl.when(in_multi_balance).then(pl.col("collateral_value")).otherwise(pl.col("balance")).sum()
        .alias("collateral_value"))
    held = positions.group_by("snapshot", "pool").agg(
        pl.col("pool_isolated").filter(pl.col("is_isolated")).sum().alias("isolated_margin"),
        pl.col("pool_pnl").sum().alias("unrealized_pnl"),
        pl.col("pool_pnl").filter(~pl.col("is_isolated")).sum().alias("cross_pnl"),
        pl.col("pool_initial").filter(~pl.col("is_isolated")).sum().alias("initial"),
        pl.col("pool_maintenance").filter(~pl.col("is_isolated")).sum().alias("maintenance_margin"))
    multi_pools = snaps.filter(pl.col("exchange").is_in(multi_exchanges)).select(
        "snapshot", pl.lit(MULTI_ASSET_POOL).alias("pool"))
    keys = pl.concat([wallets.select("snapshot", "pool"), held.select("snapshot", "pool"), multi_pools]).unique()
    reserved_frame = pl.DataFrame({"snapshot": [k[0] for k in reserved], "pool": [k[1] for k in reserved],
                                   "open_order_margin": list(reserved.values())},
                                  schema={"snapshot": pl.Int64, "pool": pl.String, "open_order_margin": _FLOAT})
    equity = (keys.join(wallets, on=["snapshot", "pool"], how="left")
              .join(held, on=["snapshot", "pool"], how="left")
              .join(reserved_frame, on=["snapshot", "pool"], how="left")
              .with_columns(pl.col(c).fill_null(0.0) for c in (
                  "cross_wallet_balance", "collateral_value", "isolated_margin", "unrealized_pnl", "cross_pnl",
                  "initial", "maintenance_margin", "open_order_margin"))
              .with_columns((pl.col("collateral_value") + pl.col("cross_pnl")).alias("margin_balance"))
              .with_columns(
                  (pl.col("cross_wallet_balance") + pl.col("isolated_margin")).alias("wallet_balance"),
                  (pl.col("initial") + pl.col("open_order_margin")).alias("initial_margin"),
                  pl.when(pl.col("margin_balance") > 0).then(pl.col("maintenance_margin") / pl.col("margin_balance"))
                  .when(pl.col("maintenance_margin") > 0).then(float("inf")).otherwise(0.0).alias("margin_ratio"),
                  (pl.col("margin_balance") - pl.col("initial") - pl.col("open_order_margin"))
                  .alias("free_collateral"))
              .sort("snapshot", "pool"))

    # -- liquidation and bankruptcy prices (need the pool's totals) --------------------------------
    pool_totals = equity.select("snapshot", "pool", "collateral_value", "cross_pnl", "maintenance_margin")
    joined = positions.with_row_index("position").join(pool_totals.rename(
        {"maintenance_margin": "pool_mm"}), on=["snapshot", "pool"], how="left").sort("position")
    wallet = np.where(isolated, isolated_margin, joined["collateral_value"].to_numpy()) if len(index) else np.zeros(0)
    other_mm = np.where(isolated, 0.0, joined["pool_mm"].to_numpy() - maintenance) if len(index) else np.zeros(0)
    other_pnl = np.where(isolated, 0.0, joined["cross_pnl"].to_numpy() - upnl * scale) if len(index) else np.zeros(0)
    liquidation = np.zeros(len(index))
    for members in groups.values():
        members = np.asarray(members)
        liquidation[members] = margin.cross_liquidation_price_array(
            quantity[members], entry[members], wallet[members], tables[members[0]], other_mm[members],
            other_pnl[members])
    bankruptcy = margin.bankruptcy_price_array(quantity, entry, wallet + other_pnl) if len(index) else np.zeros(0)
    entry_basis = np.array([catalog.venues[e].rules.liquidation.maintenance_basis == "entry"
                            for e in position_exchange], dtype=bool) & isolated & ~inverse
    for k in np.flatnonzero(entry_basis):  # isolated, margined on entry value (Bybit): its own formula
        maintenance[k] = margin.maintenance_margin(abs(quantity[k]) * entry[k], tables[k])
        liquidation[k] = margin.isolated_liquidation_price_entry_mm(quantity[k], entry[k], wallet[k], tables[k])
    if entry_basis.any():
        positions = positions.with_columns(pl.Series("maintenance_margin", maintenance, dtype=_FLOAT))
    for k in np.flatnonzero(inverse):  # inverse positions: the scalar COIN-M formulas
        liquidation[k] = margin.contract_liquidation_price(quantity[k], entry[k], wallet[k], tables[k], True, size[k],
                                                           other_mm[k], other_pnl[k])
        bankruptcy[k] = margin.contract_bankruptcy_price(quantity[k], entry[k], wallet[k] + other_pnl[k], True, size[k])
    positions = positions.with_columns(pl.Series("liquidation_price", liquidation, dtype=_FLOAT),
                                       pl.Series("bankruptcy_price", bankruptcy, dtype=_FLOAT))

    head = snaps.select("snapshot", "ts", "reason", "exchange", "events_applied")
    equity = head.join(equity, on="snapshot", how="inner").sort("snapshot", "pool").rename({"pool": "asset"})
    positions = head.join(positions.with_row_index("position"), on="snapshot", how="inner").sort("position")
    collateral = head.join(collateral.with_row_index("position"), on="snapshot", how="inner").sort("position")
    return equity, positions, collateral


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
    return frame.select(schema.names).to_arrow().cast(schema)


def snapshot_tables(snapshots, catalog, feed) -> tuple[pa.Table, pa.Table, pa.Table]:
    """The equity (without distances), positions and collateral tables of `snapshots` (a whole
    run's or a consecutive part of them: rows never depend on another snapshot)."""
    equity, positions, collateral = project(snapshots, catalog, feed)
    return _typed(equity, _POOL_FIELDS), _typed(positions, _POSITION_FIELDS), _typed(collateral, _COLLATERAL_FIELDS)


def _projected(result):
    """The equity, positions and collateral frames of a run (computed once per result)."""
    if result.projected is None:
        result.projected = project(result.snapshots, result.catalog, result.feed)
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
