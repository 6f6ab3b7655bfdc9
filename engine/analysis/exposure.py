"""Net exposure per underlying across the whole book, and the one-legged hedge warning.

At every sample snapshot, each underlying (the base asset: BTC of `binance:BTC/USDT:USDT`) has

  gross = sum of |USD notional| of its perp positions on every exchange + the USD value of spot
          balances of that asset (spot held as a hedge leg or as collateral)
  net   = the same with signs (long +, short -)
(both 0 at a sample where nothing of it is held: a flat stretch is neither one-legged nor hedged)

A perp's USD notional is its notional in the settle asset at that asset's price (coin-settled
inverse contracts: coin notional x coin price). Reported per underlying: peak gross, the net at
the moment of peak |net|, and the peak of |net| / gross (1: entirely one-sided).

One-legged: an underlying that is hedged (orders on two or more instruments of it, filled or
rejected, or a spot balance of it besides a perp) whose |net| / gross stays above
`run.one_legged_ratio` (default 0.5) for longer than `run.one_legged_after` (default 8h) at the
sample snapshots. Directional books (one instrument per underlying) are never one-legged.
"""

from __future__ import annotations

import polars as pl

from xmargin.margin.collateral import STABLECOINS


def underlying_of(instrument: pl.Expr) -> pl.Expr:
    """'binance:BTC/USDT:USDT' -> 'BTC'."""
    return instrument.str.split(":").list.get(1).str.split("/").list.get(0)


SNAPSHOT = ["ts", "reason", "events_applied", "exchange"]


def position_exposure(positions: pl.DataFrame, collateral: pl.DataFrame) -> pl.DataFrame:
    """Per position row: the snapshot key, `instrument`, `underlying` and `usd`, its signed USD notional
    (long > 0): the notional in the settle asset at that asset's price at the same snapshot (1 for
    stablecoins; an inverse contract's coin at the collateral table's price, else its mark)."""
    prices = collateral.select(*SNAPSHOT, "asset", "price")
    underlying = underlying_of(pl.col("instrument"))
    settle_price = (pl.when(pl.col("asset").is_in(list(STABLECOINS))).then(1.0)
                    .otherwise(pl.coalesce(pl.col("price"),
                                           pl.when(pl.col("asset") == underlying).then(pl.col("mark_price")))))
    return (positions.join(prices, on=[*SNAPSHOT, "asset"], how="left")
            .select(*SNAPSHOT, "instrument", underlying.alias("underlying"),
                    (pl.col("notional") * settle_price * pl.col("quantity").sign()).alias("usd")))


def exposure_series(positions: pl.DataFrame, collateral: pl.DataFrame,
                    snapshots: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per snapshot time and underlying: gross and net USD exposure over every exchange, 0 at the
    times nothing of it is held (the positions table has no rows for flat instruments). `snapshots`
    (the snapshot key columns) picks the snapshots; default: the sample snapshots."""
    if snapshots is None:
        positions = positions.filter(pl.col("reason") == "sample")
        collateral = collateral.filter(pl.col("reason") == "sample")
    else:
        keys = snapshots.select(SNAPSHOT).unique()
        positions = positions.join(keys, on=SNAPSHOT, how="semi")
        collateral = collateral.join(keys, on=SNAPSHOT, how="semi")
    return series_of_legs(position_exposure(positions, collateral).select("ts", "underlying", "usd"),
                          spot_exposure(collateral), pl.concat([collateral.select("ts"), positions.select("ts")]))


def spot_exposure(collateral: pl.DataFrame) -> pl.DataFrame:
    """The spot legs of `collateral` rows (ts, underlying, usd): balances of assets other than stablecoins."""
    return (collateral.filter(~pl.col("asset").is_in(list(STABLECOINS)) & (pl.col("balance") != 0))
            .select("ts", pl.col("asset").alias("underlying"), pl.col("value").alias("usd")))


def series_of_legs(perps: pl.DataFrame, spot: pl.DataFrame, times: pl.DataFrame) -> pl.DataFrame:
    """`exposure_series` from its legs (ts, underlying, usd: `position_exposure`, `spot_exposure`) and
    the snapshot times (ts, repeats allowed): what a reader of the tables a batch at a time gathers."""
    legs = pl.concat([perps, spot])
    held = (legs.group_by("ts", "underlying")
            .agg(pl.col("usd").abs().sum().alias("gross"), pl.col("usd").sum().alias("net")))
    return (times.unique().join(legs.select("underlying").unique(), how="cross")
            .join(held, on=["ts", "underlying"], how="left")
            .with_columns(pl.col("gross").fill_null(0.0), pl.col("net").fill_null(0.0))
            .sort("underlying", "ts"))


def hedged_underlyings(events: pl.DataFrame, collateral: pl.DataFrame) -> set[str]:
    """Underlyings with orders on two or more instruments, or a spot balance besides an order."""
    orders = (events.filter(pl.col("type").is_in(["OrderAccepted", "OrderFilled", "OrderRejected"])
                            & (pl.col("instrument").fill_null("") != ""))
              .select(pl.col("instrument").unique()))
    legs = orders.select(underlying_of(pl.col("instrument")).alias("underlying"), "instrument")
    counts = legs.group_by("underlying").agg(pl.col("instrument").n_unique().alias("legs"))
    spot = set(collateral.filter(~pl.col("asset").is_in(list(STABLECOINS)) & (pl.col("balance") != 0))["asset"]
               .unique().to_list())
    return {row["underlying"] for row in counts.iter_rows(named=True)
            if row["legs"] >= 2 or (row["legs"] >= 1 and row["underlying"] in spot)}


def exposure_figures(series: pl.DataFrame, hedged: set[str], ratio: float, after_hours: float) -> dict:
    """Per underlying: peak gross, net at peak |net|, peak |net| / gross, and the longest stretch above
    `ratio` (hours, start time; the first of equally long ones); `one_legged` when hedged and that
    stretch exceeds `after_hours`. Every underlying at once (a wide book has hundreds); a peak
    shared by several moments is the first."""
    per = pl.col("underlying")
    rows = (series.sort("underlying", "ts", maintain_order=True)
            .with_columns(pl.when(pl.col("gross") > 0).then(pl.col("net").abs() / pl.col("gross")).otherwise(0.0)
                          .alias("share"))
            .with_columns((pl.col("share") > ratio).alias("above"),
                          ((pl.col("ts").shift(-1).over(per) - pl.col("ts")).dt.total_seconds() / 3600.0)
                          .fill_null(0.0).alias("hours"))
            .with_columns((pl.col("above") != pl.col("above").shift(1).over(per)).fill_null(True).cum_sum()
                          .alias("_stretch")))
    peaks = rows.group_by(per, maintain_order=True).agg(
        pl.col("gross").max().alias("peak_gross"),
        pl.col("net").sort_by(pl.col("net").abs(), descending=True, maintain_order=True).first().alias("net_at_peak"),
        pl.col("ts").sort_by(pl.col("net").abs(), descending=True, maintain_order=True).first().alias("peak_net_ts"),
        pl.col("share").sort(descending=True).first().alias("peak_net_share"),
        pl.col("ts").sort_by("share", descending=True, maintain_order=True).first().alias("peak_net_share_ts"),
        pl.col("net").last().alias("final_net"), pl.col("gross").last().alias("final_gross"))
    stretches = (rows.filter(pl.col("above")).group_by(per, "_stretch", maintain_order=True)  # ties: the first
                 .agg(pl.col("hours").sum(), pl.col("ts").first().alias("from"))
                 .group_by(per, maintain_order=True)
                 .agg(pl.col("hours").sort(descending=True).first(),
                      pl.col("from").sort_by("hours", descending=True, maintain_order=True).first()))
    longest = {row["underlying"]: row for row in stretches.iter_rows(named=True)}
    out = {}
    for row in peaks.sort("underlying").iter_rows(named=True):
        underlying, stretch = row["underlying"], longest.get(row["underlying"])
        hours = float(stretch["hours"]) if stretch else 0.0
        out[underlying] = {
            "peak_gross": float(row["peak_gross"]),
            "net_at_peak": float(row["net_at_peak"]), "peak_net_ts": str(row["peak_net_ts"]),
            "peak_net_share": float(row["peak_net_share"]), "peak_net_share_ts": str(row["peak_net_share_ts"]),
            "final_net": float(row["final_net"]), "final_gross": float(row["final_gross"]),
            "hedged": underlying in hedged,
            "hours_above_ratio": hours, "above_ratio_from": str(stretch["from"]) if stretch else None,
            "one_legged": underlying in hedged and hours > after_hours,
        }
    return out
