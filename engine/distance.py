"""Distance to liquidation: how far the market must move before a risk unit warns or is liquidated.

For every snapshot of a run (the rows of the equity / positions tables) and every risk unit (a
cross pool per settlement asset, each isolated position on its own; the same units as
`engine.risk`), this module finds the smallest relative adverse move x (0.12 = 12 %) of

* each underlying alone (all of the unit's positions on that base asset move together, in the
  direction that hurts the unit's net holding of it: down for a net long, up for a net short), and
* all underlyings together ("all"): every long down and every short up by the same fraction,

at which the unit would raise its first margin warning (maintenance / equity >= the first
`run.warning_thresholds`) and at which it would be liquidated (equity <= maintenance), with the
unit's wallet (cross wallet balance or isolated margin) held fixed. Prices move from the
snapshot's mark: p = mark x (1 + direction x x); maintenance is re-evaluated with the bracket of
the moved notional (`engine.margin.maintenance_margin_array`), so bracket changes are exact.

The search is vectorised over every (snapshot, unit, underlying) case at once: a bisection on x
(60 halvings of [0, cap]; cap = 1 when some position moves down, since a price cannot fall below
zero, else `MAX_UP` = +1000 %). equity - maintenance falls strictly along an adverse move
(maintenance rates are < 1), so the liquidation crossing is unique; the warning crossing is unique
too as long as the threshold is above every maintenance rate involved (true of every shipped rule
set). `inf`: no move up to the cap gets there (e.g. a long whose margin covers a fall to zero).
0.0: the unit is already there at the snapshot's marks.

Money and PnL follow the engine's linear convention (`quantity x (mark - entry)`), as `engine.risk`.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import polars as pl

from engine import margin

MAX_UP = 10.0
ITERATIONS = 60
SNAPSHOT_KEY = ("ts", "reason", "exchange", "events_applied")

SCHEMA = {"ts": pl.Datetime("ns", "UTC"), "reason": pl.String, "exchange": pl.String, "events_applied": pl.Int64,
          "asset": pl.String, "unit": pl.String, "underlying": pl.String, "warning_distance": pl.Float64,
          "liquidation_distance": pl.Float64}


def underlying_of(instrument: str) -> str:
    """'binance:ETH/USDT:USDT' -> 'ETH' (the base asset of the symbol)."""
    symbol = instrument.split(":", 1)[1] if ":" in instrument else instrument
    return symbol.split("/", 1)[0]


def brackets_from_catalog(catalog) -> dict:
    """instrument key -> BracketTable, as the run used them."""
    return {key: tradable.brackets for key, tradable in catalog.tradables.items()}


def first_crossing(case: np.ndarray, n_cases: int, quantity: np.ndarray, mark: np.ndarray, entry: np.ndarray,
                   direction: np.ndarray, table_id: np.ndarray, tables: list, base: np.ndarray,
                   k: float) -> np.ndarray:
    """Smallest x >= 0 with k x equity(x) - maintenance(x) <= 0, per case (vectorised bisection).

    Position arrays (one entry per position of a case): `case` its case index, signed `quantity`,
    `mark`, `entry`, `direction` (-1 down, +1 up, 0 does not move), `table_id` index into
    `tables`. `base` per case: the wallet of the unit. k = 1: liquidation; k = threshold: warning.
    """
    absq = np.abs(quantity)
    groups = [(np.flatnonzero(table_id == t), tables[t]) for t in np.unique(table_id)]

    def f(x: np.ndarray) -> np.ndarray:
        price = mark * (1.0 + direction * x[case])
        equity = base + np.bincount(case, quantity * (price - entry), minlength=n_cases)
        maintenance = np.zeros(n_cases)
        for idx, table in groups:
            maintenance += np.bincount(case[idx], margin.maintenance_margin_array(absq[idx] * price[idx], table),
                                       minlength=n_cases)
        return k * equity - maintenance

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


def distance_table(positions: pl.DataFrame, equity: pl.DataFrame, brackets: dict, thresholds) -> pl.DataFrame:
    """One row per snapshot x risk unit x (each underlying, "all"): ts, reason, exchange,
    events_applied, asset, unit (`cross:<asset>` or the isolated instrument), underlying (base asset
    or "all"), warning_distance, liquidation_distance (fractions; inf: never within the cap)."""
    if positions.height == 0:
        return pl.DataFrame(schema=SCHEMA)
    key = list(SNAPSHOT_KEY)
    pos = (positions.filter(pl.col("quantity") != 0).unique([*key, "instrument"], keep="first", maintain_order=True)
           .select(*key, "instrument", "quantity", "entry_price", "mark_price", "margin_mode", "isolated_margin",
                   "asset"))
    wallets = equity.unique([*key, "asset"], keep="first", maintain_order=True).select(
        *key, "asset", "cross_wallet_balance")
    pos = (pos.join(wallets, on=[*key, "asset"], how="left")
           .with_columns(pl.when(pl.col("margin_mode") == "isolated").then(pl.col("instrument"))
                         .otherwise(pl.lit("cross:") + pl.col("asset")).alias("unit"),
                         pl.when(pl.col("margin_mode") == "isolated").then(pl.col("isolated_margin"))
                         .otherwise(pl.col("cross_wallet_balance").fill_null(0.0)).alias("base"),
                         pl.col("instrument").str.extract(r"^(?:[^:]*:)?([^/:]+)", 1).alias("underlying"),
                         (pl.col("quantity") * pl.col("mark_price")).alias("delta")))
    if pos.height == 0:
        return pl.DataFrame(schema=SCHEMA)
    unit_key = [*key, "asset", "unit"]
    unit_ids = pos.select(unit_key).unique(maintain_order=True).with_row_index("unit_id")
    pos = pos.join(unit_ids, on=unit_key, how="left", maintain_order="left").with_columns(
        pl.col("unit_id").cast(pl.Int64))
    # cases: every unit with "all", and every (unit, underlying)
    pos = pos.with_columns(pl.col("delta").sum().over("unit_id", "underlying").alias("net_delta"))
    n_units = int(pos["unit_id"].max()) + 1
    single = pos.select("unit_id", "underlying").unique(maintain_order=True).with_row_index("case_offset")
    pos = pos.join(single, on=["unit_id", "underlying"], how="left", maintain_order="left")

    quantity = pos["quantity"].to_numpy()
    mark = pos["mark_price"].to_numpy()
    entry = pos["entry_price"].to_numpy()
    unit_id = pos["unit_id"].to_numpy()
    instruments = pos["instrument"].to_list()
    table_index: dict = {}
    tables: list = []
    for instrument in dict.fromkeys(instruments):
        if instrument not in brackets:
            raise KeyError(f"distance: no bracket table for {instrument}")
        table_index[instrument] = len(tables)
        tables.append(brackets[instrument])
    table_id = np.array([table_index[i] for i in instruments], dtype=np.int64)
    adverse = -np.sign(quantity)
    alone = -np.sign(pos["net_delta"].to_numpy())
    n_single = single.height
    # the "all" cases are 0..n_units-1; the single-underlying cases follow
    case = np.concatenate([unit_id, n_units + pos["case_offset"].to_numpy().astype(np.int64)])
    n_cases = n_units + n_single
    unit_base = np.zeros(n_units)
    unit_base[unit_id] = pos["base"].to_numpy()
    base = np.concatenate([unit_base, unit_base[single["unit_id"].to_numpy()]])
    args = dict(case=case, n_cases=n_cases, quantity=np.tile(quantity, 2), mark=np.tile(mark, 2),
                entry=np.tile(entry, 2), direction=np.concatenate([adverse, alone]), table_id=np.tile(table_id, 2),
                tables=tables, base=base)
    liquidation = first_crossing(k=1.0, **args)
    thresholds = list(thresholds)
    warning = first_crossing(k=float(thresholds[0]), **args) if thresholds else np.full(n_cases, math.nan)

    units = pos.unique("unit_id", keep="first").sort("unit_id").select("unit_id", *key, "asset", "unit")
    all_rows = units.with_columns(pl.lit("all").alias("underlying"),
                                  pl.Series("warning_distance", warning[:n_units]),
                                  pl.Series("liquidation_distance", liquidation[:n_units]))
    single_rows = (single.join(units, on="unit_id", how="left", maintain_order="left")
                   .with_columns(pl.Series("warning_distance", warning[n_units:]),
                                 pl.Series("liquidation_distance", liquidation[n_units:])))
    columns = list(SCHEMA)
    return (pl.concat([single_rows.select("unit_id", *columns), all_rows.select("unit_id", *columns)])
            .sort("unit_id", pl.col("underlying") == "all", maintain_order=True).select(columns)
            .cast(SCHEMA))


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
    """`distance_table` of a finished in-memory run (`engine.loop.RunResult`; computed once per result)."""
    from engine.outputs import _POOL_FIELDS, _snapshot_table, positions_table

    try:
        return _CACHE[result]
    except (KeyError, TypeError):
        pass
    equity = pl.from_arrow(_snapshot_table(result.equity_rows, _POOL_FIELDS))
    positions = pl.from_arrow(positions_table(result))
    table = distance_table(positions, equity, brackets_from_catalog(result.catalog), result.config.warning_thresholds)
    try:
        _CACHE[result] = table
    except TypeError:
        pass
    return table
