"""Distance to liquidation: how far the market must move before a risk unit warns or is liquidated.

For every snapshot of a run (the rows of the equity / positions tables) and every risk unit (a
cross pool per settlement asset, or in multi-asset mode one "USD" pool per account; each isolated
position on its own; the same units as `xmargin.margin.risk`), this module finds the smallest relative
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

Multi-asset pools (`multi_asset` exchanges, pool "USD"): equity = the stablecoins' collateral
value (constant) + collateral legs + the positions' PnL, maintenance from the positions only, as
`xmargin.margin.risk`. A collateral leg is a non-stable balance of the snapshot's collateral rows held as
its haircut coin amount (collateral_value / price, `xmargin.margin.collateral.effective_quantity`) with
entry 0, so its value moves with its underlying. "Adverse" for collateral: a holding is a long of
its asset and a negative balance (a liability) a short, so in the all-together move holdings fall
and liabilities rise with the positions' longs and shorts; alone, an underlying moves against the
unit's net holding of it, positions and collateral together (BTC collateral with no BTC position:
BTC falls). Isolated positions of a multi-asset account stand on their margin, without collateral
legs. Rows of a multi-asset account carry asset "USD" (the pool of its equity rows).

The search is vectorised over every (snapshot, unit, underlying) case at once: a bisection on x
(60 halvings of [0, cap]; cap = 1 when some leg moves down, since a price cannot fall below
zero, else `MAX_UP` = +1000 %). equity - maintenance falls strictly along an adverse move
(maintenance rates are < 1), so the liquidation crossing is unique; the warning crossing is unique
too as long as the threshold is above every maintenance rate involved (true of every shipped rule
set). `inf`: no move up to the cap gets there (e.g. a long whose margin covers a fall to zero).
0.0: the unit is already there at the snapshot's marks.

Money and PnL follow the engine's conventions, as `xmargin.margin.risk`: linear legs `quantity x (mark -
entry)`, inverse (coin-margined) legs `quantity x contract size x (1/entry - 1/mark)` in the coin.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from xmargin.margin import formulas as margin
from xmargin.margin.accounting import MULTI_ASSET_POOL
from xmargin.margin.collateral import STABLECOINS
from xmargin.output.snapshots import collateral_table, equity_base_table, positions_table

MAX_UP = 10.0
ITERATIONS = 48  # bisection steps: the move is then known to 10 / 2**48 ~ 4e-14
SNAPSHOT_KEY = ("ts", "reason", "exchange", "events_applied")

SCHEMA = {"ts": pl.Datetime("ns", "UTC"), "reason": pl.String, "exchange": pl.String, "events_applied": pl.Int64,
          "asset": pl.String, "unit": pl.String, "underlying": pl.String, "warning_distance": pl.Float64,
          "liquidation_distance": pl.Float64}


def brackets_from_catalog(catalog) -> dict:
    """instrument key -> BracketTable, as the run used them."""
    return {key: tradable.brackets for key, tradable in catalog.tradables.items()}


def multi_asset_exchanges(catalog) -> set:
    """The exchanges of a catalog in multi-asset mode."""
    return {name for name, venue in catalog.venues.items() if venue.margin_mode == "multi-asset"}


class _LegValuation:
    """PnL and maintenance margin of legs at given prices (`xmargin.margin.risk` conventions):
    linear `quantity x (price - entry)`, inverse `quantity x size x (1/entry - 1/price)` in the
    coin; maintenance from each leg's bracket table at its notional (`fixed_mm` where not nan);
    collateral legs (table -1) have none. `groups`: the legs of each table, in table order."""

    def __init__(self, quantity, entry, table_id, tables, size, fixed_mm):
        self.quantity, self.entry, self.size = quantity, entry, size
        self.absq = np.abs(quantity)
        self.inverse = size > 0
        self.any_inverse = bool(self.inverse.any())
        self.safe_entry = np.where(self.inverse, entry, 1.0)
        self.groups, self._tables = [], []
        for t in np.unique(table_id):
            if t >= 0:
                idx = np.flatnonzero(table_id == t)
                fixed = fixed_mm[idx]
                self.groups.append(idx)
                self._tables.append((idx, tables[t], None if np.isnan(fixed).all() else fixed))

    def __call__(self, price: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pnl = self.quantity * (price - self.entry)
        notional = self.absq * price
        if self.any_inverse:
            inverse = self.inverse
            safe_price = np.where(inverse, np.maximum(price, 1e-300), 1.0)
            pnl = np.where(inverse, self.quantity * self.size * (1.0 / self.safe_entry - 1.0 / safe_price), pnl)
            notional = np.where(inverse, self.absq * self.size / safe_price, notional)
        leg_mm = np.zeros(len(price))
        for idx, table, fixed in self._tables:
            mm = margin.maintenance_margin_array(notional[idx], table)
            leg_mm[idx] = mm if fixed is None else np.where(np.isnan(fixed), mm, fixed)
        return pnl, leg_mm


def first_crossing(case: np.ndarray, n_cases: int, quantity: np.ndarray, mark: np.ndarray, entry: np.ndarray,
                   direction: np.ndarray, table_id: np.ndarray, tables: list, base: np.ndarray,
                   k: float, size: np.ndarray | None = None, fixed_mm: np.ndarray | None = None,
                   case_mm: np.ndarray | None = None) -> np.ndarray:
    """Smallest x >= 0 with k x equity(x) - maintenance(x) <= 0, per case (vectorised bisection).

    Leg arrays (one entry per leg of a case): `case` its case index, signed `quantity`, `mark`,
    `entry`, `direction` (-1 down, +1 up, 0 does not move), `table_id` index into `tables` (-1: a
    collateral leg, no maintenance). `base` per case: the wallet of the unit. k = 1: liquidation;
    k = threshold: warning. `size` per leg: the contract size of an inverse (coin-margined) leg, 0
    for a linear one: its PnL is quantity x size x (1/entry - 1/price) and its notional
    |quantity| x size / price, in the coin. `fixed_mm` per leg: a maintenance margin that does not
    move with the price (an isolated position margined on its entry value, Bybit), nan otherwise.
    `case_mm` per case: maintenance of legs left out because they do not move (added as is).
    The bisection only evaluates the legs of cases still open (crossing inside (0, cap)).
    """
    size = np.zeros(len(quantity)) if size is None else size
    fixed_mm = np.full(len(quantity), np.nan) if fixed_mm is None else fixed_mm
    case_mm = np.zeros(n_cases) if case_mm is None else case_mm

    def evaluator(legs: np.ndarray | slice, leg_case: np.ndarray, n: int, case_base: np.ndarray,
                  case_fixed: np.ndarray):
        """f(x) over cases 0..n-1 given the legs `legs` (positions in the leg arrays) of those cases."""
        value = _LegValuation(quantity[legs], entry[legs], table_id[legs], tables, size[legs], fixed_mm[legs])
        m, d = mark[legs], direction[legs]
        groups = value.groups

        def f(x: np.ndarray) -> np.ndarray:
            pnl, leg_mm = value(m * (1.0 + d * x[leg_case]))
            equity = case_base + np.bincount(leg_case, pnl, minlength=n)
            maintenance = case_fixed.copy()
            for idx in groups:
                maintenance += np.bincount(leg_case[idx], leg_mm[idx], minlength=n)
            return k * equity - maintenance

        return f

    f = evaluator(slice(None), case, n_cases, base, case_mm)
    down = np.bincount(case, direction < 0, minlength=n_cases) > 0
    cap = np.where(down, 1.0, MAX_UP)
    at_zero, at_cap = f(np.zeros(n_cases)), f(cap)
    out = np.full(n_cases, math.inf)
    out[at_zero <= 0] = 0.0
    active = (at_zero > 0) & (at_cap <= 0)
    if active.any():
        cases = np.flatnonzero(active)
        compact = np.full(n_cases, -1)
        compact[cases] = np.arange(len(cases))
        legs = np.flatnonzero(active[case])
        f = evaluator(legs, compact[case[legs]], len(cases), base[cases], case_mm[cases])
        lo, hi = np.zeros(len(cases)), cap[cases]
        for _ in range(ITERATIONS):
            mid = 0.5 * (lo + hi)
            hit = f(mid) <= 0
            hi = np.where(hit, mid, hi)
            lo = np.where(hit, lo, mid)
        out[cases] = hi
    return out


def _collateral_parts(equity: pl.DataFrame, collateral: pl.DataFrame | None,
                      multi_asset: set) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per snapshot of a multi-asset account: the stablecoins' collateral value (`stable`), and
    its collateral legs (`underlying`, `quantity` = haircut coin amount, `mark_price` = price).
    Without collateral rows the pool's whole collateral value counts as constant."""
    key = list(SNAPSHOT_KEY)
    legs_schema = {**{k: SCHEMA[k] for k in key}, "underlying": pl.String, "quantity": pl.Float64,
                   "mark_price": pl.Float64}
    no_legs = pl.DataFrame(schema=legs_schema)
    exchanges = sorted(multi_asset)
    if collateral is None:
        stable = (equity.filter(pl.col("exchange").is_in(exchanges) & (pl.col("asset") == MULTI_ASSET_POOL))
                  .unique(key, keep="first", maintain_order=True)
                  .select(*key, pl.col("collateral_value").alias("stable")))
        return stable, no_legs
    rows = (collateral.filter(pl.col("exchange").is_in(exchanges))
            .unique([*key, "asset"], keep="first", maintain_order=True)
            .with_columns(pl.col("asset").is_in(list(STABLECOINS)).alias("stablecoin")))
    stable = (rows.filter(pl.col("stablecoin")).group_by(key, maintain_order=True)
              .agg(pl.col("collateral_value").sum().alias("stable")))
    legs = (rows.filter(~pl.col("stablecoin") & (pl.col("balance") != 0) & pl.col("price").is_finite()
                        & (pl.col("price") > 0) & (pl.col("collateral_value") != 0))
            .select(*key, pl.col("asset").alias("underlying"),
                    (pl.col("collateral_value") / pl.col("price")).alias("quantity"),
                    pl.col("price").alias("mark_price")))
    return stable, legs.cast(legs_schema)


def distance_table(positions: pl.DataFrame, equity: pl.DataFrame, brackets: dict, thresholds,
                   collateral: pl.DataFrame | None = None, multi_asset=(), inverse_sizes=None,
                   entry_basis=()) -> pl.DataFrame:
    """One row per snapshot x risk unit x (each underlying, "all"): ts, reason, exchange,
    events_applied, asset (the pool: the settlement asset, "USD" for a multi-asset account), unit
    (`cross:<pool>` or the isolated instrument), underlying (base asset or "all"),
    warning_distance, liquidation_distance (fractions; inf: never within the cap).

    `multi_asset`: the exchanges in multi-asset mode; `collateral`: the collateral table
    (`xmargin.output.writer.collateral_table`), whose non-stable balances become collateral legs of
    those exchanges' "USD" pools. `inverse_sizes`: instrument -> contract size of the inverse
    (coin-margined) instruments; their legs move in coin terms (`first_crossing`). `entry_basis`:
    exchanges whose rules margin isolated positions on their entry value (constant maintenance)."""
    inverse_sizes = inverse_sizes or {}
    if positions.height == 0:
        return pl.DataFrame(schema=SCHEMA)
    key = list(SNAPSHOT_KEY)
    multi_asset = sorted(set(multi_asset))
    is_multi = pl.col("exchange").is_in(multi_asset)
    pos = (positions.filter(pl.col("quantity") != 0).unique([*key, "instrument"], keep="first", maintain_order=True)
           .select(*key, "instrument", "quantity", "entry_price", "mark_price", "margin_mode", "isolated_margin",
                   "asset")
           .with_columns(pl.when(is_multi).then(pl.lit(MULTI_ASSET_POOL)).otherwise(pl.col("asset")).alias("pool")))
    wallets = equity.unique([*key, "asset"], keep="first", maintain_order=True).select(
        *key, pl.col("asset").alias("pool"), "cross_wallet_balance")
    collateral_legs = None
    if multi_asset:  # a multi-asset pool's wallet: its stablecoins at their collateral value
        stable, collateral_legs = _collateral_parts(equity, collateral, set(multi_asset))
        wallets = (wallets.join(stable, on=key, how="left", maintain_order="left")
                   .with_columns(pl.when(is_multi & (pl.col("pool") == MULTI_ASSET_POOL))
                                 .then(pl.col("stable").fill_null(0.0))
                                 .otherwise(pl.col("cross_wallet_balance")).alias("cross_wallet_balance"))
                   .drop("stable"))
    pos = (pos.join(wallets, on=[*key, "pool"], how="left", maintain_order="left")
           .with_columns(pl.when(pl.col("margin_mode") == "isolated").then(pl.col("instrument"))
                         .otherwise(pl.lit("cross:") + pl.col("pool")).alias("unit"),
                         pl.when(pl.col("margin_mode") == "isolated").then(pl.col("isolated_margin"))
                         .otherwise(pl.col("cross_wallet_balance").fill_null(0.0)).alias("base"),
                         pl.col("instrument").str.extract(r"^(?:[^:]*:)?([^/:]+)", 1).alias("underlying")))
    if pos.height == 0:
        return pl.DataFrame(schema=SCHEMA)
    unit_key = [*key, "pool", "unit"]
    unit_ids = pos.select(unit_key).unique(maintain_order=True).with_row_index("unit_id")
    pos = pos.join(unit_ids, on=unit_key, how="left", maintain_order="left").with_columns(
        pl.col("unit_id").cast(pl.Int64))
    n_units = int(pos["unit_id"].max()) + 1

    instruments = pos["instrument"].to_list()
    table_index: dict = {}
    tables: list = []
    for instrument in dict.fromkeys(instruments):
        if instrument not in brackets:
            raise KeyError(f"distance: no bracket table for {instrument}")
        table_index[instrument] = len(tables)
        tables.append(brackets[instrument])
    # legs: every position, then (multi-asset) every collateral leg of a cross pool with positions
    legs = pos.select("unit_id", "underlying", "quantity", "mark_price", "entry_price",
                      pl.Series("table_id", [table_index[i] for i in instruments], dtype=pl.Int64),
                      pl.Series("size", [float(inverse_sizes.get(i, 0.0)) for i in instruments], dtype=pl.Float64),
                      pl.when(pl.col("exchange").is_in(sorted(entry_basis)) & (pl.col("margin_mode") == "isolated"))
                      .then(pl.lit(0.0)).otherwise(pl.lit(float("nan"))).alias("fixed_mm"))
    entry_margined = np.flatnonzero(~np.isnan(legs["fixed_mm"].to_numpy())) if entry_basis else []
    if len(entry_margined):
        fixed = legs["fixed_mm"].to_numpy().copy()
        quantities, entries = pos["quantity"].to_numpy(), pos["entry_price"].to_numpy()
        for k in entry_margined:  # positions come first in `legs`, in `pos` order
            if inverse_sizes.get(instruments[k]):
                fixed[k] = np.nan  # inverse positions keep the mark basis
            else:
                fixed[k] = margin.maintenance_margin(abs(quantities[k]) * entries[k], brackets[instruments[k]])
        legs = legs.with_columns(pl.Series("fixed_mm", fixed))
    if collateral_legs is not None and collateral_legs.height:
        pools = unit_ids.filter(is_multi & (pl.col("unit") == "cross:" + MULTI_ASSET_POOL)).select(
            *key, pl.col("unit_id").cast(pl.Int64))
        extra = (collateral_legs.join(pools, on=key, how="inner", maintain_order="left")
                 .select("unit_id", "underlying", "quantity", "mark_price", pl.lit(0.0).alias("entry_price"),
                         pl.lit(-1, dtype=pl.Int64).alias("table_id"), pl.lit(0.0).alias("size"),
                         pl.lit(float("nan")).alias("fixed_mm")))
        legs = pl.concat([legs, extra])
    exposure = (pl.when(pl.col("size") > 0).then(pl.col("quantity") * pl.col("size") / pl.col("mark_price"))
                .otherwise(pl.col("quantity") * pl.col("mark_price")))
    legs = legs.with_row_index("leg").with_columns(exposure.sum().over("unit_id", "underlying").alias("net_delta"))
    # cases: every unit with "all" (0..n_units-1), then every (unit, underlying) with only the
    # unit's legs on that underlying moving. The unit's other legs keep their PnL and maintenance
    # at the marks: those enter the case as constants (unit total - the moving legs' share), so the
    # work grows with the legs, not with legs x underlyings.
    single = (legs.group_by("unit_id", "underlying", maintain_order=True).agg(pl.col("net_delta").first())
              .with_row_index("case_offset"))
    moving = (single.join(legs.drop("net_delta"), on=["unit_id", "underlying"], how="inner")
              .sort("case_offset", "leg"))

    def column(frame, name):
        return frame[name].to_numpy()

    quantity = column(legs, "quantity")
    leg_unit = column(legs, "unit_id").astype(np.int64)
    leg_case = column(moving, "case_offset").astype(np.int64)
    case_unit = column(single, "unit_id").astype(np.int64)
    n_single = single.height
    pnl, leg_mm = _LegValuation(quantity, column(legs, "entry_price"), column(legs, "table_id"), tables,
                                column(legs, "size"), column(legs, "fixed_mm"))(column(legs, "mark_price"))
    order = column(moving, "leg").astype(np.int64)
    other_pnl = (np.bincount(leg_unit, pnl, minlength=n_units)[case_unit]
                 - np.bincount(leg_case, pnl[order], minlength=n_single))
    other_mm = (np.bincount(leg_unit, leg_mm, minlength=n_units)[case_unit]
                - np.bincount(leg_case, leg_mm[order], minlength=n_single))
    case = np.concatenate([leg_unit, n_units + leg_case])
    n_cases = n_units + n_single
    unit_base = np.zeros(n_units)
    unit_base[pos["unit_id"].to_numpy()] = pos["base"].to_numpy()
    base = np.concatenate([unit_base, unit_base[case_unit] + other_pnl])
    args = dict(case=case, n_cases=n_cases,
                quantity=np.concatenate([quantity, column(moving, "quantity")]),
                mark=np.concatenate([column(legs, "mark_price"), column(moving, "mark_price")]),
                entry=np.concatenate([column(legs, "entry_price"), column(moving, "entry_price")]),
                direction=np.concatenate([-np.sign(quantity), -np.sign(column(moving, "net_delta"))]),
                table_id=np.concatenate([column(legs, "table_id"), column(moving, "table_id")]),
                tables=tables, base=base,
                size=np.concatenate([column(legs, "size"), column(moving, "size")]),
                fixed_mm=np.concatenate([column(legs, "fixed_mm"), column(moving, "fixed_mm")]),
                case_mm=np.concatenate([np.zeros(n_units), other_mm]))
    liquidation = first_crossing(k=1.0, **args)
    thresholds = list(thresholds)
    warning = first_crossing(k=float(thresholds[0]), **args) if thresholds else np.full(n_cases, math.nan)

    units = (pos.unique("unit_id", keep="first").sort("unit_id")
             .select("unit_id", *key, pl.col("pool").alias("asset"), "unit"))
    all_rows = units.with_columns(pl.lit("all").alias("underlying"),
                                  pl.Series("warning_distance", warning[:n_units]),
                                  pl.Series("liquidation_distance", liquidation[:n_units]))
    single_rows = (single.select("unit_id", "underlying").join(units, on="unit_id", how="left", maintain_order="left")
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


def distance_options(catalog, config) -> dict:
    """The keyword arguments of `distance_table` for a run's catalog and config."""
    return {"brackets": brackets_from_catalog(catalog), "thresholds": config.warning_thresholds,
            "multi_asset": multi_asset_exchanges(catalog),
            "inverse_sizes": {key: t.instrument.contract_size for key, t in catalog.tradables.items()
                              if t.instrument.is_inverse},
            "entry_basis": {name for name, venue in catalog.venues.items()
                            if venue.rules.liquidation.maintenance_basis == "entry"}}


def run_distances(result) -> pl.DataFrame:
    """`distance_table` of a finished in-memory run (`xmargin.sim.loop.RunResult`; computed once per
    result and kept on it)."""
    if result.distances is None:
        options = distance_options(result.catalog, result.config)
        equity = pl.from_arrow(equity_base_table(result))
        positions = pl.from_arrow(positions_table(result))
        collateral = pl.from_arrow(collateral_table(result)) if options["multi_asset"] else None
        result.distances = distance_table(positions, equity, collateral=collateral, **options)
    return result.distances
