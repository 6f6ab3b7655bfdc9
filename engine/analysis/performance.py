"""Flow-adjusted figures of a run: collateral consumed, drawdown and performance statistics.

Deposits and transfers are money moved, never profit or loss. Every figure here works on the
flow-adjusted equity (PnL so far) of an exchange, or of the whole book:

    net_flows(t) = deposits + transfers in - transfers out, applied up to snapshot t (USD)
                   (snapshots: the start, every sample at a bar close, the end)
    pnl(t)       = equity(t) - net_flows(t)

A withdrawal fee is not a flow: it is a cost of the sending exchange. The whole book's PnL is the
sum of the exchanges' (a transfer in flight is out of one and not yet in the other: it cancels;
both legs count at the value it was sent with, see `transfer_values`).

  collateral_consumed  max over t of net_flows(t) - equity(t) = -min pnl(t) (0 when never below
                       the money put in), with its time: how much of the collateral put in was
                       eaten at the worst moment
  max_drawdown         max over t of (running max of pnl) - pnl(t), with the peak and trough times
  capital              the money put in: the book's deposits; an exchange's peak net_flows
  return_on_capital    final pnl / capital
  cagr                 (1 + return_on_capital) ^ (365 days / run length) - 1 (None below -100 %,
                       and where it exceeds a float: e.g. +21 % in 3 hours)
  volatility           standard deviation of the daily returns x sqrt(365)
  sharpe               mean daily return / its standard deviation x sqrt(365), risk-free rate 0
  sortino              mean daily return x 365 / (downside deviation x sqrt(365)); the downside
                       deviation is sqrt(mean(min(r, 0)^2)) over all days
  time_under_water     hours during which pnl was below its running maximum (snapshot to next
                       snapshot), and the longest such stretch

Daily returns: the change of pnl over each UTC day (the last snapshot of the day) divided by the
capital; crypto trades every day, hence 365. Figures that need at least two days or a positive
capital are None (n/a) otherwise (a run of 2 hours across midnight has two daily returns: still n/a).
"""

from __future__ import annotations

import math

import polars as pl

from xmargin.margin.collateral import STABLECOINS

DAYS_PER_YEAR = 365
SERIES = ["events_applied", "ts", "reason"]


def usd_values(frame: pl.DataFrame, collateral: pl.DataFrame, amount: str = "amount") -> pl.DataFrame:
    """`frame` (ts, exchange, asset, `amount`) with `usd`: the amount at its asset's price on that
    exchange at the nearest snapshot (stablecoins at 1; an asset never priced counts 0). Row order kept."""
    if frame.height == 0:
        return frame.with_columns(pl.lit(0.0).alias("usd"))
    prices = collateral.select("ts", "exchange", "asset", "price").unique(maintain_order=True).sort("ts")
    priced = frame.with_row_index("_row").sort("ts").join_asof(
        prices, on="ts", by=["exchange", "asset"], strategy="nearest", check_sortedness=False).sort("_row")
    price = pl.when(pl.col("asset").is_in(list(STABLECOINS))).then(1.0).otherwise(pl.col("price").fill_null(0.0))
    return priced.select(*frame.columns, (pl.col(amount) * price).alias("usd"))


def transfer_values(events: pl.DataFrame, collateral: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(sent, arrived): the TransferSent and TransferArrived events (seq, ts, exchange, asset, amount,
    fee, transfer_id) with `usd`. Both legs of a transfer count at the value it was sent with (the
    asset's price at the source when sent), so the book's flows cancel out; a coin's price move while
    in flight is then the receiver's PnL, as it would have been the sender's had the coin stayed."""
    columns = ["seq", "ts", "exchange", "asset", "amount", "fee", "transfer_id"]
    sent = usd_values(events.filter(pl.col("type") == "TransferSent").select(columns), collateral)
    price = sent.select("transfer_id", pl.when(pl.col("amount") != 0).then(pl.col("usd") / pl.col("amount"))
                        .otherwise(0.0).alias("_price"))
    arrived = (events.filter(pl.col("type") == "TransferArrived").select(columns)
               .join(price, on="transfer_id", how="left", maintain_order="left")
               .with_columns((pl.col("amount") * pl.col("_price").fill_null(0.0)).alias("usd")).drop("_price"))
    return sent, arrived


def flows(events: pl.DataFrame, collateral: pl.DataFrame) -> pl.DataFrame:
    """Every deposit (+), transfer arrival (+, at the destination) and transfer sent (-, the amount
    without the fee, at the source): seq, ts, exchange, usd (a transfer's at `transfer_values`)."""
    deposits = usd_values(events.filter(pl.col("type") == "CollateralDeposited")
                          .select("seq", "ts", "exchange", "asset", "amount"), collateral)
    sent, arrived = transfer_values(events, collateral)
    columns = ["seq", "ts", "exchange", "usd"]
    return pl.concat([deposits.select(columns), sent.select(*columns[:3], -pl.col("usd")),
                      arrived.select(columns)]).sort("seq")


def flow_adjusted(equity_by_account: pl.DataFrame, flow: pl.DataFrame) -> pl.DataFrame:
    """Per exchange and snapshot: equity, net_flows (flows among the events the snapshot has seen)
    and pnl = equity - net_flows."""
    cumulative = (flow.sort("seq").with_columns(pl.col("usd").cum_sum().over("exchange").alias("net_flows"),
                                                (pl.col("seq") + 1).alias("events_applied"))
                  .select("exchange", "events_applied", "net_flows"))
    rows = equity_by_account.sort("events_applied").with_row_index("_row")
    if cumulative.height:
        rows = rows.join_asof(cumulative.sort("events_applied"), on="events_applied", by="exchange",
                              strategy="backward", check_sortedness=False)
    else:
        rows = rows.with_columns(pl.lit(None, pl.Float64).alias("net_flows"))
    return (rows.sort("_row").drop("_row")
            .with_columns(pl.col("net_flows").fill_null(0.0))
            .with_columns((pl.col("equity") - pl.col("net_flows")).alias("pnl")))


def book(adjusted: pl.DataFrame) -> pl.DataFrame:
    """The whole book per snapshot moment: every exchange's last known equity / net_flows / pnl summed
    (an exchange not valued at a moment keeps its previous values)."""
    moments = adjusted.select(SERIES).unique(maintain_order=True).sort(SERIES).with_row_index("_moment")
    exchanges = adjusted["exchange"].unique().sort().to_list()
    out = moments
    for exchange in exchanges:
        own = (adjusted.filter(pl.col("exchange") == exchange).join(moments, on=SERIES)
               .group_by("_moment").agg(pl.col("equity", "net_flows", "pnl").last())
               .rename({c: f"{c}_{exchange}" for c in ("equity", "net_flows", "pnl")}))
        out = out.join(own, on="_moment", how="left").sort("_moment")
        out = out.with_columns(pl.col(f"{c}_{exchange}").forward_fill().fill_null(0.0)
                               for c in ("equity", "net_flows", "pnl"))
    return out.select(*SERIES, *(pl.sum_horizontal(f"{c}_{e}" for e in exchanges).alias(c)
                                 for c in ("equity", "net_flows", "pnl")))


def _ts(value) -> str | None:
    return None if value is None else str(value)


def consumed(series: pl.DataFrame) -> dict:
    """Collateral consumed at the worst moment: max of net_flows - equity, with its time."""
    if series.height == 0:
        return {"amount": 0.0, "ts": None, "net_flows": 0.0, "equity": 0.0}
    worst = series.sort("pnl", maintain_order=True).row(0, named=True)
    if worst["pnl"] >= 0:
        return {"amount": 0.0, "ts": None, "net_flows": None, "equity": None}
    return {"amount": -worst["pnl"], "ts": _ts(worst["ts"]), "net_flows": worst["net_flows"],
            "equity": worst["equity"]}


def drawdown(series: pl.DataFrame) -> dict:
    """Largest fall of pnl from its running peak, with the peak and trough times; time under water."""
    if series.height == 0:
        return {"amount": 0.0, "peak_ts": None, "trough_ts": None, "hours_under_water": 0.0,
                "longest_under_water_hours": 0.0}
    frame = series.with_columns(pl.col("pnl").cum_max().alias("peak")).with_columns(
        (pl.col("peak") - pl.col("pnl")).alias("drawdown"))
    trough = frame.sort("drawdown", descending=True, maintain_order=True).row(0, named=True)
    peak_ts = None
    if trough["drawdown"] > 0:
        before = frame.filter(pl.col("ts") <= trough["ts"])
        peak_ts = before.filter(pl.col("pnl") >= trough["peak"])["ts"][-1] if before.height else None
    # under water: from a snapshot with pnl below the peak to the next snapshot
    hours = frame.select(((pl.col("ts").shift(-1) - pl.col("ts")).dt.total_seconds() / 3600.0).fill_null(0.0)
                         .alias("hours"), (pl.col("drawdown") > 1e-9).alias("under"))
    stretch = hours.with_columns((pl.col("under") != pl.col("under").shift(1)).fill_null(True).cum_sum()
                                 .alias("_stretch"))
    longest = stretch.filter(pl.col("under")).group_by("_stretch").agg(pl.col("hours").sum())
    return {"amount": float(trough["drawdown"]), "peak_ts": _ts(peak_ts),
            "trough_ts": _ts(trough["ts"]) if trough["drawdown"] > 0 else None,
            "hours_under_water": float(hours.filter(pl.col("under"))["hours"].sum()),
            "longest_under_water_hours": float(longest["hours"].max()) if longest.height else 0.0}


def statistics(series: pl.DataFrame, capital: float) -> dict:
    """Return on capital, CAGR, volatility, Sharpe and Sortino of a flow-adjusted series (see the
    module docstring); None where they do not apply."""
    out = {"capital": capital, "return_on_capital": None, "cagr": None, "volatility": None, "sharpe": None,
           "sortino": None, "days": 0.0}
    if series.height == 0:
        return out
    first, last = series["ts"][0], series["ts"][-1]
    days = (last - first).total_seconds() / 86400.0
    out["days"] = days
    if not capital > 0:
        return out
    final = float(series["pnl"][-1])
    ret = final / capital
    out["return_on_capital"] = ret
    if days > 0 and 1.0 + ret > 0:
        try:
            out["cagr"] = (1.0 + ret) ** (DAYS_PER_YEAR / days) - 1.0
        except OverflowError:  # a large return over a short run: beyond any float, n/a like the others
            out["cagr"] = None
    daily = (series.sort("ts").group_by(pl.col("ts").dt.truncate("1d").alias("day"), maintain_order=True)
             .agg(pl.col("pnl").last()).sort("day"))
    start = float(series["pnl"][0])
    returns = daily.select((pl.col("pnl").diff().fill_null(pl.col("pnl").first() - start) / capital).alias("r"))
    if returns.height >= 2 and days >= 2:  # "n/a under two days": two UTC dates touched are not enough
        r = pl.col("r")
        moments = returns.select(r.mean().alias("mean"), r.std(ddof=1).alias("std"),
                                 (r.clip(upper_bound=0.0) ** 2).mean().sqrt().alias("downside")).row(0, named=True)
        mean, std, downside = moments["mean"], moments["std"], moments["downside"]
        out["volatility"] = std * math.sqrt(DAYS_PER_YEAR)
        out["sharpe"] = mean / std * math.sqrt(DAYS_PER_YEAR) if std > 0 else None
        out["sortino"] = mean * DAYS_PER_YEAR / (downside * math.sqrt(DAYS_PER_YEAR)) if downside > 0 else None
    return out


def figures(series: pl.DataFrame, capital: float) -> dict:
    """Consumed, drawdown and statistics of one flow-adjusted series."""
    dd = drawdown(series)
    stats = statistics(series, capital)
    return {"collateral_consumed": consumed(series), "max_drawdown": dd["amount"],
            "drawdown": dd, "statistics": stats}
